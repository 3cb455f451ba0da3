//! [`Collections`]: the trait surface over bootstrap, drops and registry lookups.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use strata_controller_api::{
    CollectionDescription, CollectionFrontiers, CollectionMetadata, Collections, DataSource,
    GlobalId, SourceConnection, StorageError, StorageMetadata, StorageTimestamp, StorageTxn,
};
use timely::PartialOrder;

use super::Controller;
use super::bootstrap::prepare_state_in;

impl<T: StorageTimestamp> Controller<T> {
    /// The frontiers of `id` in the controller-api shape.
    fn frontiers_of(&self, id: GlobalId) -> Result<CollectionFrontiers<T>, StorageError<T>> {
        if self.registry.frontiers.is_dropped(id) {
            return Err(StorageError::IdentifierMissing(id));
        }
        let f = self.registry.frontiers.frontiers(id)?;
        // A table's recorded upper may lag the shared one until the next sweep (see
        // `table_uppers`); its true upper is the shared one.
        let upper = if self.registry.is_txns_table(id)
            && PartialOrder::less_than(&f.upper, &self.tables_upper)
        {
            self.tables_upper.clone()
        } else {
            f.upper
        };
        Ok(CollectionFrontiers {
            id,
            upper,
            implied_capability: f.implied_capability,
            since: f.since,
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
        source_desc: SourceConnection,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_alter_ingestion_source_desc(ingestion_id, &source_desc)?;
        self.set_ingestion_connections(BTreeMap::from([(ingestion_id, source_desc)]))
    }

    fn check_alter_ingestion_source_desc(
        &self,
        ingestion_id: GlobalId,
        source_desc: &SourceConnection,
    ) -> Result<(), StorageError<T>> {
        let current = self.ingestion_connection(ingestion_id)?;
        if !alter_compatible(current, source_desc) {
            return Err(StorageError::IncompatibleAlter {
                id: ingestion_id,
                reason: "the new description changes the kind of source or its outputs".into(),
            });
        }
        Ok(())
    }

    async fn alter_ingestion_connections(
        &mut self,
        source_connections: BTreeMap<GlobalId, SourceConnection>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        for id in source_connections.keys() {
            self.ingestion_connection(*id)?;
        }
        self.set_ingestion_connections(source_connections)
    }

    async fn drop_sources(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>> {
        self.drop_sources_inner(ids, true).await
    }

    async fn drop_sources_unvalidated(
        &mut self,
        ids: Vec<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        self.drop_sources_inner(ids, false).await
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

/// Whether `new` may replace `current` without changing the ingestion's outputs: the
/// same kind of load generator (its seed and pace may change), or a connector of the
/// same kind (its settings may change; the replica checks its outputs against the
/// collections when it runs it).
fn alter_compatible(current: &SourceConnection, new: &SourceConnection) -> bool {
    match (current, new) {
        (
            SourceConnection::LoadGenerator {
                generator: current, ..
            },
            SourceConnection::LoadGenerator { generator: new, .. },
        ) => std::mem::discriminant(current) == std::mem::discriminant(new),
        (SourceConnection::Connector(current), SourceConnection::Connector(new)) => {
            current.kind == new.kind
        }
        _ => false,
    }
}

impl<T: StorageTimestamp> Controller<T> {
    /// The connection of the live ingestion `id`: `IdentifierMissing` if unknown,
    /// `IdentifierInvalid` if not an ingestion.
    fn ingestion_connection(&self, id: GlobalId) -> Result<&SourceConnection, StorageError<T>> {
        match &self.registry.live(id)?.description.data_source {
            DataSource::Ingestion(ingestion) => Ok(&ingestion.connection),
            _ => Err(StorageError::IdentifierInvalid(id)),
        }
    }

    /// Replaces the connections of validated ingestions and re-runs those whose
    /// connection changed.
    fn set_ingestion_connections(
        &mut self,
        connections: BTreeMap<GlobalId, SourceConnection>,
    ) -> Result<(), StorageError<T>> {
        let mut changed = Vec::new();
        for (id, connection) in connections {
            if let Some(state) = self.registry.collections.get_mut(&id)
                && let DataSource::Ingestion(ingestion) = &mut state.description.data_source
                && ingestion.connection != connection
            {
                ingestion.connection = connection;
                changed.push(id);
            }
        }
        for id in changed {
            self.run_ingestion(id)?;
        }
        Ok(())
    }
}
