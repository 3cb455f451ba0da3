//! What `strata top` shows, as plain data: one [`Snapshot`] per refresh goes in, a
//! [`TopModel`] of rows, lags and lag history comes out. Nothing here reads storage or
//! draws, so every rule is unit-tested.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use strata_controller_api::IntrospectionType;

/// A frontier as `strata top` knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frontier {
    /// Not known: the shard was never written and no introspection row names it.
    Unknown,
    /// The empty frontier: the collection is finished (finalized or dropped).
    Closed,
    /// The single time of a frontier, in milliseconds.
    At(u64),
}

impl Frontier {
    /// A shard state's frontier (its codes, `[t]` or `[]`); `None` (no state) is
    /// unknown.
    pub(crate) fn from_state(codes: Option<&[u64]>) -> Frontier {
        match codes {
            Some(codes) => codes
                .iter()
                .min()
                .map_or(Frontier::Closed, |t| Frontier::At(*t)),
            None => Frontier::Unknown,
        }
    }

    /// Parses introspection text (`[]`, `[5]`, `[5, 7]`); anything else is unknown.
    pub(crate) fn from_text(text: Option<&str>) -> Frontier {
        let Some(inner) = text
            .map(str::trim)
            .and_then(|t| t.strip_prefix('['))
            .and_then(|t| t.strip_suffix(']'))
        else {
            return Frontier::Unknown;
        };
        if inner.trim().is_empty() {
            return Frontier::Closed;
        }
        let times: Option<Vec<u64>> = inner.split(',').map(|t| t.trim().parse().ok()).collect();
        times
            .and_then(|t| t.into_iter().min())
            .map_or(Frontier::Unknown, Frontier::At)
    }

    /// The later of two frontiers: `Closed` is after every time, `Unknown` before.
    pub(crate) fn later(self, other: Frontier) -> Frontier {
        match (self, other) {
            (Frontier::Closed, _) | (_, Frontier::Closed) => Frontier::Closed,
            (Frontier::At(a), Frontier::At(b)) => Frontier::At(a.max(b)),
            (Frontier::At(t), Frontier::Unknown) | (Frontier::Unknown, Frontier::At(t)) => {
                Frontier::At(t)
            }
            (Frontier::Unknown, Frontier::Unknown) => Frontier::Unknown,
        }
    }

    /// The frontier as a table cell, its time as a raw number.
    pub(crate) fn text(self) -> String {
        match self {
            Frontier::Unknown => "-".to_owned(),
            Frontier::Closed => "[]".to_owned(),
            Frontier::At(t) => t.to_string(),
        }
    }

    /// The frontier as a table cell, its time as a UTC time of day when it reads as
    /// wall-clock milliseconds (see [`time_text`]).
    pub(crate) fn time_text(self) -> String {
        match self {
            Frontier::At(t) => time_text(t),
            other => other.text(),
        }
    }
}

/// The earliest time read as wall-clock milliseconds (2000-01-01): smaller times are
/// logical counters, shown as numbers.
const WALL_CLOCK_FROM_MS: u64 = 946_684_800_000;

/// `ms` as `HH:MM:SS.mmm` (UTC) when it reads as wall-clock milliseconds, else the
/// number itself.
pub(crate) fn time_text(ms: u64) -> String {
    if ms < WALL_CLOCK_FROM_MS {
        return ms.to_string();
    }
    let secs = (ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        ms % 1000
    )
}

/// How long the controller may go without writing introspection before the statuses
/// read from it are marked stale: ten of its default one-second intervals.
pub(crate) const STALE_AFTER_MS: u64 = 10_000;

/// How far a collection's upper trails the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lag {
    /// The upper is not known.
    Unknown,
    /// The upper is empty: nothing more will be written.
    Done,
    /// Wall-clock now minus the upper, in milliseconds (0 when the upper is ahead).
    Millis(u64),
}

