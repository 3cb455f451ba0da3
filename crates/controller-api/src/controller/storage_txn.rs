//! [`StorageTxn`]: the seam between the controller and the host's durable catalog.
//!
//! The controller keeps no durable state of its own besides shards. What it must
//! remember across restarts (which shard backs which collection, which shards still
//! need finalizing, which shard is the txns shard, and the fencing epoch) lives in the
//! host's catalog, read and written through a transaction that implements this trait.
//! [`MemoryCatalog`] is an in-memory implementation for tests and examples.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use crate::error::StorageError;
use crate::ids::{GlobalId, ShardId};
use crate::timestamp::StorageTimestamp;

/// A transaction on the host's durable catalog, as the controller sees it.
///
/// # Contract
///
/// - Reads see the transaction's own writes. Nothing is durable, or visible to other
///   transactions, until [`StorageTxn::commit`] returns `Ok`; after an `Err` from commit
///   the writes may or may not have become durable ([`StorageError::certainty`] says
///   which).
/// - `collection metadata` maps each collection to its data shard. An id maps to at most
///   one shard and a shard backs at most one id. Inserting a mapping that already exists
///   unchanged is a no-op; inserting a different shard for a mapped id fails with
///   [`StorageError::CollectionIdReused`], and reusing a mapped shard fails with
///   [`StorageError::InvalidUsage`]. Either failure leaves the transaction unchanged.
/// - `unfinalized shards` are shards of dropped collections that still need to be
///   finalized. A shard stays listed until [`StorageTxn::mark_shards_as_finalized`].
/// - The txns shard is written once: writing the same id again is a no-op, a different
///   id fails with [`StorageError::InvalidUsage`].
/// - [`StorageTxn::epoch`] is the fencing epoch of the controller that opened this
///   catalog: it grows every time a new controller takes over, and a transaction opened
///   by an older controller fails to commit with [`StorageError::Fenced`].
#[async_trait]
pub trait StorageTxn<T: StorageTimestamp>: Send {
    /// Every collection's data shard.
    fn get_collection_metadata(&self) -> BTreeMap<GlobalId, ShardId>;

    /// Records data shards for collections. See the contract for conflicts.
    fn insert_collection_metadata(
        &mut self,
        metadata: BTreeMap<GlobalId, ShardId>,
    ) -> Result<(), StorageError<T>>;

    /// Forgets the data shards of `ids` and returns the mappings removed. Ids without a
    /// mapping are ignored.
    fn delete_collection_metadata(&mut self, ids: BTreeSet<GlobalId>) -> Vec<(GlobalId, ShardId)>;

    /// Shards that still need to be finalized.
    fn get_unfinalized_shards(&self) -> BTreeSet<ShardId>;

    /// Adds shards that need to be finalized.
    fn insert_unfinalized_shards(
        &mut self,
        shards: BTreeSet<ShardId>,
    ) -> Result<(), StorageError<T>>;

    /// Removes finalized shards from the unfinalized set. Unknown shards are ignored.
    fn mark_shards_as_finalized(&mut self, shards: BTreeSet<ShardId>);

    /// The txns shard, once one has been written.
    fn get_txn_wal_shard(&self) -> Option<ShardId>;

    /// Records the txns shard. See the contract: it is written once.
    fn write_txn_wal_shard(&mut self, shard: ShardId) -> Result<(), StorageError<T>>;

    /// The epoch of the controller that owns the catalog.
    fn epoch(&self) -> u64;

    /// Makes the transaction's writes durable. The transaction stays usable; later
    /// writes start a new batch.
    async fn commit(&mut self) -> Result<(), StorageError<T>>;
}

