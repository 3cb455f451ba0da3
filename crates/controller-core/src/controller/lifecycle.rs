//! [`Lifecycle`]: modes, parameters, and the `ready`/`process` event loop over read-hold
//! changes, storage-task events and every instance's responses.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::FutureExt;
use strata_controller_api::{
    Antichain, GlobalId, Lifecycle, StorageError, StorageMetadata, StorageParameters,
    StorageResponse, StorageTimestamp,
};
use strata_instance_client::{InstanceResponse, StorageCommand};

use super::Controller;
use super::instances::wire_parameters;

impl<T: StorageTimestamp> Controller<T> {
    /// Sends `command` to every instance.
    fn broadcast(&mut self, command: StorageCommand<T>) {
        for instance in self.instances.values_mut() {
            instance.send(command.clone());
        }
    }

    /// Applies pending read-hold changes and storage-task events without the event loop
    /// (for hosts and tests that call the `&self` lookups between other calls).
    pub fn apply_pending(&mut self) {
        self.drain_internal();
    }

    /// Handles every instance response received so far; returns upper changes and
    /// confirmed drops.
    fn drain_instances(&mut self) -> (Vec<(GlobalId, Antichain<T>)>, BTreeSet<GlobalId>) {
        for (id, instance) in &mut self.instances {
            while let Some(response) = instance.try_recv() {
                self.pending.push_back((*id, response));
            }
        }
        let mut uppers = Vec::new();
        let mut dropped = BTreeSet::new();
        while let Some((_, response)) = self.pending.pop_front() {
            match response {
                InstanceResponse::FrontierUpper { id, upper } => uppers.push((id, upper)),
                InstanceResponse::DroppedId(id) => {
                    dropped.insert(id);
                }
                // Replica frontiers, statistics and status feed introspection, which a
                // later issue wires up.
                InstanceResponse::ReplicaFrontierUpper { .. }
                | InstanceResponse::Statistics { .. }
                | InstanceResponse::Status(_) => {}
            }
        }
        (uppers, dropped)
    }
}

#[async_trait]
impl<T: StorageTimestamp> Lifecycle<T> for Controller<T> {
    fn initialization_complete(&mut self) {
        if !self.initialized {
            self.initialized = true;
            self.broadcast(StorageCommand::InitializationComplete);
        }
    }

    async fn allow_writes(&mut self, register_ts: Option<T>) -> Result<(), StorageError<T>> {
        if !self.read_only {
            return Ok(());
        }
        self.drain_internal();
        self.read_only = false;
        let result = async {
            self.enter_writable().await?;
            self.open_for_writes(register_ts).await
        }
        .await;
        if let Err(error) = result {
            self.read_only = true;
            return Err(error);
        }
        // Hooks for later issues: introspection writes, ingestions and exports start here.
        self.broadcast(StorageCommand::AllowWrites);
        Ok(())
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn update_parameters(&mut self, params: StorageParameters) {
        self.parameters.update(params);
        let wire = wire_parameters(&self.parameters);
        self.broadcast(StorageCommand::UpdateConfiguration(wire));
    }

    fn parameters(&self) -> &StorageParameters {
        &self.parameters
    }

    async fn ready(&mut self) {
        if !self.pending.is_empty() || self.internal_ready {
            return;
        }
        let Controller {
            holds_rx,
            events_rx,
            instances,
            pending,
            internal_ready,
            stashed_holds,
            stashed_events,
            ..
        } = self;
        let from_instances = async {
            if instances.is_empty() {
                return futures::future::pending().await;
            }
            let receivers = instances
                .iter_mut()
                .map(|(id, instance)| async move { (*id, instance.recv().await) }.boxed());
            futures::future::select_all(receivers).await.0
        };
        tokio::select! {
            Some(change) = holds_rx.recv() => {
                stashed_holds.push(change);
                *internal_ready = true;
            }
            Some(event) = events_rx.recv() => {
                stashed_events.push(event);
                *internal_ready = true;
            }
            response = from_instances => pending.push_back(response),
        }
    }

    fn process(
        &mut self,
        _storage_metadata: &StorageMetadata,
    ) -> Result<Option<StorageResponse<T>>, StorageError<T>> {
        self.internal_ready = false;
        let mut uppers = self.drain_internal();
        let (instance_uppers, dropped) = self.drain_instances();
        if !instance_uppers.is_empty() {
            let effects = self
                .registry
                .frontiers
                .update_write_frontiers(&instance_uppers);
            self.execute(effects);
            uppers.extend(instance_uppers);
        }
        if !dropped.is_empty() {
            let ids: Vec<GlobalId> = dropped.iter().copied().collect();
            let effects = self.registry.frontiers.confirm_dropped(&ids);
            self.execute(effects);
        }
        self.check_fenced()?;
        if !uppers.is_empty() {
            return Ok(Some(StorageResponse::FrontierUpdates(uppers)));
        }
        if !dropped.is_empty() {
            return Ok(Some(StorageResponse::DroppedIds(dropped)));
        }
        Ok(None)
    }
}