impl Lag {
    /// The lag of a collection with `upper` at wall-clock `now_ms`.
    pub(crate) fn of(upper: Frontier, now_ms: u64) -> Lag {
        match upper {
            // An upper at the minimum time: nothing written yet, so no lag to speak of.
            Frontier::Unknown | Frontier::At(0) => Lag::Unknown,
            Frontier::Closed => Lag::Done,
            Frontier::At(t) => Lag::Millis(now_ms.saturating_sub(t)),
        }
    }

    /// The lag as a table cell: `850ms`, `4.2s`, `3m12s`, `5h03m`, `12d`, `done`, `-`.
    pub(crate) fn text(self) -> String {
        let ms = match self {
            Lag::Unknown => return "-".to_owned(),
            Lag::Done => return "done".to_owned(),
            Lag::Millis(ms) => ms,
        };
        let secs = ms / 1000;
        match ms {
            0..1_000 => format!("{ms}ms"),
            1_000..60_000 => format!("{}.{}s", secs, (ms % 1000) / 100),
            60_000..3_600_000 => format!("{}m{:02}s", secs / 60, secs % 60),
            3_600_000..86_400_000 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
            _ => format!("{}d", secs / 86_400),
        }
    }

    fn sample(self) -> Option<u64> {
        match self {
            Lag::Millis(ms) => Some(ms),
            Lag::Unknown | Lag::Done => None,
        }
    }
}

/// One collection of the durable catalog, with what its shard's state says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CollectionState {
    /// The collection's id, such as `u1`.
    pub(crate) id: String,
    /// Its data shard.
    pub(crate) shard: String,
    /// The shard's since.
    pub(crate) since: Frontier,
    /// The shard's upper.
    pub(crate) upper: Frontier,
    /// Which introspection collection this is, recognised by its shard's schema.
    pub(crate) introspection: Option<IntrospectionType>,
    /// The name the controller wrote into the shard, if any.
    pub(crate) name: Option<String>,
    /// How many Parquet parts the shard's state references.
    pub(crate) parts: Option<u64>,
}

/// The newest status row of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatusEntry {
    /// When the status was reported, in milliseconds since the epoch.
    pub(crate) occurred_at: u64,
    /// The status, such as `running` or `stalled`.
    pub(crate) status: String,
    /// The error of a bad status.
    pub(crate) error: Option<String>,
}

/// The controller's view of one collection's frontiers, from the Frontiers collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReportedFrontiers {
    /// The read frontier (since).
    pub(crate) read: Frontier,
    /// The write frontier (upper).
    pub(crate) write: Frontier,
}

/// Everything one refresh read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Wall-clock time of the read, in milliseconds since the epoch.
    pub(crate) taken_at_ms: u64,
    /// The catalog's epoch.
    pub(crate) epoch: u64,
    /// Every collection of the catalog, in id order.
    pub(crate) collections: Vec<CollectionState>,
    /// The newest status of each object, from the status history collections.
    pub(crate) statuses: BTreeMap<String, StatusEntry>,
    /// The Frontiers collection's rows by object id.
    pub(crate) frontiers: BTreeMap<String, ReportedFrontiers>,
    /// The ShardMapping collection's rows: object id to shard id.
    pub(crate) shard_mapping: BTreeMap<String, String>,
}

/// One row of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopRow {
    /// The collection's id.
    pub(crate) id: String,
    /// Its name: the one in its shard, else an introspection collection's kind, else
    /// `-`.
    pub(crate) name: String,
    /// How many Parquet parts its shard references, when known.
    pub(crate) parts: Option<u64>,
    /// Its data shard.
    pub(crate) shard: String,
    /// Its newest status, `-` when no status row names it.
    pub(crate) status: String,
    /// The error of that status, if any.
    pub(crate) error: Option<String>,
    /// Its since.
    pub(crate) since: Frontier,
    /// Its upper.
    pub(crate) upper: Frontier,
    /// Wall-clock now minus the upper.
    pub(crate) lag: Lag,
}