/// A snapshot of which shard backs each collection, handed to calls that create or drop
/// collections so that they agree with the catalog the caller just wrote.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use strata_controller_api::{GlobalId, ShardId, StorageError, StorageMetadata, Timestamp};
/// let shard = ShardId::from_bytes([1; 16]);
/// let meta = StorageMetadata { collection_metadata: BTreeMap::from([(GlobalId::User(1), shard)]) };
/// assert_eq!(meta.get_collection_shard::<Timestamp>(GlobalId::User(1)).ok(), Some(shard));
/// assert!(matches!(
///     meta.get_collection_shard::<Timestamp>(GlobalId::User(2)),
///     Err(StorageError::IdentifierMissing(GlobalId::User(2)))
/// ));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageMetadata {
    /// Every collection's data shard.
    pub collection_metadata: BTreeMap<GlobalId, ShardId>,
}

impl StorageMetadata {
    /// The mapping as `txn` sees it.
    pub fn from_txn<T: StorageTimestamp>(txn: &dyn StorageTxn<T>) -> Self {
        StorageMetadata {
            collection_metadata: txn.get_collection_metadata(),
        }
    }

    /// The data shard of `id`, or [`StorageError::IdentifierMissing`].
    pub fn get_collection_shard<T>(&self, id: GlobalId) -> Result<ShardId, StorageError<T>> {
        self.collection_metadata
            .get(&id)
            .copied()
            .ok_or(StorageError::IdentifierMissing(id))
    }
}

/// Seeds a catalog with what a controller needs before it can start: a txns shard.
///
/// Returns the txns shard, calling `new_shard` for a fresh id only if the catalog has none
/// yet. The caller commits `txn`.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{MemoryCatalog, ShardId, StorageTxn, Timestamp, prepare_initialization};
/// let catalog = MemoryCatalog::new();
/// let mut txn = catalog.begin::<Timestamp>();
/// let first = prepare_initialization(&mut txn, || ShardId::from_bytes([9; 16])).unwrap();
/// let again = prepare_initialization(&mut txn, || ShardId::from_bytes([8; 16])).unwrap();
/// assert_eq!(first, again);
/// assert_eq!(txn.get_txn_wal_shard(), Some(first));
/// ```
pub fn prepare_initialization<T: StorageTimestamp>(
    txn: &mut dyn StorageTxn<T>,
    new_shard: impl FnOnce() -> ShardId,
) -> Result<ShardId, StorageError<T>> {
    match txn.get_txn_wal_shard() {
        Some(shard) => Ok(shard),
        None => {
            let shard = new_shard();
            txn.write_txn_wal_shard(shard)?;
            Ok(shard)
        }
    }
}

/// The rule every [`StorageTxn`] applies to `insert_collection_metadata`: each id maps
/// to one shard and each shard backs one id. Re-inserting an existing mapping is a
/// no-op. On error `current` is unchanged.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use strata_controller_api::{insert_collection_metadata_checked, GlobalId, ShardId, StorageError};
/// let mut map = BTreeMap::new();
/// let (a, b) = (ShardId::from_bytes([1; 16]), ShardId::from_bytes([2; 16]));
/// insert_collection_metadata_checked::<u64>(&mut map, BTreeMap::from([(GlobalId::User(1), a)])).unwrap();
/// let reused = insert_collection_metadata_checked::<u64>(&mut map, BTreeMap::from([(GlobalId::User(1), b)]));
/// assert!(matches!(reused, Err(StorageError::CollectionIdReused(_))));
/// let shared = insert_collection_metadata_checked::<u64>(&mut map, BTreeMap::from([(GlobalId::User(2), a)]));
/// assert!(matches!(shared, Err(StorageError::InvalidUsage(_))));
/// assert_eq!(map.len(), 1);
/// ```
pub fn insert_collection_metadata_checked<T>(
    current: &mut BTreeMap<GlobalId, ShardId>,
    metadata: BTreeMap<GlobalId, ShardId>,
) -> Result<(), StorageError<T>> {
    let mut next = current.clone();
    let mut owner: BTreeMap<ShardId, GlobalId> = next.iter().map(|(i, s)| (*s, *i)).collect();
    for (id, shard) in metadata {
        match next.get(&id) {
            Some(existing) if *existing == shard => continue,
            Some(_) => return Err(StorageError::CollectionIdReused(id)),
            None => {}
        }
        if let Some(other) = owner.get(&shard) {
            return Err(StorageError::InvalidUsage(format!(
                "shard {shard} already backs {other}"
            )));
        }
        owner.insert(shard, id);
        next.insert(id, shard);
    }
    *current = next;
    Ok(())
}

