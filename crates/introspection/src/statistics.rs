//! Source and sink statistics: the counter structs of `strata-controller-api`
//! ([`SourceStatistics`], [`SinkStatistics`]), their consolidation per `(id, replica)`,
//! and rows of the statistics collections.
//!
//! Replicas report the current value of their counters. A counter only grows while a
//! replica runs; when a report is lower than the last one, the replica restarted, and
//! what it had counted before is kept as a base, so the value shown never goes back.
//! Gauges (`snapshot_committed`, `offset_known`, `offset_committed`) show the latest
//! report. The scraper that writes them lives in [`scraper`].

pub mod scraper;

use std::fmt::Debug;

use strata_controller_api::{Datum, GlobalId, IntrospectionType, ReplicaId, Row};

pub use scraper::{StatisticsConfig, StatisticsScraper};
pub use strata_controller_api::{SinkStatistics, SourceStatistics};

/// What a statistics struct needs to be scraped into its collection.
pub trait StatisticsKind: Debug + Clone + Default + PartialEq + Send + Sync + 'static {
    /// The collection the statistics are written to.
    const TYPE: IntrospectionType;

    /// The collection's row for this value.
    fn to_row(&self, id: GlobalId, replica: ReplicaId) -> Row;

    /// The value a row records, or `None` if it is not such a row.
    fn from_row(row: &Row) -> Option<(GlobalId, ReplicaId, Self)>;

    /// Records a replica restart: for each counter whose `report` is below `last`,
    /// adds `last` to `base`.
    fn rebase(base: &mut Self, last: &Self, report: &Self);

    /// The value shown: counters `base + last`, gauges `last`.
    fn shown(base: &Self, last: &Self) -> Self;
}

fn restart(base: &mut u64, last: u64, report: u64) {
    if report < last {
        *base = base.saturating_add(last);
    }
}

fn ids(datums: &[Datum]) -> Option<(GlobalId, ReplicaId)> {
    match datums {
        [Datum::String(id), Datum::String(replica), ..] => {
            Some((id.parse().ok()?, replica.parse().ok()?))
        }
        _ => None,
    }
}

fn opt_u64(d: Option<u64>) -> Datum {
    d.map_or(Datum::Null, Datum::UInt64)
}

impl StatisticsKind for SourceStatistics {
    const TYPE: IntrospectionType = IntrospectionType::SourceStatistics;

    fn to_row(&self, id: GlobalId, replica: ReplicaId) -> Row {
        Row::pack(&[
            Datum::String(id.to_string()),
            Datum::String(replica.to_string()),
            Datum::UInt64(self.messages_received),
            Datum::UInt64(self.bytes_received),
            Datum::UInt64(self.updates_staged),
            Datum::UInt64(self.updates_committed),
            Datum::Bool(self.snapshot_committed),
            opt_u64(self.offset_known),
            opt_u64(self.offset_committed),
        ])
    }

    fn from_row(row: &Row) -> Option<(GlobalId, ReplicaId, Self)> {
        let datums = row.unpack();
        let (id, replica) = ids(&datums)?;
        let opt = |d: &Datum| match d {
            Datum::UInt64(n) => Some(Some(*n)),
            Datum::Null => Some(None),
            _ => None,
        };
        let [
            _,
            _,
            Datum::UInt64(mr),
            Datum::UInt64(br),
            Datum::UInt64(us),
            Datum::UInt64(uc),
            Datum::Bool(sc),
            ok,
            oc,
        ] = datums.as_slice()
        else {
            return None;
        };
        let stats = SourceStatistics {
            messages_received: *mr,
            bytes_received: *br,
            updates_staged: *us,
            updates_committed: *uc,
            snapshot_committed: *sc,
            offset_known: opt(ok)?,
            offset_committed: opt(oc)?,
        };
        Some((id, replica, stats))
    }

    fn rebase(base: &mut Self, last: &Self, report: &Self) {
        restart(
            &mut base.messages_received,
            last.messages_received,
            report.messages_received,
        );
        restart(
            &mut base.bytes_received,
            last.bytes_received,
            report.bytes_received,
        );
        restart(
            &mut base.updates_staged,
            last.updates_staged,
            report.updates_staged,
        );
        restart(
            &mut base.updates_committed,
            last.updates_committed,
            report.updates_committed,
        );
    }

    fn shown(base: &Self, last: &Self) -> Self {
        SourceStatistics {
            messages_received: base
                .messages_received
                .saturating_add(last.messages_received),
            bytes_received: base.bytes_received.saturating_add(last.bytes_received),
            updates_staged: base.updates_staged.saturating_add(last.updates_staged),
            updates_committed: base
                .updates_committed
                .saturating_add(last.updates_committed),
            snapshot_committed: last.snapshot_committed,
            offset_known: last.offset_known,
            offset_committed: last.offset_committed,
        }
    }
}

impl StatisticsKind for SinkStatistics {
    const TYPE: IntrospectionType = IntrospectionType::SinkStatistics;

    fn to_row(&self, id: GlobalId, replica: ReplicaId) -> Row {
        Row::pack(&[
            Datum::String(id.to_string()),
            Datum::String(replica.to_string()),
            Datum::UInt64(self.messages_staged),
            Datum::UInt64(self.messages_committed),
            Datum::UInt64(self.bytes_staged),
            Datum::UInt64(self.bytes_committed),
        ])
    }