/// The state of the view: the rows of the last refresh, the lag history of each
/// collection, and what went wrong last.
#[derive(Debug, Clone)]
pub(crate) struct TopModel {
    /// The persist location shown in the title.
    pub(crate) url: String,
    /// The refresh interval, in milliseconds, shown in the title.
    pub(crate) interval_ms: u64,
    /// The catalog's epoch at the last refresh.
    pub(crate) epoch: Option<u64>,
    /// The rows of the last successful refresh.
    pub(crate) rows: Vec<TopRow>,
    /// When the last successful refresh read its data.
    pub(crate) refreshed_at_ms: Option<u64>,
    /// The error of the last refresh, cleared by the next successful one.
    pub(crate) problem: Option<String>,
    /// Which introspection collections the last refresh found, by type.
    pub(crate) introspection: Vec<IntrospectionType>,
    /// When the statuses are stale: how long ago the controller last moved an
    /// introspection collection's upper, if that is more than [`STALE_AFTER_MS`].
    pub(crate) stale_for_ms: Option<u64>,
    /// The first row shown (scrolling).
    pub(crate) offset: usize,
    /// Whether times are shown as raw timestamps rather than times of day.
    pub(crate) raw: bool,
    history_len: usize,
    history: BTreeMap<String, VecDeque<Option<u64>>>,
}

impl TopModel {
    /// An empty view of `url` that keeps `history_len` lag samples per collection.
    pub(crate) fn new(url: &str, interval_ms: u64, history_len: usize) -> TopModel {
        TopModel {
            url: url.to_owned(),
            interval_ms,
            epoch: None,
            rows: Vec::new(),
            refreshed_at_ms: None,
            problem: None,
            introspection: Vec::new(),
            stale_for_ms: None,
            offset: 0,
            raw: false,
            history_len: history_len.max(1),
            history: BTreeMap::new(),
        }
    }

    /// Takes in one refresh: rebuilds the rows and appends one lag sample per
    /// collection (collections no longer in the catalog lose their history).
    pub(crate) fn apply(&mut self, snapshot: Snapshot) {
        let now = snapshot.taken_at_ms;
        let mut found: Vec<IntrospectionType> = snapshot
            .collections
            .iter()
            .filter_map(|c| c.introspection)
            .collect();
        // The controller writes its introspection collections on a short interval; if
        // none moved for long, no controller runs and the statuses are old news.
        let newest = snapshot
            .collections
            .iter()
            .filter(|c| c.introspection.is_some())
            .filter_map(|c| match c.upper {
                Frontier::At(t) => Some(t),
                _ => None,
            })
            .max();
        self.stale_for_ms = newest
            .map(|t| now.saturating_sub(t))
            .filter(|ago| *ago > STALE_AFTER_MS);
        let stale = self.stale_for_ms.is_some();
        let status_text = |status: Option<&StatusEntry>| match status {
            None => "-".to_owned(),
            Some(s) if stale && s.status != "dropped" => format!("{}*", s.status),
            Some(s) => s.status.clone(),
        };
        let mut rows = Vec::with_capacity(snapshot.collections.len());
        for c in snapshot.collections {
            let reported = snapshot.frontiers.get(&c.id);
            // The shard's since is the truth; the controller's report stands in for a
            // shard that was never written.
            let since = match (c.since, reported) {
                (Frontier::Unknown, Some(r)) => r.read,
                (since, _) => since,
            };
            // A table's data shard trails its logical upper (the txns shard holds the
            // rest), which the controller reports: take the later of the two.
            let upper = reported.map_or(c.upper, |r| c.upper.later(r.write));
            let status = snapshot.statuses.get(&c.id);
            rows.push(TopRow {
                name: c
                    .name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .or_else(|| c.introspection.map(|t| t.name().to_owned()))
                    .unwrap_or_else(|| "-".to_owned()),
                parts: c.parts,
                status: status_text(status),
                error: status.and_then(|s| s.error.clone()),
                since,
                upper,
                lag: lag_of(upper, status, now),
                id: c.id,
                shard: c.shard,
            });
        }
        // Objects the introspection collections name but the catalog does not (such as
        // transient ones) are shown with what those collections say.
        let extra: BTreeSet<&String> = snapshot
            .shard_mapping
            .keys()
            .chain(snapshot.frontiers.keys())
            .filter(|id| !rows.iter().any(|r| &&r.id == id))
            .collect();
        for id in extra {
            let reported = snapshot.frontiers.get(id);
            let upper = reported.map_or(Frontier::Unknown, |r| r.write);
            let status = snapshot.statuses.get(id);
            rows.push(TopRow {
                id: id.clone(),
                name: "-".to_owned(),
                parts: None,
                shard: snapshot
                    .shard_mapping
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| "-".to_owned()),
                status: status_text(status),
                error: status.and_then(|s| s.error.clone()),
                since: reported.map_or(Frontier::Unknown, |r| r.read),
                upper,
                lag: lag_of(upper, status, now),
            });
        }
        self.history
            .retain(|id, _| rows.iter().any(|r| &r.id == id));
        for row in &rows {
            let ring = self.history.entry(row.id.clone()).or_default();
            if ring.len() == self.history_len {
                ring.pop_front();
            }
            ring.push_back(row.lag.sample());
        }
        found.sort();
        found.dedup();
        self.introspection = found;
        self.rows = rows;
        self.offset = self.offset.min(self.rows.len().saturating_sub(1));
        self.epoch = Some(snapshot.epoch);
        self.refreshed_at_ms = Some(now);
        self.problem = None;
    }

    /// Records a failed refresh: the last rows stay, the error is shown.
    pub(crate) fn apply_error(&mut self, error: String) {
        self.problem = Some(error);
    }

    /// The lag samples of `id`, oldest first (`None` where the lag was not known).
    pub(crate) fn history(&self, id: &str) -> impl Iterator<Item = Option<u64>> + '_ {
        self.history.get(id).into_iter().flatten().copied()
    }

    /// Scrolls by `delta` rows, staying within the rows.
    pub(crate) fn scroll(&mut self, delta: isize) {
        let last = self.rows.len().saturating_sub(1);
        self.offset = self.offset.saturating_add_signed(delta).min(last);
    }
}