/// The rule every [`StorageTxn`] applies to `write_txn_wal_shard`: the txns shard is
/// set once; writing the same shard again is a no-op, a different one is an error.
pub fn write_txns_shard_checked<T>(
    current: &mut Option<ShardId>,
    shard: ShardId,
) -> Result<(), StorageError<T>> {
    match *current {
        Some(existing) if existing != shard => Err(StorageError::InvalidUsage(format!(
            "txns shard is already {existing}, not {shard}"
        ))),
        _ => {
            *current = Some(shard);
            Ok(())
        }
    }
}

/// What a catalog records at one version: the state behind every [`StorageTxn`].
///
/// [`MemoryStorageTxn`] and `strata-controller-core`'s `DurableStorageTxn` both buffer
/// their writes in one, and its methods apply the [`StorageTxn`] contract's rules, so
/// the two cannot drift apart.
///
/// Invariants (kept by the methods; a durable catalog also checks them when it decodes
/// a version): a collection maps to one shard and a shard backs at most one collection;
/// the txns shard, once set, does not change; `epoch` is 0 only in a catalog no
/// controller has claimed yet.
///
/// # Examples
///
/// ```
/// use std::collections::{BTreeMap, BTreeSet};
/// use strata_controller_api::{CatalogContents, GlobalId, ShardId, Timestamp};
/// let (a, b) = (ShardId::from_bytes([1; 16]), ShardId::from_bytes([2; 16]));
/// let mut contents = CatalogContents::default();
/// contents.insert_collection_metadata::<Timestamp>(BTreeMap::from([(GlobalId::User(1), a)])).unwrap();
/// assert!(contents.insert_collection_metadata::<Timestamp>(BTreeMap::from([(GlobalId::User(2), a)])).is_err());
/// contents.write_txns_shard::<Timestamp>(b).unwrap();
/// let dropped = contents.delete_collection_metadata(BTreeSet::from([GlobalId::User(1)]));
/// contents.insert_unfinalized_shards(dropped.iter().map(|(_, shard)| *shard).collect());
/// assert_eq!(contents.unfinalized_shards, BTreeSet::from([a]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogContents {
    /// Every collection's data shard.
    pub collection_metadata: BTreeMap<GlobalId, ShardId>,
    /// Shards of dropped collections that still need finalizing.
    pub unfinalized_shards: BTreeSet<ShardId>,
    /// The txns shard, once written.
    pub txns_shard: Option<ShardId>,
    /// The epoch of the controller that last claimed the catalog.
    pub epoch: u64,
}

impl CatalogContents {
    /// The rule of [`StorageTxn::insert_collection_metadata`]; see
    /// [`insert_collection_metadata_checked`]. On error nothing changes.
    pub fn insert_collection_metadata<T>(
        &mut self,
        metadata: BTreeMap<GlobalId, ShardId>,
    ) -> Result<(), StorageError<T>> {
        insert_collection_metadata_checked(&mut self.collection_metadata, metadata)
    }

    /// [`StorageTxn::delete_collection_metadata`]: removes the mappings of `ids` and
    /// returns them.
    pub fn delete_collection_metadata(
        &mut self,
        ids: BTreeSet<GlobalId>,
    ) -> Vec<(GlobalId, ShardId)> {
        ids.into_iter()
            .filter_map(|id| {
                let shard = self.collection_metadata.remove(&id)?;
                Some((id, shard))
            })
            .collect()
    }

    /// [`StorageTxn::insert_unfinalized_shards`].
    pub fn insert_unfinalized_shards(&mut self, shards: BTreeSet<ShardId>) {
        self.unfinalized_shards.extend(shards);
    }

