//! Running ingestions and exports on their instances: `RunIngestion` and `RunSink`
//! commands built from the registry, with the storage metadata of every collection they
//! write or read. Nothing runs while the controller is read-only; `allow_writes` starts
//! whatever waited.
//!
//! An ingestion's outputs are derived, not stored: its own id (the primary output),
//! the outputs its description names that are live, and every live subsource created
//! for it. So creating or dropping a subsource and re-running the ingestion is enough
//! to amend it.

use std::collections::BTreeMap;

use strata_controller_api::{
    CollectionMetadata, DataSource, GlobalId, IngestionDescription, InstanceId, ShardId,
    SourceOutput, Status, StatusUpdate, StorageError, StorageResponse, StorageTimestamp,
};
use strata_instance_client::{RunIngestionCommand, RunSinkCommand, StorageCommand};

use super::Controller;

/// The hint of a source or sink that waits for the host's `initialization_complete`.
pub const WAITING_FOR_INITIALIZATION: &str = "waiting for the host to call initialization_complete(): \
     replicas start sources and sinks only after it";

impl<T: StorageTimestamp> Controller<T> {
    /// The outputs ingestion `id` (described by `description`) writes now.
    fn ingestion_exports(
        &self,
        id: GlobalId,
        description: &IngestionDescription<T>,
    ) -> BTreeMap<GlobalId, SourceOutput> {
        let mut exports: BTreeMap<GlobalId, SourceOutput> = description
            .source_exports
            .iter()
            .filter(|(export, _)| self.registry.live(**export).is_ok())
            .map(|(export, output)| (*export, output.clone()))
            .collect();
        for (export, state) in &self.registry.collections {
            if let DataSource::IngestionExport {
                ingestion_id,
                output,
            } = &state.description.data_source
                && *ingestion_id == id
                && !self.registry.frontiers.is_dropped(*export)
            {
                exports.insert(*export, output.clone());
            }
        }
        exports.insert(id, SourceOutput::Primary);
        exports
    }

    /// Where the live collection `id` lives, with `remap_shard` for ingestion outputs.
    fn run_metadata(
        &self,
        id: GlobalId,
        remap_shard: Option<ShardId>,
    ) -> Result<CollectionMetadata, StorageError<T>> {
        let mut metadata =
            self.registry
                .metadata(id, self.client.location_url(), self.txns_shard)?;
        metadata.remap_shard = remap_shard;
        Ok(metadata)
    }

    /// The command that runs ingestion `id` with its current outputs. Every output and
    /// the remap collection carry metadata: a replica refuses a command without it.
    ///
    /// # Errors
    ///
    /// - [`StorageError::IdentifierMissing`] if `id` or its remap collection is not live;
    /// - [`StorageError::IdentifierInvalid`] if `id` is not an ingestion.
    pub(super) fn ingestion_command(
        &self,
        id: GlobalId,
    ) -> Result<RunIngestionCommand<T>, StorageError<T>> {
        let state = self.registry.live(id)?;
        let DataSource::Ingestion(description) = &state.description.data_source else {
            return Err(StorageError::IdentifierInvalid(id));
        };
        let remap = description.remap_collection_id;
        let remap_shard = self.registry.live(remap)?.shard;
        let mut description = description.clone();
        description.source_exports = self.ingestion_exports(id, &description);
        let mut storage_metadata = BTreeMap::new();
        for export in description.source_exports.keys() {
            storage_metadata.insert(*export, self.run_metadata(*export, Some(remap_shard))?);
        }
        storage_metadata.insert(remap, self.run_metadata(remap, None)?);
        Ok(RunIngestionCommand {
            id,
            description,
            storage_metadata,
        })
    }

    /// Sends `command` to `instance`.
    fn send_run(
        &mut self,
        instance: InstanceId,
        command: StorageCommand<T>,
    ) -> Result<(), StorageError<T>> {
        self.instances
            .get_mut(&instance)
            .ok_or(StorageError::InstanceMissing(instance))?
            .send(command);
        Ok(())
    }

    /// Runs (or re-runs) ingestion `id` on its instance; does nothing while read-only.
    ///
    /// # Errors
    ///
    /// As [`Self::ingestion_command`], and [`StorageError::InstanceMissing`].
    pub(super) fn run_ingestion(&mut self, id: GlobalId) -> Result<(), StorageError<T>> {
        if self.read_only {
            return Ok(());
        }
        let command = self.ingestion_command(id)?;
        let instance = command.description.instance_id;
        self.send_run(instance, StorageCommand::RunIngestion(command))?;
        self.report_waiting_for_initialization(id);
        Ok(())
    }

    /// Before `initialization_complete`, replicas hold what they are told to run: says
    /// so in `id`'s status, so that a source whose upper does not move explains why.
    fn report_waiting_for_initialization(&mut self, id: GlobalId) {
        if self.initialized {
            return;
        }
        let update = StatusUpdate {
            id,
            replica_id: None,
            status: Status::Starting,
            timestamp_ms: super::lifecycle::now_ms(),
            error: None,
            hints: vec![WAITING_FOR_INITIALIZATION.to_owned()],
        };
        self.record_statuses(std::slice::from_ref(&update));
        self.responses
            .push_back(StorageResponse::StatusUpdates(vec![update]));
    }

    /// The command that runs export `id`, with the metadata of the collection it reads.
    pub(super) fn export_command(
        &self,
        id: GlobalId,
    ) -> Result<RunSinkCommand<T>, StorageError<T>> {
        let description = match self.registry.exports.get(&id) {
            Some(description) if !self.registry.frontiers.is_dropped(id) => description.clone(),
            _ => return Err(StorageError::IdentifierMissing(id)),
        };
        let from_metadata = self.run_metadata(description.from, None)?;
        Ok(RunSinkCommand {
            id,
            description,
            from_metadata,
        })
    }

    /// Runs (or re-runs) export `id` on its instance; does nothing while read-only.
    pub(super) fn run_export(&mut self, id: GlobalId) -> Result<(), StorageError<T>> {
        if self.read_only {
            return Ok(());
        }
        let command = self.export_command(id)?;
        let instance = command.description.instance_id;
        self.send_run(instance, StorageCommand::RunSink(command))?;
        self.report_waiting_for_initialization(id);
        Ok(())
    }

    /// Starts every live ingestion and export: what waited while read-only.
    pub(super) fn run_all(&mut self) -> Result<(), StorageError<T>> {
        let ingestions: Vec<GlobalId> = self
            .registry
            .collections
            .iter()
            .filter(|(id, c)| {
                matches!(c.description.data_source, DataSource::Ingestion(_))
                    && !self.registry.frontiers.is_dropped(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ingestions {
            self.run_ingestion(id)?;
        }
        let exports: Vec<GlobalId> = self
            .registry
            .exports
            .keys()
            .filter(|id| !self.registry.frontiers.is_dropped(**id))
            .copied()
            .collect();
        for id in exports {
            self.run_export(id)?;
        }
        Ok(())
    }
}
