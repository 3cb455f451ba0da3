//! `prepare_state` / `initialize_state`: the durable side of creating and dropping
//! collections, written into any [`StorageTxn`]. Pure: no I/O, the caller commits.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{GlobalId, ShardId, StorageError, StorageTimestamp, StorageTxn};

/// A fresh random shard id (the bytes of a v4 UUID).
pub fn new_shard_id() -> ShardId {
    ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

/// What [`prepare_state`] wrote into the transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreparedState {
    /// Ids that had no shard, with the fresh shard each now maps to.
    pub added: BTreeMap<GlobalId, ShardId>,
    /// Dropped ids with the shard each mapped to; those shards are now unfinalized.
    pub dropped: BTreeMap<GlobalId, ShardId>,
}

/// Allocates a fresh shard (from `new_shard`) for every id of `ids_to_add` that has
/// none yet, then forgets the shards of `ids_to_drop` and records them as unfinalized,
/// so their finalization survives a restart. Ids already mapped keep their shard; ids
/// to drop that are not mapped are ignored.
///
/// On error the transaction may be partly written: discard it.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeSet;
/// use strata_controller_api::{GlobalId, MemoryCatalog, ShardId, StorageTxn, Timestamp};
/// use strata_controller_core::catalog::prepare_state;
/// let catalog = MemoryCatalog::new();
/// let mut txn = catalog.begin::<Timestamp>();
/// let mut next = 0u8;
/// let mut fresh = || { next += 1; ShardId::from_bytes([next; 16]) };
/// let added = prepare_state(&mut txn, BTreeSet::from([GlobalId::User(1)]), BTreeSet::new(), &mut fresh).unwrap();
/// assert_eq!(added.added.len(), 1);
/// let dropped = prepare_state(&mut txn, BTreeSet::new(), BTreeSet::from([GlobalId::User(1)]), &mut fresh).unwrap();
/// assert_eq!(txn.get_unfinalized_shards(), BTreeSet::from([ShardId::from_bytes([1; 16])]));
/// assert!(txn.get_collection_metadata().is_empty());
/// assert_eq!(dropped.dropped.len(), 1);
/// ```
pub fn prepare_state<T: StorageTimestamp>(
    txn: &mut dyn StorageTxn<T>,
    ids_to_add: BTreeSet<GlobalId>,
    ids_to_drop: BTreeSet<GlobalId>,
    new_shard: &mut dyn FnMut() -> ShardId,
) -> Result<PreparedState, StorageError<T>> {
    let existing = txn.get_collection_metadata();
    let added: BTreeMap<GlobalId, ShardId> = ids_to_add
        .into_iter()
        .filter(|id| !existing.contains_key(id))
        .map(|id| (id, new_shard()))
        .collect();
    txn.insert_collection_metadata(added.clone())?;
    let dropped: BTreeMap<GlobalId, ShardId> = txn
        .delete_collection_metadata(ids_to_drop)
        .into_iter()
        .collect();
    txn.insert_unfinalized_shards(dropped.values().copied().collect())?;
    Ok(PreparedState { added, dropped })
}

/// The bootstrap form of [`prepare_state`] with random shards: maps every id of
/// `init_ids` that has no shard, drops `drop_ids`, and returns every unfinalized shard
/// (including those left over from before a restart) for the controller to finalize.
/// Once a shard is finalized, the caller records it with
/// [`StorageTxn::mark_shards_as_finalized`] and commits.
pub fn initialize_state<T: StorageTimestamp>(
    txn: &mut dyn StorageTxn<T>,
    init_ids: BTreeSet<GlobalId>,
    drop_ids: BTreeSet<GlobalId>,
) -> Result<BTreeSet<ShardId>, StorageError<T>> {
    prepare_state(txn, init_ids, drop_ids, &mut new_shard_id)?;
    Ok(txn.get_unfinalized_shards())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_controller_api::{MemoryCatalog, Timestamp};

    fn u(n: u64) -> GlobalId {
        GlobalId::User(n)
    }

    fn s(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    /// Starts from `existing` mappings, prepares `add`/`drop` with shards numbered from
    /// 100, and compares the mapping and unfinalized shards afterwards.
    fn check(
        existing: &[(u64, u8)],
        add: &[u64],
        drop: &[u64],
        mapping: &[(u64, u8)],
        unfinalized: &[u8],
    ) {
        let catalog = MemoryCatalog::new();
        let mut txn = catalog.begin::<Timestamp>();
        txn.insert_collection_metadata(existing.iter().map(|(i, sh)| (u(*i), s(*sh))).collect())
            .unwrap();
        let mut next = 99u8;
        let mut fresh = || {
            next += 1;
            s(next)
        };
        let add = add.iter().copied().map(u).collect();
        let drop = drop.iter().copied().map(u).collect();
        prepare_state(&mut txn, add, drop, &mut fresh).unwrap();
        let want: BTreeMap<_, _> = mapping.iter().map(|(i, sh)| (u(*i), s(*sh))).collect();
        assert_eq!(txn.get_collection_metadata(), want);
        let want: BTreeSet<_> = unfinalized.iter().copied().map(s).collect();
        assert_eq!(txn.get_unfinalized_shards(), want);
    }

    #[test]
    fn prepare_cases() {
        check(&[], &[], &[], &[], &[]);
        check(&[], &[1, 2], &[], &[(1, 100), (2, 101)], &[]);
        check(&[(1, 1)], &[1, 2], &[], &[(1, 1), (2, 100)], &[]);
        check(&[(1, 1), (2, 2)], &[], &[2, 3], &[(1, 1)], &[2]);
        check(&[(1, 1)], &[2], &[1], &[(2, 100)], &[1]);
        check(&[], &[1], &[1], &[], &[100]);
    }

    #[test]
    fn initialize_returns_every_unfinalized_shard() {
        let catalog = MemoryCatalog::new();
        let mut txn = catalog.begin::<Timestamp>();
        txn.insert_unfinalized_shards(BTreeSet::from([s(9)]))
            .unwrap();
        txn.insert_collection_metadata(BTreeMap::from([(u(1), s(1))]))
            .unwrap();
        let pending = initialize_state(
            &mut txn,
            BTreeSet::from([u(1), u(2)]),
            BTreeSet::from([u(1)]),
        )
        .unwrap();
        assert_eq!(pending, BTreeSet::from([s(1), s(9)]));
        assert_eq!(txn.get_collection_metadata().len(), 1);
        assert!(txn.get_collection_metadata().contains_key(&u(2)));
        assert_ne!(new_shard_id(), new_shard_id());
    }
}