    /// [`StorageTxn::mark_shards_as_finalized`]: unknown shards are ignored.
    pub fn mark_shards_as_finalized(&mut self, shards: &BTreeSet<ShardId>) {
        self.unfinalized_shards.retain(|s| !shards.contains(s));
    }

    /// [`StorageTxn::write_txn_wal_shard`]: see [`write_txns_shard_checked`].
    pub fn write_txns_shard<T>(&mut self, shard: ShardId) -> Result<(), StorageError<T>> {
        write_txns_shard_checked(&mut self.txns_shard, shard)
    }
}

/// An in-memory catalog: "durable" for as long as the value lives. Clones share state.
///
/// Every [`MemoryCatalog::begin`] works on a private copy of the state and publishes it
/// on commit. [`MemoryCatalog::bump_epoch`] models a new controller taking over: it
/// fences every transaction begun before it.
///
/// # Examples
///
/// ```
/// # futures::executor::block_on(async {
/// use std::collections::BTreeMap;
/// use strata_controller_api::{GlobalId, MemoryCatalog, ShardId, StorageError, StorageTxn, Timestamp};
/// let catalog = MemoryCatalog::new();
/// let mut old = catalog.begin::<Timestamp>();
/// catalog.bump_epoch();
/// let mut txn = catalog.begin::<Timestamp>();
/// assert_eq!(txn.epoch(), old.epoch() + 1);
///
/// let shard = ShardId::from_bytes([1; 16]);
/// txn.insert_collection_metadata(BTreeMap::from([(GlobalId::User(1), shard)])).unwrap();
/// txn.commit().await.unwrap();
/// assert_eq!(catalog.begin::<Timestamp>().get_collection_metadata().len(), 1);
/// assert!(matches!(old.commit().await, Err(StorageError::Fenced { .. })));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MemoryCatalog {
    /// The committed contents; their epoch is the current one.
    shared: Arc<Mutex<CatalogContents>>,
}

impl Default for MemoryCatalog {
    fn default() -> Self {
        MemoryCatalog::new()
    }
}

impl MemoryCatalog {
    /// An empty catalog at epoch 1.
    pub fn new() -> Self {
        MemoryCatalog {
            shared: Arc::new(Mutex::new(CatalogContents {
                epoch: 1,
                ..CatalogContents::default()
            })),
        }
    }

    /// Starts a new controller epoch, fencing transactions begun earlier. Returns it.
    pub fn bump_epoch(&self) -> u64 {
        let mut guard = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        guard.epoch += 1;
        guard.epoch
    }

    /// A transaction on the current state, at the current epoch.
    pub fn begin<T: StorageTimestamp>(&self) -> MemoryStorageTxn<T> {
        let contents = self
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        BufferedTxn::new(self.clone(), contents)
    }
}

/// Where a [`BufferedTxn`] commits: a catalog that takes a transaction's contents
/// whole. [`MemoryCatalog`] is one; `strata-controller-core`'s durable catalog another.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// The epoch a transaction whose contents are `state` reports.
    fn epoch(&self, state: &CatalogContents) -> u64;

    /// Commits `state`, a transaction's contents begun on `base`; returns the contents
    /// the transaction sees afterwards.
    async fn commit<T: StorageTimestamp>(
        &self,
        base: &CatalogContents,
        state: &CatalogContents,
    ) -> Result<CatalogContents, StorageError<T>>;
}

/// A catalog transaction buffered in a private copy of the catalog's contents and
/// committed to its [`CatalogStore`] whole: the one implementation of [`StorageTxn`]'s
/// reads and writes, for every catalog.
#[derive(Debug)]
pub struct BufferedTxn<S, T> {
    store: S,
    /// The contents the transaction began on (or last committed).
    base: CatalogContents,
    /// `base` with this transaction's writes.
    state: CatalogContents,
    _timestamp: std::marker::PhantomData<fn() -> T>,
}

