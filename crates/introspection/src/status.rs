//! Status-history de-duplication: a status is recorded only when it supersedes the last
//! one recorded for the same `(id, replica)`.
//!
//! The rule: `Dropped` supersedes everything and nothing supersedes `Dropped`; otherwise
//! a status supersedes the last one when the status or its error differs. Replicas
//! repeat their status on every reconnect, so without this the history would fill with
//! copies.

use std::collections::BTreeMap;

use strata_controller_api::{Datum, GlobalId, ReplicaId, Row, Status, StatusUpdate};

/// Whether `new` should be recorded after `last` (`None`: nothing recorded yet).
///
/// # Examples
///
/// ```
/// use strata_controller_api::Status;
/// use strata_introspection::status::supersedes;
/// assert!(supersedes(None, (Status::Starting, None)));
/// assert!(supersedes(Some((Status::Starting, None)), (Status::Running, None)));
/// assert!(!supersedes(Some((Status::Running, None)), (Status::Running, None)));
/// assert!(!supersedes(Some((Status::Dropped, None)), (Status::Running, None)));
/// ```
pub fn supersedes(last: Option<(Status, Option<&str>)>, new: (Status, Option<&str>)) -> bool {
    match (last, new) {
        (None, _) => true,
        (Some((Status::Dropped, _)), _) => false,
        (Some(_), (Status::Dropped, _)) => true,
        (Some(last), new) => last != new,
    }
}

