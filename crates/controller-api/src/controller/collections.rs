//! [`Collections`]: creating, altering and dropping collections, and reading their
//! metadata and frontiers.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use crate::controller::storage_txn::{StorageMetadata, StorageTxn};
use crate::controller::values::CollectionFrontiers;
use crate::description::{CollectionDescription, CollectionMetadata, SourceConnection};
use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::timestamp::StorageTimestamp;

/// The lifecycle of collections: create, alter, drop, and look up.
///
/// # Contract
///
/// - Creating is idempotent: creating an id that exists with an equal description is a
///   no-op; with a different description it fails with
///   [`StorageError::CollectionIdReused`]. An id twice in one call fails with
///   [`StorageError::DuplicateId`]. A failed call changes nothing.
/// - A collection's shard comes from the [`StorageMetadata`] the caller passes (written
///   through [`Collections::prepare_state`] into the caller's catalog and committed
///   first); failing that, from the controller's own catalog; failing that, a fresh
///   shard is recorded there. An `open_durable` host passes `StorageMetadata::default()`.
/// - Dropping is durable when the call returns: the catalog no longer maps the ids and
///   lists their shards as unfinalized (a host that already did so through
///   [`Collections::prepare_state`] loses nothing by the second write, which is then
///   skipped). A read-only controller records its drops when writes are allowed.
/// - Dropping releases the collection's implied capability; the shard is finalized once
///   no read hold and no dependent collection keeps it. Dropping an unknown id fails with
///   [`StorageError::IdentifierMissing`] (the `_unvalidated` variant ignores it).
/// - A dropped collection is unknown to lookups, writes and new holds, which fail with
///   [`StorageError::IdentifierMissing`]; snapshots at times that existing read holds
///   still cover keep working until the last hold is released. Re-creating a dropped id
///   after that gets a fresh, empty shard.
/// - No method panics on caller input.
#[async_trait]
pub trait Collections<T: StorageTimestamp>: Send + Sync {
    /// Writes the durable side of creating `ids_to_add` and dropping `ids_to_drop` into
    /// the caller's catalog transaction: fresh shards for new ids, and unfinalized shards
    /// for dropped ones. The caller commits `txn`, then calls
    /// [`Collections::create_collections_for_bootstrap`] with the resulting
    /// [`StorageMetadata`], or the drop methods.
    async fn prepare_state(
        &self,
        txn: &mut (dyn StorageTxn<T> + Send),
        ids_to_add: BTreeSet<GlobalId>,
        ids_to_drop: BTreeSet<GlobalId>,
    ) -> Result<(), StorageError<T>>;

    /// Creates collections, starting their ingestions unless the controller is
    /// read-only. `register_ts` is the time at which new tables become writable; it is
    /// required when `collections` contains a table.
    ///
    /// Collections in `migrated_storage_collections` have shards of their own that only
    /// this controller writes (a zero-downtime upgrade gives them fresh shards), so they
    /// are written even while read-only: `append_table` to a migrated table writes its
    /// shard directly and its upper follows the tables' shared upper; a migrated
    /// introspection collection is kept written. At `allow_writes` they join the others
    /// with nothing lost or written twice; its `register_ts` must not be below a
    /// migrated table's upper.
    async fn create_collections_for_bootstrap(
        &mut self,
        storage_metadata: &StorageMetadata,
        register_ts: Option<T>,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
        migrated_storage_collections: &BTreeSet<GlobalId>,
    ) -> Result<(), StorageError<T>>;

    /// Creates collections outside of bootstrap: the same as
    /// [`Collections::create_collections_for_bootstrap`] with no migrated collections.
    async fn create_collections(
        &mut self,
        storage_metadata: &StorageMetadata,
        register_ts: Option<T>,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
    ) -> Result<(), StorageError<T>> {
        let migrated = BTreeSet::new();
        self.create_collections_for_bootstrap(storage_metadata, register_ts, collections, &migrated)
            .await
    }

    /// Checks that [`Collections::alter_ingestion_source_desc`] would accept
    /// `source_desc`, without applying it.
    ///
    /// # Errors
    ///
    /// - [`StorageError::IdentifierMissing`] if `ingestion_id` is unknown or dropped;
    /// - [`StorageError::IdentifierInvalid`] if it is not an ingestion;
    /// - [`StorageError::IncompatibleAlter`] if the new description changes the kind of
    ///   source or its outputs.
    fn check_alter_ingestion_source_desc(
        &self,
        ingestion_id: GlobalId,
        source_desc: &SourceConnection,
    ) -> Result<(), StorageError<T>>;

    /// Replaces an ingestion's source description with a compatible one (same kind of
    /// source, same outputs), restarting it if it changed. Fails as
    /// [`Collections::check_alter_ingestion_source_desc`] does, and then changes nothing.
    async fn alter_ingestion_source_desc(
        &mut self,
        ingestion_id: GlobalId,
        source_desc: SourceConnection,
    ) -> Result<(), StorageError<T>>;

    /// Replaces the connections of ingestions, restarting each whose connection changed.
    async fn alter_ingestion_connections(
        &mut self,
        source_connections: BTreeMap<GlobalId, SourceConnection>,
    ) -> Result<(), StorageError<T>>;

    /// Drops sources, subsources and other non-table collections; returns once the drop
    /// is recorded durably. On any error nothing was dropped.
    async fn drop_sources(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>>;

    /// Like [`Collections::drop_sources`], but ids that are unknown, already dropped or
    /// tables are skipped instead of failing.
    async fn drop_sources_unvalidated(&mut self, ids: Vec<GlobalId>)
    -> Result<(), StorageError<T>>;

    /// Where the collection's data lives.
    fn collection_metadata(&self, id: GlobalId) -> Result<CollectionMetadata, StorageError<T>>;

    /// The collection's (or export's) frontiers.
    fn collection_frontiers(&self, id: GlobalId)
    -> Result<CollectionFrontiers<T>, StorageError<T>>;

    /// The frontiers of several collections or exports, in the order asked. Fails if any
    /// id is unknown.
    fn collections_frontiers(
        &self,
        ids: Vec<GlobalId>,
    ) -> Result<Vec<CollectionFrontiers<T>>, StorageError<T>>;

    /// The frontiers of every collection that is not dropped.
    fn active_collection_frontiers(&self) -> Vec<CollectionFrontiers<T>>;

    /// The metadata of every collection that is not dropped.
    fn active_collection_metadatas(&self) -> Vec<(GlobalId, CollectionMetadata)>;

    /// `Ok` if the collection exists and is not dropped.
    fn check_exists(&self, id: GlobalId) -> Result<(), StorageError<T>>;
}
