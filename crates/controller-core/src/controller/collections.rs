//! [`Collections`]: the trait surface over bootstrap, drops and registry lookups.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use strata_controller_api::{
    CollectionDescription, CollectionFrontiers, CollectionMetadata, Collections, GlobalId,
    SourceConnection, StorageError, StorageMetadata, StorageTimestamp, StorageTxn,
};

use super::Controller;
use super::bootstrap::prepare_state_in;

impl<T: StorageTimestamp> Controller<T> {
    /// The frontiers of `id` in the controller-api shape.
    fn frontiers_of(&self, id: GlobalId) -> Result<CollectionFrontiers<T>, StorageError<T>> {
        if self.registry.frontiers.is_dropped(id) {
            return Err(StorageError::IdentifierMissing(id));
        }
        let f = self.registry.frontiers.frontiers(id)?;
        Ok(CollectionFrontiers {
            id,
            write_frontier: f.upper,
            implied_capability: f.implied_capability,
            read_capabilities: f.since,
        })
    }
}

#[async_trait]
impl<T: StorageTimestamp> Collections<T> for Controller<T> {
    async fn prepare_state(
        &self,
        txn: &mut (dyn StorageTxn<T> + Send),
        ids_to_add: BTreeSet<GlobalId>,
        ids_to_drop: BTreeSet<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        prepare_state_in(txn, ids_to_add, ids_to_drop)
    }

    async fn create_collections_for_bootstrap(
        &mut self,
        storage_metadata: &StorageMetadata,
        register_ts: Option<T>,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
        migrated_storage_collections: &BTreeSet<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        self.create_collections_inner(
            storage_metadata,
            register_ts,
            collections,
            migrated_storage_collections,
        )
        .await
    }

    async fn alter_ingestion_source_desc(
        &mut self,
        ingestion_id: GlobalId,
        _source_desc: SourceConnection,
    ) -> Result<(), StorageError<T>> {
        self.registry.live(ingestion_id)?;
        Err(StorageError::IdentifierInvalid(ingestion_id))
    }

    async fn alter_ingestion_connections(
        &mut self,
        source_connections: BTreeMap<GlobalId, SourceConnection>,
    ) -> Result<(), StorageError<T>> {
        match source_connections.keys().next() {
            None => Ok(()),
            Some(id) => {
                self.registry.live(*id)?;
                Err(StorageError::IdentifierInvalid(*id))
            }
        }
    }

    fn drop_sources(
        &mut self,
        _storage_metadata: &StorageMetadata,
        ids: Vec<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        self.drop_sources_inner(ids, true)
    }

    fn drop_sources_unvalidated(
        &mut self,
        _storage_metadata: &StorageMetadata,
        ids: Vec<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        self.drop_sources_inner(ids, false)
    }

    fn collection_metadata(&self, id: GlobalId) -> Result<CollectionMetadata, StorageError<T>> {
        self.registry
            .metadata(id, self.client.location_url(), self.txns_shard)
    }

    fn collection_frontiers(
        &self,
        id: GlobalId,
    ) -> Result<CollectionFrontiers<T>, StorageError<T>> {
        self.frontiers_of(id)
    }

    fn collections_frontiers(
        &self,
        ids: Vec<GlobalId>,
    ) -> Result<Vec<CollectionFrontiers<T>>, StorageError<T>> {
        ids.into_iter().map(|id| self.frontiers_of(id)).collect()
    }

    fn active_collection_frontiers(&self) -> Vec<CollectionFrontiers<T>> {
        self.registry
            .frontiers
            .ids()
            .into_iter()
            .filter_map(|id| self.frontiers_of(id).ok())
            .collect()
    }

    fn active_collection_metadatas(&self) -> Vec<(GlobalId, CollectionMetadata)> {
        self.registry
            .collections
            .keys()
            .filter_map(|id| Some((*id, self.collection_metadata(*id).ok()?)))
            .collect()
    }

    fn check_exists(&self, id: GlobalId) -> Result<(), StorageError<T>> {
        self.registry.live(id).map(|_| ())
    }
}
