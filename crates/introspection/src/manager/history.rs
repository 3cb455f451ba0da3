//! How a history collection is kept bounded, and the retractions that bound it.

use std::time::Duration;

use strata_controller_api::{Datum, Row, StatusUpdate};

use crate::status::status_from_row;
use crate::truncation::{HistoryEntry, retractions_outside_window, retractions_to_keep_newest};

/// How a history collection is kept bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryPolicy {
    /// Keep the newest `keep` rows per key (the datums at `key_cols`), ordered by the
    /// time at `occurred_at_col`.
    KeepNewest {
        /// Rows kept per key.
        keep: usize,
        /// The column holding the row's time.
        occurred_at_col: usize,
        /// The columns that form the key.
        key_cols: Vec<usize>,
    },
    /// Keep the rows whose time at `occurred_at_col` is within `retention` of now.
    RetentionWindow {
        /// How long rows are kept.
        retention: Duration,
        /// The column holding the row's time.
        occurred_at_col: usize,
    },
}

impl HistoryPolicy {
    /// Status history: the newest `keep` rows per `(id, replica_id)`.
    pub fn status_history(keep: usize) -> Self {
        HistoryPolicy::KeepNewest {
            keep,
            occurred_at_col: 0,
            key_cols: vec![1, 5],
        }
    }

    /// A connection's status history: the newest `keep` rows per `connection_id`.
    pub fn connection_status_history(keep: usize) -> Self {
        HistoryPolicy::KeepNewest {
            keep,
            occurred_at_col: 0,
            key_cols: vec![1],
        }
    }

    /// Replica metrics history: the rows of the last `retention`.
    pub fn replica_metrics(retention: Duration) -> Self {
        HistoryPolicy::RetentionWindow {
            retention,
            occurred_at_col: 0,
        }
    }

    /// The retractions (negative diffs) that bound `rows` (consolidated contents) at
    /// wall-clock time `now_ms`. Rows without a readable time are never retracted.
    pub fn retractions(&self, rows: &[(Row, i64)], now_ms: u64) -> Vec<(Row, i64)> {
        match self {
            HistoryPolicy::KeepNewest {
                keep,
                occurred_at_col,
                key_cols,
            } => {
                let entries = rows.iter().filter_map(|(row, diff)| {
                    let datums = row.unpack();
                    let occurred_at = time_of(datums.get(*occurred_at_col)?)?;
                    let key: Vec<Datum> = key_cols
                        .iter()
                        .map(|c| datums.get(*c).cloned().unwrap_or(Datum::Null))
                        .collect();
                    let key = Row::pack(&key);
                    Some((
                        HistoryEntry {
                            key,
                            occurred_at,
                            row: row.clone(),
                        },
                        *diff,
                    ))
                });
                retractions_to_keep_newest(entries, *keep)
                    .into_iter()
                    .map(|(e, diff)| (e.row, -diff))
                    .collect()
            }
            HistoryPolicy::RetentionWindow {
                retention,
                occurred_at_col,
            } => {
                let timed = rows.iter().filter_map(|(row, diff)| {
                    let occurred_at = time_of(row.iter().nth(*occurred_at_col).as_ref()?)?;
                    Some(((occurred_at, row.clone()), *diff))
                });
                let retention = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
                retractions_outside_window(timed, now_ms, retention)
                    .into_iter()
                    .map(|((_, row), diff)| (row, -diff))
                    .collect()
            }
        }
    }
}

fn time_of(datum: &Datum) -> Option<u64> {
    match datum {
        Datum::TimestampMillis(ms) | Datum::UInt64(ms) => Some(*ms),
        _ => None,
    }
}

/// The newest status per `(id, replica)` among status-history rows, to seed a
/// [`StatusDeduper`](crate::status::StatusDeduper).
pub(crate) fn latest_statuses(rows: &[(Row, i64)]) -> Vec<StatusUpdate> {
    let mut latest: std::collections::BTreeMap<_, (u64, Row, StatusUpdate)> = Default::default();
    for (row, diff) in rows {
        let Some(update) = status_from_row(row).filter(|_| *diff > 0) else {
            continue;
        };
        let key = (update.id, update.replica_id);
        let newer = latest
            .get(&key)
            .is_none_or(|(t, r, _)| (update.timestamp_ms, row) > (*t, r));
        if newer {
            latest.insert(key, (update.timestamp_ms, row.clone(), update));
        }
    }
    latest.into_values().map(|(_, _, u)| u).collect()
}

#[cfg(test)]
mod tests {
    use strata_controller_api::{GlobalId, ReplicaId, Status};

    use super::*;
    use crate::status::status_row;

    fn status(id: u64, replica: Option<u64>, at: u64, s: Status) -> Row {
        status_row(&StatusUpdate {
            id: GlobalId::User(id),
            replica_id: replica.map(ReplicaId),
            status: s,
            timestamp_ms: at,
            error: None,
            hints: Vec::new(),
        })
    }

    fn check(policy: HistoryPolicy, rows: Vec<(Row, i64)>, now: u64, expected: Vec<(Row, i64)>) {
        let mut got = policy.retractions(&rows, now);
        got.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "{policy:?}");
    }

    #[test]
    fn status_policy_keys_by_id_and_replica() {
        let p = HistoryPolicy::status_history(1);
        let (a1, a2) = (
            status(1, Some(1), 1, Status::Starting),
            status(1, Some(1), 2, Status::Running),
        );
        let b = status(1, Some(2), 1, Status::Starting);
        let c = status(1, None, 1, Status::Paused);
        check(
            p.clone(),
            vec![(a1.clone(), 1), (a2, 1), (b, 1), (c, 1)],
            0,
            vec![(a1, -1)],
        );
        // Equal times: exactly `keep` survive.
        let (e1, e2) = (
            status(2, None, 5, Status::Starting),
            status(2, None, 5, Status::Running),
        );
        let got = p.retractions(&[(e1, 1), (e2, 1)], 0);
        assert_eq!(got.len(), 1);
        check(
            HistoryPolicy::status_history(0),
            vec![(status(3, None, 1, Status::Running), 2)],
            0,
            vec![(status(3, None, 1, Status::Running), -2)],
        );
    }

    #[test]
    fn retention_window() {
        let row = |at: u64| Row::pack(&[Datum::TimestampMillis(at), Datum::String("r1".into())]);
        let p = HistoryPolicy::replica_metrics(Duration::from_millis(100));
        check(
            p.clone(),
            vec![(row(10), 1), (row(950), 1)],
            1000,
            vec![(row(10), -1)],
        );
        check(p, vec![(Row::pack(&[Datum::Null]), 1)], 1000, vec![]);
    }

    #[test]
    fn latest_status_per_key() {
        let rows = vec![
            (status(1, Some(1), 1, Status::Starting), 1),
            (status(1, Some(1), 3, Status::Stalled), 1),
            (status(1, Some(1), 2, Status::Running), 1),
            (status(2, None, 1, Status::Running), 1),
        ];
        let got: Vec<_> = latest_statuses(&rows)
            .into_iter()
            .map(|u| (u.id, u.status))
            .collect();
        assert_eq!(
            got,
            vec![
                (GlobalId::User(1), Status::Stalled),
                (GlobalId::User(2), Status::Running)
            ]
        );
    }
}
