//! Reconciliation: what a replica does with the history a (re)connecting controller
//! replays.
//!
//! The replica compares the objects it runs with the objects the replay describes:
//! - running but not described: drop;
//! - described with the same description: keep running, untouched;
//! - described differently: restart with the new description;
//! - described but not running: start.
//!
//! Everything here is pure.

use std::collections::BTreeMap;

use strata_controller_api::{GlobalId, Timestamp};
use strata_instance_client::{RunIngestionCommand, RunSinkCommand, StorageCommand};

/// An object a replica runs, as the controller described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectDesc {
    /// An ingestion.
    Ingestion(RunIngestionCommand<Timestamp>),
    /// A sink.
    Sink(RunSinkCommand<Timestamp>),
}

impl ObjectDesc {
    /// The object's id.
    pub fn id(&self) -> GlobalId {
        match self {
            ObjectDesc::Ingestion(cmd) => cmd.id,
            ObjectDesc::Sink(cmd) => cmd.id,
        }
    }
}

/// What to do with each object after a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Running objects the controller no longer wants.
    pub drop: Vec<GlobalId>,
    /// Running objects whose description is unchanged.
    pub keep: Vec<GlobalId>,
    /// Running objects whose description changed.
    pub restart: Vec<GlobalId>,
    /// Objects that do not run yet.
    pub start: Vec<GlobalId>,
}

/// Compares what runs with what the controller wants.
pub fn reconcile<D: PartialEq>(
    running: &BTreeMap<GlobalId, D>,
    desired: &BTreeMap<GlobalId, D>,
) -> ReconcilePlan {
    let mut plan = ReconcilePlan::default();
    for (id, current) in running {
        match desired.get(id) {
            None => plan.drop.push(*id),
            Some(wanted) if wanted == current => plan.keep.push(*id),
            Some(_) => plan.restart.push(*id),
        }
    }
    plan.start = desired
        .keys()
        .filter(|id| !running.contains_key(id))
        .copied()
        .collect();
    plan
}

/// The objects a replayed history describes: the latest `RunIngestion`/`RunSink` per
/// id, minus objects compacted to `[]`.
pub fn desired_objects<'a>(
    replay: impl IntoIterator<Item = &'a StorageCommand<Timestamp>>,
) -> BTreeMap<GlobalId, ObjectDesc> {
    let mut desired = BTreeMap::new();
    for command in replay {
        match command {
            StorageCommand::RunIngestion(cmd) => {
                desired.insert(cmd.id, ObjectDesc::Ingestion(cmd.clone()));
            }
            StorageCommand::RunSink(cmd) => {
                desired.insert(cmd.id, ObjectDesc::Sink(cmd.clone()));
            }
            StorageCommand::AllowCompaction { id, frontier } if frontier.is_empty() => {
                desired.remove(id);
            }
            _ => {}
        }
    }
    desired
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use strata_controller_api::Antichain;

    use super::*;

    fn id(n: u64) -> GlobalId {
        GlobalId::User(n)
    }

    fn map(entries: &[(u64, char)]) -> BTreeMap<GlobalId, char> {
        entries.iter().map(|(n, d)| (id(*n), *d)).collect()
    }

    fn check(running: &[(u64, char)], desired: &[(u64, char)], expected: [&[u64]; 4]) {
        let plan = reconcile(&map(running), &map(desired));
        let ids = |v: &[u64]| v.iter().map(|n| id(*n)).collect::<Vec<_>>();
        let expected = ReconcilePlan {
            drop: ids(expected[0]),
            keep: ids(expected[1]),
            restart: ids(expected[2]),
            start: ids(expected[3]),
        };
        assert_eq!(plan, expected, "running {running:?}, desired {desired:?}");
    }

    #[test]
    fn reconcile_table() {
        check(&[], &[], [&[], &[], &[], &[]]);
        check(&[(1, 'a')], &[(1, 'a')], [&[], &[1], &[], &[]]);
        check(&[(1, 'a')], &[(1, 'b')], [&[], &[], &[1], &[]]);
        check(&[(1, 'a')], &[], [&[1], &[], &[], &[]]);
        check(&[], &[(2, 'a')], [&[], &[], &[], &[2]]);
        check(
            &[(1, 'a'), (2, 'b'), (3, 'c')],
            &[(2, 'b'), (3, 'x'), (4, 'd')],
            [&[1], &[2], &[3], &[4]],
        );
    }

    #[test]
    fn desired_objects_drops_compacted_and_keeps_latest() {
        let frontier = |t: Option<u64>| {
            t.map_or_else(Antichain::new, |t| Antichain::from_elem(Timestamp::new(t)))
        };
        let history = vec![
            StorageCommand::Hello { nonce: 1, epoch: 1 },
            StorageCommand::AllowCompaction {
                id: id(1),
                frontier: frontier(Some(3)),
            },
            StorageCommand::AllowCompaction {
                id: id(2),
                frontier: frontier(None),
            },
        ];
        assert!(desired_objects(&history).is_empty());
    }

    proptest! {
        /// Model: every running id lands in exactly one bucket, every desired id is
        /// kept, restarted or started, and an unchanged history restarts nothing.
        #[test]
        fn reconcile_partitions_ids(
            running in proptest::collection::btree_map(0u64..20, 0u8..3, 0..10),
            desired in proptest::collection::btree_map(0u64..20, 0u8..3, 0..10),
        ) {
            let running: BTreeMap<GlobalId, u8> = running.into_iter().map(|(k, v)| (id(k), v)).collect();
            let desired: BTreeMap<GlobalId, u8> = desired.into_iter().map(|(k, v)| (id(k), v)).collect();
            let plan = reconcile(&running, &desired);
            let mut seen: Vec<GlobalId> = plan.drop.iter().chain(&plan.keep).chain(&plan.restart).copied().collect();
            seen.sort();
            prop_assert_eq!(seen, running.keys().copied().collect::<Vec<_>>());
            let mut wanted: Vec<GlobalId> = plan.keep.iter().chain(&plan.restart).chain(&plan.start).copied().collect();
            wanted.sort();
            prop_assert_eq!(wanted, desired.keys().copied().collect::<Vec<_>>());
            let same = reconcile(&running, &running);
            prop_assert!(same.restart.is_empty() && same.drop.is_empty() && same.start.is_empty());
        }
    }
}