    fn from_row(row: &Row) -> Option<(GlobalId, ReplicaId, Self)> {
        let datums = row.unpack();
        let (id, replica) = ids(&datums)?;
        let [
            _,
            _,
            Datum::UInt64(ms),
            Datum::UInt64(mc),
            Datum::UInt64(bs),
            Datum::UInt64(bc),
        ] = datums.as_slice()
        else {
            return None;
        };
        let stats = SinkStatistics {
            messages_staged: *ms,
            messages_committed: *mc,
            bytes_staged: *bs,
            bytes_committed: *bc,
        };
        Some((id, replica, stats))
    }

    fn rebase(base: &mut Self, last: &Self, report: &Self) {
        restart(
            &mut base.messages_staged,
            last.messages_staged,
            report.messages_staged,
        );
        restart(
            &mut base.messages_committed,
            last.messages_committed,
            report.messages_committed,
        );
        restart(
            &mut base.bytes_staged,
            last.bytes_staged,
            report.bytes_staged,
        );
        restart(
            &mut base.bytes_committed,
            last.bytes_committed,
            report.bytes_committed,
        );
    }

    fn shown(base: &Self, last: &Self) -> Self {
        SinkStatistics {
            messages_staged: base.messages_staged.saturating_add(last.messages_staged),
            messages_committed: base
                .messages_committed
                .saturating_add(last.messages_committed),
            bytes_staged: base.bytes_staged.saturating_add(last.bytes_staged),
            bytes_committed: base.bytes_committed.saturating_add(last.bytes_committed),
        }
    }
}

/// The consolidated statistics of one `(id, replica)`: what earlier replica runs
/// counted, and the last report of the current one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consolidated<S> {
    base: S,
    last: S,
}

impl<S: StatisticsKind> Consolidated<S> {
    /// Starts from a value read back from the collection: it counts as the last report,
    /// so a replica that kept running continues it and one that restarted adds to it.
    pub fn seeded(value: S) -> Self {
        Consolidated {
            base: S::default(),
            last: value,
        }
    }

    /// Folds in a report.
    pub fn absorb(&mut self, report: S) {
        S::rebase(&mut self.base, &self.last, &report);
        self.last = report;
    }

    /// The value shown in the collection.
    pub fn shown(&self) -> S {
        S::shown(&self.base, &self.last)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sink(n: u64) -> SinkStatistics {
        SinkStatistics {
            messages_staged: n,
            messages_committed: n,
            bytes_staged: n * 10,
            bytes_committed: n * 10,
        }
    }

    fn check(seed: Option<u64>, reports: &[u64], expected_messages: u64) {
        let mut c = seed.map_or_else(Consolidated::default, |s| Consolidated::seeded(sink(s)));
        for r in reports {
            c.absorb(sink(*r));
        }
        assert_eq!(
            c.shown().messages_staged,
            expected_messages,
            "{seed:?} {reports:?}"
        );
    }

    #[test]
    fn counters_survive_restarts() {
        check(None, &[], 0);
        check(None, &[1, 5, 9], 9);
        check(None, &[5, 2], 7);
        check(None, &[5, 2, 3, 1], 9);
        // Controller restart with the replica still running: it continues the seed.
        check(Some(10), &[12], 12);
        // Replica restarted too: its new count adds to the seed.
        check(Some(10), &[3], 13);
    }

    #[test]
    fn rows_round_trip_and_match_the_schema() {
        let source = SourceStatistics {
            messages_received: 1,
            bytes_received: 2,
            updates_staged: 3,
            updates_committed: 4,
            snapshot_committed: true,
            offset_known: Some(5),
            offset_committed: None,
        };
        let (id, replica) = (GlobalId::User(4), ReplicaId(2));
        let row = source.to_row(id, replica);
        assert_eq!(
            crate::schema::desc(SourceStatistics::TYPE).validate_row(&row),
            Ok(())
        );
        assert_eq!(
            SourceStatistics::from_row(&row),
            Some((id, replica, source))
        );
        let row = sink(3).to_row(id, replica);
        assert_eq!(
            crate::schema::desc(SinkStatistics::TYPE).validate_row(&row),
            Ok(())
        );
        assert_eq!(SinkStatistics::from_row(&row), Some((id, replica, sink(3))));
        assert_eq!(SinkStatistics::from_row(&Row::pack(&[Datum::Null])), None);
        assert_eq!(
            SourceStatistics::from_row(&sink(1).to_row(id, replica)),
            None
        );
    }

    proptest! {
        #[test]
        fn shown_counters_never_decrease_and_track_increments(reports in proptest::collection::vec(0u64..50, 0..20)) {
            let mut c = Consolidated::<SinkStatistics>::default();
            // Model: the sum of what each replica run counted, a run ending when a
            // report goes down.
            let (mut finished, mut current, mut previous_shown) = (0u64, 0u64, 0u64);
            for r in reports {
                if r < current {
                    finished += current;
                }
                current = r;
                c.absorb(sink(r));
                let shown = c.shown().messages_staged;
                prop_assert_eq!(shown, finished + current);
                prop_assert!(shown >= previous_shown);
                previous_shown = shown;
            }
        }
    }
}
