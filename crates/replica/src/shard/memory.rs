//! An in-memory [`Shards`](super::Shards) backend: one mutex-guarded map of shards.
//!
//! It follows every contract of the shard traits and is the reference the replica's
//! tests compare against. Cloning shares the same shards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use strata_controller_api::{Antichain, Certainty, ShardId, Timestamp};
use timely::PartialOrder;

use super::{ShardError, ShardReader, ShardSince, ShardWriter, Update, UpperMismatch};

/// One shard's state.
#[derive(Debug, Clone)]
struct MemShard {
    updates: Vec<Update>,
    upper: Antichain<Timestamp>,
    since: Antichain<Timestamp>,
}

impl Default for MemShard {
    fn default() -> Self {
        MemShard {
            updates: Vec::new(),
            upper: Antichain::from_elem(Timestamp::new(0)),
            since: Antichain::from_elem(Timestamp::new(0)),
        }
    }
}

/// Shards held in memory, shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct MemShards {
    shards: Arc<Mutex<BTreeMap<ShardId, MemShard>>>,
}

impl MemShards {
    /// An empty set of shards.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(
        &self,
        shard: ShardId,
    ) -> Result<MutexGuard<'_, BTreeMap<ShardId, MemShard>>, ShardError> {
        self.shards.lock().map_err(|_| ShardError::Unavailable {
            shard,
            reason: "memory shard lock poisoned".to_owned(),
            certainty: Certainty::Determinate,
        })
    }

    /// Every update ever appended to `shard`, in append order (for tests and benches).
    pub fn contents(&self, shard: ShardId) -> Vec<Update> {
        self.lock(shard)
            .map(|shards| {
                shards
                    .get(&shard)
                    .map(|s| s.updates.clone())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// The since of `shard`.
    pub fn since(&self, shard: ShardId) -> Antichain<Timestamp> {
        self.lock(shard)
            .ok()
            .and_then(|shards| shards.get(&shard).map(|s| s.since.clone()))
            .unwrap_or_else(|| Antichain::from_elem(Timestamp::new(0)))
    }
}

fn check_append(
    shard: ShardId,
    updates: &[Update],
    expected: &Antichain<Timestamp>,
    new: &Antichain<Timestamp>,
) -> Result<(), ShardError> {
    if !PartialOrder::less_equal(expected, new) {
        return Err(ShardError::InvalidUsage {
            shard,
            reason: format!("new upper {new:?} is not beyond expected upper {expected:?}"),
        });
    }
    if let Some((_, time, _)) = updates
        .iter()
        .find(|(_, time, _)| !expected.less_equal(time) || new.less_equal(time))
    {
        return Err(ShardError::InvalidUsage {
            shard,
            reason: format!("update at {time} outside [{expected:?}, {new:?})"),
        });
    }
    Ok(())
}

impl ShardWriter for MemShards {
    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError> {
        Ok(self.lock(shard)?.entry(shard).or_default().upper.clone())
    }

    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError> {
        check_append(shard, updates, expected_upper, new_upper)?;
        let mut shards = self.lock(shard)?;
        let state = shards.entry(shard).or_default();
        if &state.upper != expected_upper {
            return Ok(Err(UpperMismatch {
                current: state.upper.clone(),
            }));
        }
        state.updates.extend_from_slice(updates);
        state.upper = new_upper.clone();
        Ok(Ok(()))
    }
}

impl ShardReader for MemShards {
    fn snapshot(
        &self,
        shard: ShardId,
        as_of: Timestamp,
    ) -> Result<Option<Vec<Update>>, ShardError> {
        let mut shards = self.lock(shard)?;
        let state = shards.entry(shard).or_default();
        if !state.since.less_equal(&as_of) {
            return Err(ShardError::ReadBeforeSince {
                shard,
                as_of,
                since: state.since.clone(),
            });
        }
        if state.upper.less_equal(&as_of) {
            // `as_of` is not before the upper: not yet readable.
            return Ok(None);
        }
        let visible = state
            .updates
            .iter()
            .filter(|(_, time, _)| *time <= as_of)
            .map(|(row, _, diff)| (row.clone(), *diff));
        Ok(Some(
            super::consolidate_rows(visible)
                .into_iter()
                .map(|(row, diff)| (row, as_of, diff))
                .collect(),
        ))
    }

    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError> {
        let mut shards = self.lock(shard)?;
        let state = shards.entry(shard).or_default();
        let updates = state
            .updates
            .iter()
            .filter(|(_, time, _)| *time >= lower && !state.upper.less_equal(time))
            .cloned()
            .collect();
        Ok((updates, state.upper.clone()))
    }
}

impl ShardSince for MemShards {
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError> {
        let mut shards = self.lock(shard)?;
        let state = shards.entry(shard).or_default();
        if PartialOrder::less_than(&state.since, since) {
            state.since = since.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strata_controller_api::{Datum, Row};

    use super::*;

    fn ts(t: u64) -> Antichain<Timestamp> {
        Antichain::from_elem(Timestamp::new(t))
    }

    fn row(n: i64) -> Row {
        Row::pack(&[Datum::Int64(n)])
    }

    #[test]
    fn compare_and_append_checks_the_upper_and_the_times() {
        let shards = MemShards::new();
        let s = ShardId::from_bytes([1; 16]);
        let ok = shards.compare_and_append(s, &[(row(1), Timestamp::new(0), 1)], &ts(0), &ts(2));
        assert_eq!(ok, Ok(Ok(())));
        let stale = shards.compare_and_append(s, &[], &ts(0), &ts(3)).unwrap();
        assert_eq!(stale, Err(UpperMismatch { current: ts(2) }));
        let outside =
            shards.compare_and_append(s, &[(row(1), Timestamp::new(5), 1)], &ts(2), &ts(3));
        assert!(matches!(outside, Err(ShardError::InvalidUsage { .. })));
        assert_eq!(shards.upper(s).unwrap(), ts(2));
    }

    #[test]
    fn snapshot_waits_and_listen_sees_each_update_once() {
        let shards = MemShards::new();
        let s = ShardId::from_bytes([2; 16]);
        assert_eq!(shards.snapshot(s, Timestamp::new(0)).unwrap(), None);
        shards
            .compare_and_append(
                s,
                &[
                    (row(1), Timestamp::new(0), 1),
                    (row(2), Timestamp::new(1), 1),
                ],
                &ts(0),
                &ts(2),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            shards.snapshot(s, Timestamp::new(0)).unwrap(),
            Some(vec![(row(1), Timestamp::new(0), 1)])
        );
        let (first, upper) = shards.listen_from(s, Timestamp::new(1)).unwrap();
        assert_eq!(
            (first, upper.clone()),
            (vec![(row(2), Timestamp::new(1), 1)], ts(2))
        );
        let (second, _) = shards.listen_from(s, Timestamp::new(2)).unwrap();
        assert!(second.is_empty());
        shards.downgrade_since(s, &ts(1)).unwrap();
        assert!(matches!(
            shards.snapshot(s, Timestamp::new(0)),
            Err(ShardError::ReadBeforeSince { .. })
        ));
    }
}
