//! [`Lifecycle`]: modes, parameters, and the `ready`/`process` event loop over read-hold
//! changes, storage-task events and every instance's responses.

use std::collections::BTreeSet;

use async_trait::async_trait;
use futures::FutureExt;
use strata_controller_api::{
    Antichain, GlobalId, Lifecycle, ReplicaId, Status, StatusUpdate, StorageError,
    StorageParameters, StorageResponse, StorageTimestamp,
};
use strata_instance_client::{InstanceResponse, ReplicaParameters, StorageCommand};

use super::Controller;
use super::storage_task::Event;

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

    /// Takes every instance response received so far and applies it: all batches of
    /// uppers in one frontier pass (a backlog costs one frontier update per id, not
    /// one per report), each reported to the caller as its own `FrontierUpdates`
    /// (batches are never concatenated), then replica uppers, statuses and confirmed
    /// drops. `uppers` are the ones other sources (the storage task) already applied.
    /// Late reports about ids the controller no longer knows are ignored.
    fn apply_instance_responses(&mut self, uppers: Vec<(GlobalId, Antichain<T>)>) {
        if !uppers.is_empty() {
            self.responses
                .push_back(StorageResponse::FrontierUpdates(uppers));
        }
        for (id, instance) in &mut self.instances {
            while let Some(response) = instance.try_recv() {
                self.pending.push_back((*id, response));
            }
        }
        // Each batch, with the replica whose own uppers it also is
        // (`SharedFrontierUppers`).
        let mut batches: Vec<(Option<ReplicaId>, UpperBatch<T>)> = Vec::new();
        let mut replica_batches = Vec::new();
        let mut dropped = BTreeSet::new();
        let mut statuses = Vec::new();
        while let Some((_, response)) = self.pending.pop_front() {
            match response {
                InstanceResponse::FrontierUppers(uppers) => batches.push((None, uppers)),
                InstanceResponse::SharedFrontierUppers { replica, uppers } => {
                    batches.push((Some(replica), uppers));
                }
                InstanceResponse::DroppedId(id) => {
                    dropped.insert(id);
                }
                InstanceResponse::Status(update) => statuses.push(update),
                InstanceResponse::ReplicaFrontierUppers { replica, uppers } => {
                    replica_batches.push((replica, uppers));
                }
                InstanceResponse::Statistics {
                    replica,
                    sources,
                    sinks,
                } => self.record_statistics(replica, &sources, &sinks),
            }
        }
        if !batches.is_empty() {
            let effects = self
                .registry
                .frontiers
                .apply_write_frontiers(batches.iter_mut().map(|(_, uppers)| uppers));
            self.execute(effects);
            for (shared_with, uppers) in batches {
                if uppers.is_empty() {
                    continue;
                }
                if let Some(replica) = shared_with {
                    // The pass kept only live ids.
                    self.record_replica_frontiers(replica, &uppers, true);
                }
                self.responses
                    .push_back(StorageResponse::FrontierUpdates(uppers));
            }
        }
        for (replica, uppers) in replica_batches {
            self.record_replica_frontiers(replica, &uppers, false);
        }
        statuses.retain(|u| self.registry.frontiers.is_live(u.id));
        self.record_statuses(&statuses);
        if !statuses.is_empty() {
            self.responses
                .push_back(StorageResponse::StatusUpdates(statuses));
        }
        self.confirm_drops(dropped);
    }

    /// Records that the replicas no longer run the dropped `ids` (ids that are not
    /// dropped are late or spurious and ignored): their shards are finalized once
    /// nothing holds them, and the caller learns of the drop and a `Dropped` status.
    pub(super) fn confirm_drops(&mut self, ids: BTreeSet<GlobalId>) {
        let dropped: BTreeSet<GlobalId> = ids
            .into_iter()
            .filter(|id| self.registry.frontiers.is_dropped(*id))
            .collect();
        if dropped.is_empty() {
            return;
        }
        let list: Vec<GlobalId> = dropped.iter().copied().collect();
        let statuses = dropped
            .iter()
            .map(|id| StatusUpdate {
                id: *id,
                replica_id: None,
                status: Status::Dropped,
                timestamp_ms: now_ms(),
                error: None,
                hints: Vec::new(),
            })
            .collect::<Vec<_>>();
        // Route the statuses while the registry still knows what each id was: the
        // confirmation can finalize an id (a sink at once), which forgets it.
        let routed = statuses
            .iter()
            .map(|u| (self.status_history(u.id), u.clone()))
            .collect();
        let effects = self.registry.frontiers.confirm_dropped(&list);
        self.execute(effects);
        self.record_routed_statuses(routed);
        self.responses
            .push_back(StorageResponse::DroppedIds(dropped));
        self.responses
            .push_back(StorageResponse::StatusUpdates(statuses));
    }
}

/// Collections' new uppers, as one response carries them.
type UpperBatch<T> = Vec<(GlobalId, Antichain<T>)>;

/// Wall-clock milliseconds since the Unix epoch; 0 if the clock is before it.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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
        // The migrated tables' writer finishes what it acknowledged before their shards
        // are registered with the txns shard, which writes them from then on.
        if let Some(migrated) = self.migrated_tables.take() {
            migrated.stop().await;
        }
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
        self.follow_writable_uppers();
        self.introspection_allow_writes().await?;
        self.broadcast(StorageCommand::AllowWrites);
        self.run_all()
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn update_parameters(&mut self, params: StorageParameters) {
        if let Some(duration) = params.user_batch_duration {
            // Only a value set here: the manager's own configuration stays otherwise.
            self.introspection.manager.set_batch_duration(duration);
        }
        self.parameters.update(params);
        let wire = ReplicaParameters::from(&self.parameters);
        self.broadcast(StorageCommand::UpdateConfiguration(wire));
        self.introspection_parameters();
    }

    fn parameters(&self) -> &StorageParameters {
        &self.parameters
    }

    async fn ready(&mut self) {
        if !self.pending.is_empty() || !self.responses.is_empty() || self.internal_ready {
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
            table_uppers,
            ..
        } = self;
        let sweep_due = table_uppers.next_sweep();
        loop {
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
                    return;
                }
                Some(event) = events_rx.recv() => {
                    // A group commit starting is bookkeeping for `table_write_ts`, not
                    // news for the host: keep it and wait on.
                    let news = !matches!(event, Event::Committing(_));
                    stashed_events.push(event);
                    if news {
                        *internal_ready = true;
                        return;
                    }
                }
                response = from_instances => {
                    pending.push_back(response);
                    return;
                }
                () = sleep_until_some(sweep_due) => {
                    *internal_ready = true;
                    return;
                }
            }
        }
    }

    fn process(&mut self) -> Result<Option<StorageResponse<T>>, StorageError<T>> {
        self.internal_ready = false;
        self.drain_internal();
        let uppers = std::mem::take(&mut self.unreported_uppers)
            .into_iter()
            .collect();
        self.apply_instance_responses(uppers);
        for (id, instance) in &self.instances {
            let metrics = &self.config.metrics.controller;
            metrics.set_history_size(&id.to_string(), instance.history_len());
        }
        self.check_fenced()?;
        Ok(self.responses.pop_front())
    }
}

/// Sleeps until `at`, or forever if it is `None`.
async fn sleep_until_some(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => futures::future::pending().await,
    }
}
