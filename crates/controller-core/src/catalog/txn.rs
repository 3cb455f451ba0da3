//! [`DurableStorageTxn`]: a buffered transaction on a [`DurableCatalog`].

use async_trait::async_trait;
use strata_controller_api::{
    BufferedTxn, CatalogContents, CatalogStore, StorageError, StorageTimestamp,
};

use super::DurableCatalog;

/// A transaction on a [`DurableCatalog`]: mutations are buffered in a private copy of
/// the catalog and written by [`StorageTxn::commit`](strata_controller_api::StorageTxn::commit)
/// as one `compare_and_append` of the difference to the latest version.
///
/// # Contract
///
/// The [`StorageTxn`](strata_controller_api::StorageTxn) contract. A commit replays this
/// transaction's changes on top of the latest version, so commits of concurrent
/// transactions of one epoch all land; if they contradict each other (one id mapped to
/// two shards, a shard reused, two txns shards) the later commit fails with
/// [`StorageError::InvalidUsage`] and writes nothing. After a commit the transaction
/// sees the version it wrote, including the concurrent commits it was replayed on. A
/// commit after a newer controller opened the catalog fails with
/// [`StorageError::Fenced`] and writes nothing.
pub type DurableStorageTxn<T> = BufferedTxn<DurableCatalog, T>;

#[async_trait]
impl CatalogStore for DurableCatalog {
    fn epoch(&self, _state: &CatalogContents) -> u64 {
        DurableCatalog::epoch(self)
    }

    async fn commit<T: StorageTimestamp>(
        &self,
        base: &CatalogContents,
        state: &CatalogContents,
    ) -> Result<CatalogContents, StorageError<T>> {
        Ok(DurableCatalog::commit(self, base, state).await?)
    }
}