/// Parses a status from its [`Status::as_str`] name.
pub fn parse_status(name: &str) -> Option<Status> {
    [
        Status::Starting,
        Status::Running,
        Status::Paused,
        Status::Stalled,
        Status::Dropped,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
}

/// The status-history row of an update: `(occurred_at, id, status, error, details,
/// replica_id)`. `details` is `{"hints": [...]}` when there are hints, else NULL.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{GlobalId, ReplicaId, Status, StatusUpdate};
/// use strata_introspection::status::{status_from_row, status_row};
/// let update = StatusUpdate {
///     id: GlobalId::User(1), replica_id: Some(ReplicaId(2)), status: Status::Stalled,
///     timestamp_ms: 5, error: Some("boom".into()), hints: vec!["retry".into()],
/// };
/// assert_eq!(status_from_row(&status_row(&update)), Some(update));
/// ```
pub fn status_row(update: &StatusUpdate) -> Row {
    let opt = |s: Option<String>| s.map_or(Datum::Null, Datum::String);
    let details = match update.hints.is_empty() {
        true => Datum::Null,
        false => Datum::Jsonb(serde_json::json!({ "hints": update.hints }).to_string()),
    };
    Row::pack(&[
        Datum::TimestampMillis(update.timestamp_ms),
        Datum::String(update.id.to_string()),
        Datum::String(update.status.as_str().to_owned()),
        opt(update.error.clone()),
        details,
        opt(update.replica_id.map(|r| r.to_string())),
    ])
}

/// The update a status-history row records, or `None` if the row is not one.
pub fn status_from_row(row: &Row) -> Option<StatusUpdate> {
    let datums = row.unpack();
    let [occurred_at, id, status, error, details, replica] = datums.as_slice() else {
        return None;
    };
    let text = |d: &Datum| match d {
        Datum::String(s) => Some(s.clone()),
        _ => None,
    };
    let hints = match details {
        Datum::Jsonb(json) => serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("hints").cloned())
            .and_then(|h| serde_json::from_value::<Vec<String>>(h).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    Some(StatusUpdate {
        id: text(id)?.parse().ok()?,
        replica_id: match replica {
            Datum::Null => None,
            other => Some(text(other)?.parse().ok()?),
        },
        status: parse_status(&text(status)?)?,
        timestamp_ms: match occurred_at {
            Datum::TimestampMillis(ms) => *ms,
            _ => return None,
        },
        error: text(error),
        hints,
    })
}

/// Remembers the last status recorded per `(id, replica)` and filters updates by
/// [`supersedes`].
#[derive(Debug, Default, Clone)]
pub struct StatusDeduper {
    last: BTreeMap<(GlobalId, Option<ReplicaId>), (Status, Option<String>)>,
}

impl StatusDeduper {
    /// A deduper that has seen nothing.
    pub fn new() -> Self {
        StatusDeduper::default()
    }

    /// Seeds the last recorded status of a key, e.g. from the history collection's
    /// current contents at start-up.
    pub fn seed(&mut self, update: &StatusUpdate) {
        self.last.insert(
            (update.id, update.replica_id),
            (update.status, update.error.clone()),
        );
    }

    /// Seeds a key only if nothing is remembered for it yet, so a late seed never
    /// overwrites a newer status.
    pub fn seed_missing(&mut self, update: &StatusUpdate) {
        self.last
            .entry((update.id, update.replica_id))
            .or_insert_with(|| (update.status, update.error.clone()));
    }

    /// The updates worth recording, in order; remembers them as the new last ones.
    pub fn filter(&mut self, updates: impl IntoIterator<Item = StatusUpdate>) -> Vec<StatusUpdate> {
        let mut out = Vec::new();
        for update in updates {
            let key = (update.id, update.replica_id);
            let last = self
                .last
                .get(&key)
                .map(|(status, error)| (*status, error.as_deref()));
            if supersedes(last, (update.status, update.error.as_deref())) {
                self.last.insert(key, (update.status, update.error.clone()));
                out.push(update);
            }
        }
        out
    }

    /// Forgets every key of `id`, once its history is no longer kept.
    pub fn forget(&mut self, id: GlobalId) {
        self.last.retain(|(key_id, _), _| *key_id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: u64, replica: Option<u64>, status: Status, error: Option<&str>) -> StatusUpdate {
        StatusUpdate {
            id: GlobalId::User(id),
            replica_id: replica.map(ReplicaId),
            status,
            timestamp_ms: 0,
            error: error.map(str::to_owned),
            hints: Vec::new(),
        }
    }

    #[test]
    fn supersedes_table() {
        use Status::*;
        type Seen<'a> = (Status, Option<&'a str>);
        let cases: &[(Option<Seen>, Seen, bool)] = &[
            (None, (Dropped, None), true),
            (Some((Starting, None)), (Starting, None), false),
            (Some((Running, None)), (Stalled, Some("boom")), true),
            (
                Some((Stalled, Some("boom"))),
                (Stalled, Some("boom")),
                false,
            ),
            (Some((Stalled, Some("boom"))), (Stalled, Some("bang")), true),
            (Some((Paused, None)), (Dropped, None), true),
            (Some((Dropped, None)), (Dropped, None), false),
            (Some((Dropped, None)), (Starting, None), false),
        ];
        for (last, new, expected) in cases {
            assert_eq!(supersedes(*last, *new), *expected, "{last:?} -> {new:?}");
        }
    }

    #[test]
    fn deduper_is_per_id_and_replica() {
        let mut d = StatusDeduper::new();
        let kept = d.filter(vec![
            update(1, Some(1), Status::Running, None),
            update(1, Some(2), Status::Running, None),
            update(1, Some(1), Status::Running, None),
            update(2, Some(1), Status::Running, None),
            update(1, Some(1), Status::Dropped, None),
            update(1, Some(1), Status::Running, None),
        ]);
        let keys: Vec<_> = kept
            .iter()
            .map(|u| (u.id, u.replica_id, u.status))
            .collect();
        assert_eq!(
            keys,
            vec![
                (GlobalId::User(1), Some(ReplicaId(1)), Status::Running),
                (GlobalId::User(1), Some(ReplicaId(2)), Status::Running),
                (GlobalId::User(2), Some(ReplicaId(1)), Status::Running),
                (GlobalId::User(1), Some(ReplicaId(1)), Status::Dropped),
            ]
        );
    }

    #[test]
    fn rows_round_trip_and_match_the_schema() {
        let desc =
            crate::schema::desc(strata_controller_api::IntrospectionType::SourceStatusHistory);
        for u in [
            update(1, None, Status::Running, None),
            update(2, Some(3), Status::Stalled, Some("boom")),
        ] {
            let row = status_row(&u);
            assert_eq!(desc.validate_row(&row), Ok(()));
            assert_eq!(status_from_row(&row), Some(u));
        }
        assert_eq!(status_from_row(&Row::pack(&[Datum::Null])), None);
        for s in ["starting", "running", "paused", "stalled", "dropped"] {
            assert_eq!(parse_status(s).map(|s| s.as_str()), Some(s));
        }
        assert_eq!(parse_status("bogus"), None);
    }

    #[test]
    fn seeding_suppresses_a_repeat_after_restart() {
        let mut d = StatusDeduper::new();
        d.seed(&update(1, None, Status::Stalled, Some("boom")));
        assert!(
            d.filter(vec![update(1, None, Status::Stalled, Some("boom"))])
                .is_empty()
        );
        d.forget(GlobalId::User(1));
        assert_eq!(
            d.filter(vec![update(1, None, Status::Stalled, Some("boom"))])
                .len(),
            1
        );
    }
}
