//! [`DurableStorageTxn`]: a buffered transaction on a [`DurableCatalog`].

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use async_trait::async_trait;
use strata_controller_api::{
    CatalogContents, GlobalId, ShardId, StorageError, StorageTimestamp, StorageTxn,
};

use super::DurableCatalog;

/// A transaction on a [`DurableCatalog`]: mutations are buffered in a private copy of
/// the catalog and written by [`StorageTxn::commit`] as one `compare_and_append` of the
/// difference to the latest version.
///
/// # Contract
///
/// The [`StorageTxn`] contract. A commit replays this transaction's changes on top of
/// the latest version, so commits of concurrent transactions of one epoch all land; if
/// they contradict each other (one id mapped to two shards, a shard reused, two txns
/// shards) the later commit fails with [`StorageError::InvalidUsage`] and writes
/// nothing. After a commit the transaction sees the version it wrote, including the
/// concurrent commits it was replayed on. A commit after a newer controller opened the
/// catalog fails with [`StorageError::Fenced`] and writes nothing.
#[derive(Debug)]
pub struct DurableStorageTxn<T> {
    catalog: DurableCatalog,
    /// The version this transaction began on (or last committed).
    base: CatalogContents,
    /// `base` with this transaction's writes.
    state: CatalogContents,
    _timestamp: PhantomData<fn() -> T>,
}

impl<T> DurableStorageTxn<T> {
    pub(crate) fn new(catalog: DurableCatalog, state: CatalogContents) -> Self {
        DurableStorageTxn {
            catalog,
            base: state.clone(),
            state,
            _timestamp: PhantomData,
        }
    }

    /// The transaction's view of the catalog, including its uncommitted writes.
    pub fn contents(&self) -> &CatalogContents {
        &self.state
    }
}

#[async_trait]
impl<T: StorageTimestamp> StorageTxn<T> for DurableStorageTxn<T> {
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
        self.catalog.epoch()
    }

    async fn commit(&mut self) -> Result<(), StorageError<T>> {
        let committed = self.catalog.commit(&self.base, &self.state).await?;
        self.base.clone_from(&committed);
        self.state = committed;
        Ok(())
    }
}