/// The lag of a row: `done` once its status says it was dropped, whatever its upper.
fn lag_of(upper: Frontier, status: Option<&StatusEntry>, now_ms: u64) -> Lag {
    match status {
        Some(s) if s.status == "dropped" => Lag::Done,
        _ => Lag::of(upper, now_ms),
    }
}

/// The block characters of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` samples as a sparkline, scaled to their maximum: one block
/// character per sample, a space where the lag was not known.
pub(crate) fn sparkline(samples: impl Iterator<Item = Option<u64>>, width: usize) -> String {
    let samples: Vec<Option<u64>> = samples.collect();
    let shown = &samples[samples.len().saturating_sub(width)..];
    let max = shown.iter().flatten().copied().max().unwrap_or(0).max(1);
    shown
        .iter()
        .map(|s| match s {
            None => ' ',
            Some(v) => {
                let level = u128::from(*v) * (BARS.len() as u128 - 1) / u128::from(max);
                BARS[usize::try_from(level).unwrap_or(BARS.len() - 1)]
            }
        })
        .collect()
}

/// A wall-clock time as `HH:MM:SS UTC`.
pub(crate) fn clock_text(ms: u64) -> String {
    let secs = (ms / 1000) % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(id: &str, since: Frontier, upper: Frontier) -> CollectionState {
        CollectionState {
            id: id.to_owned(),
            shard: format!("shard-of-{id}"),
            since,
            upper,
            introspection: None,
            name: None,
            parts: None,
        }
    }

    fn snapshot(at: u64, collections: Vec<CollectionState>) -> Snapshot {
        Snapshot {
            taken_at_ms: at,
            epoch: 3,
            collections,
            ..Snapshot::default()
        }
    }

    #[test]
    fn times_read_as_wall_clock_or_as_numbers() {
        for (ms, want) in [
            (0, "0"),
            (9_000, "9000"),
            (WALL_CLOCK_FROM_MS - 1, "946684799999"),
            (WALL_CLOCK_FROM_MS, "00:00:00.000"),
            (1_796_620_461_630, "05:14:21.630"),
        ] {
            assert_eq!(time_text(ms), want, "{ms}");
        }
        assert_eq!(Frontier::At(1_796_620_461_630).time_text(), "05:14:21.630");
        assert_eq!(Frontier::Closed.time_text(), "[]");
        assert_eq!(Frontier::Unknown.time_text(), "-");
    }

    #[test]
    fn names_come_from_the_shard_else_the_introspection_kind() {
        let mut named = collection("u1", Frontier::At(1), Frontier::At(2));
        named.name = Some("orders".into());
        let mut system = collection("s2", Frontier::At(1), Frontier::At(2));
        system.introspection = Some(IntrospectionType::Frontiers);
        let plain = collection("u3", Frontier::At(1), Frontier::At(2));
        let mut model = TopModel::new("mem://x", 1000, 4);
        model.apply(snapshot(10, vec![named, system, plain]));
        let names: Vec<&str> = model.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["orders", "frontiers", "-"]);
    }

    #[test]
    fn statuses_are_stale_once_introspection_stops_moving() {
        let status = StatusEntry {
            occurred_at: 1,
            status: "running".into(),
            error: None,
        };
        let mut frontiers = collection("s2", Frontier::At(1), Frontier::At(100_000));
        frontiers.introspection = Some(IntrospectionType::Frontiers);
        let sink = collection("u9", Frontier::At(1), Frontier::At(99_000));
        let mut model = TopModel::new("mem://x", 1000, 4);
        for (now, stale) in [
            (100_000 + STALE_AFTER_MS, None),
            (100_001 + STALE_AFTER_MS, Some(STALE_AFTER_MS + 1)),
        ] {
            let mut s = snapshot(now, vec![frontiers.clone(), sink.clone()]);
            s.statuses.insert("u9".into(), status.clone());
            model.apply(s);
            assert_eq!(model.stale_for_ms, stale, "at {now}");
            let want = if stale.is_some() {
                "running*"
            } else {
                "running"
            };
            assert_eq!(model.rows[1].status, want);
        }
    }

    #[test]
    fn frontier_parsing_table() {
        for (codes, want) in [
            (Some(&[5][..]), Frontier::At(5)),
            (Some(&[9, 4][..]), Frontier::At(4)),
            (Some(&[][..]), Frontier::Closed),
            (None, Frontier::Unknown),
        ] {
            assert_eq!(Frontier::from_state(codes), want, "{codes:?}");
        }
        for (text, want) in [
            (Some("[]"), Frontier::Closed),
            (Some("[ ]"), Frontier::Closed),
            (Some("[17]"), Frontier::At(17)),
            (Some("[9, 4]"), Frontier::At(4)),
            (Some("[x]"), Frontier::Unknown),
            (Some("17"), Frontier::Unknown),
            (None, Frontier::Unknown),
        ] {
            assert_eq!(Frontier::from_text(text), want, "{text:?}");
        }
        let (at, closed, unknown) = (Frontier::At(3), Frontier::Closed, Frontier::Unknown);
        assert_eq!(at.later(Frontier::At(5)), Frontier::At(5));
        assert_eq!(Frontier::At(5).later(at), Frontier::At(5));
        assert_eq!(at.later(closed), closed);
        assert_eq!(unknown.later(closed), closed);
        assert_eq!(at.later(unknown), at);
        assert_eq!(unknown.later(at), at);
        assert_eq!(unknown.later(unknown), unknown);
        assert_eq!(Frontier::At(12).text(), "12");
        assert_eq!(Frontier::Closed.text(), "[]");
        assert_eq!(Frontier::Unknown.text(), "-");
    }

    #[test]
    fn lag_is_now_minus_upper_and_done_when_closed() {
        assert_eq!(Lag::of(Frontier::At(1_000), 1_250), Lag::Millis(250));
        assert_eq!(Lag::of(Frontier::At(2_000), 1_250), Lag::Millis(0));
        assert_eq!(Lag::of(Frontier::Closed, 1_250), Lag::Done);
        assert_eq!(Lag::of(Frontier::Unknown, 1_250), Lag::Unknown);
        assert_eq!(
            Lag::of(Frontier::At(0), 1_250),
            Lag::Unknown,
            "nothing written"
        );
        for (lag, want) in [
            (Lag::Millis(0), "0ms"),
            (Lag::Millis(999), "999ms"),
            (Lag::Millis(4_250), "4.2s"),
            (Lag::Millis(192_000), "3m12s"),
            (Lag::Millis(5 * 3_600_000 + 180_000), "5h03m"),
            (Lag::Millis(12 * 86_400_000 + 5), "12d"),
            (Lag::Done, "done"),
            (Lag::Unknown, "-"),
        ] {
            assert_eq!(lag.text(), want, "{lag:?}");
        }
    }

    #[test]
    fn apply_builds_rows_with_statuses_and_fallbacks() {
        let mut model = TopModel::new("file:///x", 1000, 4);
        let mut snap = snapshot(
            10_000,
            vec![
                collection("u1", Frontier::At(0), Frontier::At(9_000)),
                collection("u2", Frontier::Closed, Frontier::Closed),
                collection("u3", Frontier::Unknown, Frontier::Unknown),
                CollectionState {
                    introspection: Some(IntrospectionType::SinkStatusHistory),
                    ..collection("s1", Frontier::At(1), Frontier::At(10_500))
                },
            ],
        );
        snap.statuses.insert(
            "u1".to_owned(),
            StatusEntry {
                occurred_at: 5,
                status: "stalled".to_owned(),
                error: Some("boom".to_owned()),
            },
        );
        snap.frontiers.insert(
            "u3".to_owned(),
            ReportedFrontiers {
                read: Frontier::At(2),
                write: Frontier::At(7_000),
            },
        );
        // A report behind the shard's state does not override it; one ahead (a
        // table's logical upper) does, for the upper only.
        snap.frontiers.insert(
            "u1".to_owned(),
            ReportedFrontiers {
                read: Frontier::At(1),
                write: Frontier::At(1),
            },
        );
        snap.collections
            .push(collection("u4", Frontier::At(50), Frontier::At(8_000)));
        snap.frontiers.insert(
            "u4".to_owned(),
            ReportedFrontiers {
                read: Frontier::At(10),
                write: Frontier::At(9_500),
            },
        );
        // A dropped object is done, whatever its upper.
        snap.collections
            .push(collection("u5", Frontier::At(0), Frontier::At(0)));
        snap.statuses.insert(
            "u5".to_owned(),
            StatusEntry {
                occurred_at: 1,
                status: "dropped".to_owned(),
                error: None,
            },
        );
        snap.shard_mapping
            .insert("t9".to_owned(), "shard-of-t9".to_owned());
        model.apply(snap);
        let u4 = model.rows.iter().find(|r| r.id == "u4").unwrap();
        assert_eq!(
            (u4.since, u4.upper, u4.lag),
            (Frontier::At(50), Frontier::At(9_500), Lag::Millis(500))
        );
        let u5 = model.rows.iter().find(|r| r.id == "u5").unwrap();
        assert_eq!((u5.status.as_str(), u5.lag), ("dropped", Lag::Done));
        let t9 = model.rows.last().unwrap();
        assert_eq!(
            (t9.id.as_str(), t9.shard.as_str(), t9.lag),
            ("t9", "shard-of-t9", Lag::Unknown)
        );
        let by_id = |id: &str| model.rows.iter().find(|r| r.id == id).unwrap().clone();
        let u1 = by_id("u1");
        assert_eq!(
            (u1.status.as_str(), u1.error.as_deref()),
            ("stalled", Some("boom"))
        );
        assert_eq!(
            (u1.since, u1.upper, u1.lag),
            (Frontier::At(0), Frontier::At(9_000), Lag::Millis(1_000))
        );
        assert_eq!(
            (by_id("u2").status.as_str(), by_id("u2").lag),
            ("-", Lag::Done)
        );
        let u3 = by_id("u3");
        assert_eq!(
            (u3.since, u3.upper, u3.lag),
            (Frontier::At(2), Frontier::At(7_000), Lag::Millis(3_000))
        );
        let s1 = by_id("s1");
        assert_eq!(
            (s1.name.as_str(), s1.lag),
            ("sink_status_history", Lag::Millis(0))
        );
        assert_eq!(
            model.introspection,
            vec![IntrospectionType::SinkStatusHistory]
        );
        assert_eq!(model.epoch, Some(3));
        assert_eq!(model.refreshed_at_ms, Some(10_000));
    }

    #[test]
    fn history_is_a_ring_per_collection_and_forgets_dropped_ones() {
        let mut model = TopModel::new("mem://x", 1000, 3);
        for i in 0..5u64 {
            let mut collections = vec![collection("u1", Frontier::At(0), Frontier::At(100 * i))];
            if i < 2 {
                collections.push(collection("u2", Frontier::At(0), Frontier::At(0)));
            }
            if i == 4 {
                collections[0].upper = Frontier::Closed;
            }
            model.apply(snapshot(1_000, collections));
        }
        let u1: Vec<_> = model.history("u1").collect();
        assert_eq!(u1, vec![Some(800), Some(700), None]);
        assert_eq!(model.history("u2").count(), 0);
        // A collection that comes back starts a new history.
        model.apply(snapshot(
            1_000,
            vec![collection("u2", Frontier::At(0), Frontier::At(1))],
        ));
        assert_eq!(model.history("u2").collect::<Vec<_>>(), vec![Some(999)]);
        assert_eq!(model.history("u1").count(), 0);
    }

    #[test]
    fn errors_keep_the_rows_until_the_next_refresh() {
        let mut model = TopModel::new("mem://x", 1000, 3);
        model.apply(snapshot(
            5,
            vec![collection("u1", Frontier::At(0), Frontier::At(1))],
        ));
        model.apply_error("cannot read".to_owned());
        assert_eq!(model.rows.len(), 1);
        assert_eq!(model.problem.as_deref(), Some("cannot read"));
        model.apply(snapshot(6, vec![]));
        assert_eq!(model.problem, None);
        assert!(model.rows.is_empty());
    }

    #[test]
    fn scrolling_stays_within_the_rows() {
        let mut model = TopModel::new("mem://x", 1000, 3);
        let rows = (0..4)
            .map(|i| collection(&format!("u{i}"), Frontier::At(0), Frontier::At(1)))
            .collect();
        model.apply(snapshot(5, rows));
        model.scroll(-1);
        assert_eq!(model.offset, 0);
        model.scroll(10);
        assert_eq!(model.offset, 3);
        model.apply(snapshot(
            5,
            vec![collection("u0", Frontier::At(0), Frontier::At(1))],
        ));
        assert_eq!(model.offset, 0);
    }

    #[test]
    fn sparkline_scales_to_the_window_maximum() {
        let s = |v: &[Option<u64>], w| sparkline(v.iter().copied(), w);
        assert_eq!(s(&[Some(0), Some(7), Some(14)], 10), "▁▄█");
        assert_eq!(s(&[Some(0), None, Some(0)], 10), "▁ ▁");
        // Only the newest `width` samples, scaled among themselves.
        assert_eq!(s(&[Some(1_000), Some(1), Some(2)], 2), "▄█");
        assert_eq!(s(&[], 5), "");
        assert_eq!(s(&[Some(u64::MAX), Some(u64::MAX / 2)], 5), "█▄");
    }

    #[test]
    fn clock_text_is_utc_time_of_day() {
        assert_eq!(clock_text(0), "00:00:00 UTC");
        assert_eq!(clock_text(86_400_000 + 3_723_999), "01:02:03 UTC");
    }
}
