//! [`DurableStorageTxn`]: a buffered transaction on a [`DurableCatalog`].

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use async_trait::async_trait;
use strata_controller_api::{GlobalId, ShardId, StorageError, StorageTimestamp, StorageTxn};

use super::DurableCatalog;
use super::rows::CatalogContents;

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
        let mut next = self.state.collection_metadata.clone();
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
        self.state.collection_metadata = next;
        Ok(())
    }

    fn delete_collection_metadata(&mut self, ids: BTreeSet<GlobalId>) -> Vec<(GlobalId, ShardId)> {
        ids.into_iter()
            .filter_map(|id| {
                let shard = self.state.collection_metadata.remove(&id)?;
                Some((id, shard))
            })
            .collect()
    }

    fn get_unfinalized_shards(&self) -> BTreeSet<ShardId> {
        self.state.unfinalized_shards.clone()
    }

    fn insert_unfinalized_shards(
        &mut self,
        shards: BTreeSet<ShardId>,
    ) -> Result<(), StorageError<T>> {
        self.state.unfinalized_shards.extend(shards);
        Ok(())
    }

    fn mark_shards_as_finalized(&mut self, shards: BTreeSet<ShardId>) {
        self.state
            .unfinalized_shards
            .retain(|s| !shards.contains(s));
    }

    fn get_txn_wal_shard(&self) -> Option<ShardId> {
        self.state.txns_shard
    }

    fn write_txn_wal_shard(&mut self, shard: ShardId) -> Result<(), StorageError<T>> {
        match self.state.txns_shard {
            Some(existing) if existing != shard => Err(StorageError::InvalidUsage(format!(
                "txns shard is already {existing}, not {shard}"
            ))),
            _ => {
                self.state.txns_shard = Some(shard);
                Ok(())
            }
        }
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