impl<S, T> BufferedTxn<S, T> {
    /// A transaction on `store` whose contents are `contents` at the start.
    pub fn new(store: S, contents: CatalogContents) -> Self {
        BufferedTxn {
            store,
            base: contents.clone(),
            state: contents,
            _timestamp: std::marker::PhantomData,
        }
    }

    /// The transaction's view of the catalog, including its uncommitted writes.
    pub fn contents(&self) -> &CatalogContents {
        &self.state
    }
}

#[async_trait]
impl<S: CatalogStore, T: StorageTimestamp> StorageTxn<T> for BufferedTxn<S, T> {
    fn get_collection_metadata(&self) -> BTreeMap<GlobalId, ShardId> {
        self.state.collection_metadata.clone()
    }

    fn insert_collection_metadata(
        &mut self,
        metadata: BTreeMap<GlobalId, ShardId>,
    ) -> Result<(), StorageError<T>> {
        self.state.insert_collection_metadata(metadata)
    }

    fn delete_collection_metadata(&mut self, ids: BTreeSet<GlobalId>) -> Vec<(GlobalId, ShardId)> {
        self.state.delete_collection_metadata(ids)
    }

    fn get_unfinalized_shards(&self) -> BTreeSet<ShardId> {
        self.state.unfinalized_shards.clone()
    }

    fn insert_unfinalized_shards(
        &mut self,
        shards: BTreeSet<ShardId>,
    ) -> Result<(), StorageError<T>> {
        self.state.insert_unfinalized_shards(shards);
        Ok(())
    }

    fn mark_shards_as_finalized(&mut self, shards: BTreeSet<ShardId>) {
        self.state.mark_shards_as_finalized(&shards);
    }

    fn get_txn_wal_shard(&self) -> Option<ShardId> {
        self.state.txns_shard
    }

    fn write_txn_wal_shard(&mut self, shard: ShardId) -> Result<(), StorageError<T>> {
        self.state.write_txns_shard(shard)
    }

    fn epoch(&self) -> u64 {
        self.store.epoch(&self.state)
    }

    async fn commit(&mut self) -> Result<(), StorageError<T>> {
        let committed = self.store.commit(&self.base, &self.state).await?;
        self.base.clone_from(&committed);
        self.state = committed;
        Ok(())
    }
}

/// A transaction on a [`MemoryCatalog`].
pub type MemoryStorageTxn<T> = BufferedTxn<MemoryCatalog, T>;

#[async_trait]
impl CatalogStore for MemoryCatalog {
    fn epoch(&self, state: &CatalogContents) -> u64 {
        state.epoch
    }

    async fn commit<T: StorageTimestamp>(
        &self,
        _base: &CatalogContents,
        state: &CatalogContents,
    ) -> Result<CatalogContents, StorageError<T>> {
        let mut guard = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.epoch != state.epoch {
            return Err(StorageError::Fenced {
                ours: state.epoch,
                current: guard.epoch,
            });
        }
        guard.clone_from(state);
        Ok(state.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;
    use futures::executor::block_on;

    type Txn = MemoryStorageTxn<Timestamp>;

    fn s(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    fn u(n: u64) -> GlobalId {
        GlobalId::User(n)
    }

    fn check_insert(
        existing: &[(u64, u8)],
        insert: &[(u64, u8)],
        expected: Result<&[(u64, u8)], &str>,
    ) {
        let catalog = MemoryCatalog::new();
        let mut txn: Txn = catalog.begin();
        txn.insert_collection_metadata(existing.iter().map(|(i, sh)| (u(*i), s(*sh))).collect())
            .unwrap();
        let before = txn.get_collection_metadata();
        let result =
            txn.insert_collection_metadata(insert.iter().map(|(i, sh)| (u(*i), s(*sh))).collect());
        match expected {
            Ok(after) => {
                result.unwrap();
                let want: BTreeMap<_, _> = after.iter().map(|(i, sh)| (u(*i), s(*sh))).collect();
                assert_eq!(txn.get_collection_metadata(), want);
            }
            Err(kind) => {
                let err = result.unwrap_err();
                let got = match err {
                    StorageError::CollectionIdReused(_) => "reused",
                    StorageError::InvalidUsage(_) => "invalid",
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(got, kind);
                assert_eq!(
                    txn.get_collection_metadata(),
                    before,
                    "a failed insert changes nothing"
                );
            }
        }
    }

    #[test]
    fn insert_collection_metadata() {
        check_insert(&[], &[(1, 1), (2, 2)], Ok(&[(1, 1), (2, 2)]));
        check_insert(&[(1, 1)], &[(1, 1)], Ok(&[(1, 1)]));
        check_insert(&[(1, 1)], &[(1, 2)], Err("reused"));
        check_insert(&[(1, 1)], &[(2, 1)], Err("invalid"));
        check_insert(&[(1, 1)], &[(2, 2), (3, 1)], Err("invalid"));
    }

    #[test]
    fn delete_returns_what_it_removed() {
        let catalog = MemoryCatalog::new();
        let mut txn: Txn = catalog.begin();
        txn.insert_collection_metadata(BTreeMap::from([(u(1), s(1)), (u(2), s(2))]))
            .unwrap();
        assert_eq!(
            txn.delete_collection_metadata(BTreeSet::from([u(2), u(3)])),
            vec![(u(2), s(2))]
        );
        assert_eq!(
            txn.get_collection_metadata(),
            BTreeMap::from([(u(1), s(1))])
        );
    }

    #[test]
    fn unfinalized_shards() {
        let catalog = MemoryCatalog::new();
        let mut txn: Txn = catalog.begin();
        txn.insert_unfinalized_shards(BTreeSet::from([s(1), s(2)]))
            .unwrap();
        txn.mark_shards_as_finalized(BTreeSet::from([s(1), s(9)]));
        assert_eq!(txn.get_unfinalized_shards(), BTreeSet::from([s(2)]));
    }

    #[test]
    fn txn_wal_shard_is_written_once() {
        let catalog = MemoryCatalog::new();
        let mut txn: Txn = catalog.begin();
        assert_eq!(txn.get_txn_wal_shard(), None);
        txn.write_txn_wal_shard(s(1)).unwrap();
        txn.write_txn_wal_shard(s(1)).unwrap();
        assert!(matches!(
            txn.write_txn_wal_shard(s(2)),
            Err(StorageError::InvalidUsage(_))
        ));
        assert_eq!(txn.get_txn_wal_shard(), Some(s(1)));
    }

    #[test]
    fn writes_are_invisible_until_commit_and_older_epochs_are_fenced() {
        let catalog = MemoryCatalog::new();
        let mut a: Txn = catalog.begin();
        a.write_txn_wal_shard(s(1)).unwrap();
        assert_eq!(catalog.begin::<Timestamp>().get_txn_wal_shard(), None);
        block_on(a.commit()).unwrap();
        assert_eq!(catalog.begin::<Timestamp>().get_txn_wal_shard(), Some(s(1)));

        let epoch = catalog.bump_epoch();
        a.insert_unfinalized_shards(BTreeSet::from([s(3)])).unwrap();
        assert!(matches!(
            block_on(a.commit()),
            Err(StorageError::Fenced {
                ours: 1,
                current: 2
            })
        ));
        assert!(
            catalog
                .begin::<Timestamp>()
                .get_unfinalized_shards()
                .is_empty()
        );
        assert_eq!(catalog.begin::<Timestamp>().epoch(), epoch);
    }

    #[test]
    fn storage_metadata_from_txn() {
        let catalog = MemoryCatalog::new();
        let mut txn: Txn = catalog.begin();
        txn.insert_collection_metadata(BTreeMap::from([(u(1), s(1))]))
            .unwrap();
        let meta = StorageMetadata::from_txn(&txn);
        assert_eq!(meta.get_collection_shard::<Timestamp>(u(1)).unwrap(), s(1));
    }
}
