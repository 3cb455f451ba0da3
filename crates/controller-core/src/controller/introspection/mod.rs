//! [`Introspection`]: the introspection collections the controller writes about itself,
//! through a [`CollectionManager`](strata_introspection::CollectionManager).
//!
//! A host makes one by creating a collection with
//! `DataSource::Introspection(kind)` and the kind's schema
//! ([`strata_introspection::schema::desc`]); nothing else is needed. Then:
//!
//! - `ShardMapping` holds `(object_id, shard_id)` for every live collection, itself
//!   included: inserted on create, retracted on drop;
//! - `Frontiers` holds `(object_id, read_frontier, upper)` for every live
//!   collection and sink, updated on every recorded frontier change and retracted on
//!   drop. Introspection collections are left out: their uppers tick forward on every
//!   manager tick, and recording them would rewrite `Frontiers` on each tick (its own
//!   upper included, without end). Their frontiers are in `collection_frontiers`;
//! - `ReplicaFrontiers` holds `(object_id, replica_id, upper)` per replica,
//!   retracted when the object or the replica goes;
//! - `SourceStatusHistory` and `SinkStatusHistory` receive every status the replicas
//!   report (with their `replica_id`) and the controller's own `Dropped` statuses,
//!   de-duplicated per `(id, replica)` and truncated by the manager;
//! - `SourceStatistics` and `SinkStatistics` are written by a statistics scraper, fed
//!   by the replicas' statistics reports, on `statistics_interval`;
//! - `ReplicaMetricsHistory` is append-only, through
//!   [`Introspection::append_introspection_updates`].
//!
//! The three mirrored kinds are differential: after a restart the manager reconciles
//! the shard with what this controller wants, retracting rows a previous process left.
//!
//! Read-only, no introspection shard is opened or written: the desired state is kept in
//! memory, statuses and statistics are dropped, and `allow_writes` opens the shards,
//! registers them with the manager and lets it write.

mod state;

use async_trait::async_trait;
use strata_controller_api::{
    Antichain, DataSource, GlobalId, Introspection, IntrospectionType, ReplicaId, Row,
    StatusUpdate, StorageError, StorageTimestamp, StorageWriteOp,
};
use strata_introspection::{
    CollectionKind, Metrics, Registration, SinkStatistics, SourceStatistics, StatisticsConfig,
    StatisticsScraper,
};
use strata_persist_backend::WriteFence;
use tokio::sync::{mpsc, watch};

pub(crate) use state::IntrospectionState;

use super::storage_task::Event;
use super::{Controller, persist_err};

/// Forwards a managed collection's upper to the controller as storage-task events, so
/// its frontiers (and `snapshot_latest`) follow what the manager wrote.
fn forward_upper<T: StorageTimestamp>(
    id: GlobalId,
    mut upper: watch::Receiver<Antichain<T>>,
    events: mpsc::UnboundedSender<Event<T>>,
) {
    tokio::spawn(async move {
        loop {
            let current = upper.borrow_and_update().clone();
            if events.send(Event::Upper(id, current)).is_err() {
                return;
            }
            if upper.changed().await.is_err() {
                return;
            }
        }
    });
}

impl<T: StorageTimestamp> Controller<T> {
    /// The Prometheus metrics the controller records (and its collection manager).
    pub fn metrics(&self) -> &Metrics {
        &self.introspection.metrics
    }

    /// How long the collection manager batches writes to the collections it manages
    /// now: its configuration's value until `update_parameters` sets
    /// `user_batch_duration`.
    pub fn introspection_batch_duration(&self) -> std::time::Duration {
        self.introspection.manager.batch_duration()
    }

    /// The live collections of `kind`, with their schemas.
    fn introspection_targets(
        &self,
        kind: IntrospectionType,
    ) -> Vec<(GlobalId, strata_controller_api::RelationDesc)> {
        self.introspection
            .collections
            .iter()
            .filter(|(_, k)| **k == kind)
            .filter_map(|(id, _)| {
                let state = self.registry.live(*id).ok()?;
                Some((*id, state.description.desc.clone()))
            })
            .collect()
    }

    /// Whether `id` is an introspection collection.
    fn is_introspection(&self, id: GlobalId) -> bool {
        self.introspection.collections.contains_key(&id)
    }

    /// Called for every `RecordFrontiers` effect: keeps `Frontiers` in step.
    pub(super) fn record_frontiers_hook(
        &mut self,
        id: GlobalId,
        since: Antichain<T>,
        upper: Antichain<T>,
    ) {
        if self.is_introspection(id) {
            return;
        }
        if self.registry.frontiers.is_live(id) {
            self.introspection.set_frontiers(id, &since, &upper);
        } else {
            self.introspection.remove_frontiers(id);
        }
    }

    /// Called when a collection enters the registry.
    pub(super) fn introspection_created(&mut self, id: GlobalId) {
        let Some(state) = self.registry.collections.get(&id) else {
            return;
        };
        let (shard, source) = (state.shard, state.description.data_source.clone());
        if let DataSource::Introspection(kind) = source {
            self.introspection.collections.insert(id, kind);
        }
        self.introspection.set_shard(id, shard);
    }

    /// Called when collections or sinks are dropped: retracts their rows, and stops
    /// managing dropped introspection collections.
    pub(super) fn introspection_dropped(&mut self, ids: &[GlobalId]) {
        for id in ids {
            self.introspection.forget_object(*id);
            if self.introspection.collections.remove(id).is_some() {
                self.introspection.source_statistics.remove(id);
                self.introspection.sink_statistics.remove(id);
                if self.introspection.registered.remove(id) {
                    let manager = self.introspection.manager.clone();
                    let id = *id;
                    tokio::spawn(async move {
                        if let Err(error) = manager.unregister(id).await {
                            tracing::debug!(%id, %error, "unregistering an introspection collection");
                        }
                    });
                }
            }
        }
    }

    /// Called when a replica is dropped: retracts its frontiers and statistics.
    pub(super) fn introspection_replica_dropped(&mut self, replica: ReplicaId) {
        self.introspection.forget_replica(replica);
    }

    /// Records replica uppers in `ReplicaFrontiers`: live collections only, unless
    /// `live` says the caller checked that already.
    pub(super) fn record_replica_frontiers(
        &mut self,
        replica: ReplicaId,
        uppers: &[(GlobalId, Antichain<T>)],
        live: bool,
    ) {
        let frontiers = &self.registry.frontiers;
        let recorded = uppers
            .iter()
            .filter(|(id, _)| live || frontiers.is_live(*id));
        self.introspection.set_replica_frontiers(replica, recorded);
    }

    /// The status history that `id`'s statuses belong to: `SinkStatusHistory` for an
    /// export, `SourceStatusHistory` for a collection, `None` for an id the registry
    /// does not know (any more). Dropped objects are known until they are finalized.
    pub(super) fn status_history(&self, id: GlobalId) -> Option<IntrospectionType> {
        if self.registry.exports.contains_key(&id) {
            Some(IntrospectionType::SinkStatusHistory)
        } else if self.registry.collections.contains_key(&id) {
            Some(IntrospectionType::SourceStatusHistory)
        } else {
            None
        }
    }

    /// Appends statuses to the status histories their ids belong to (see
    /// [`Self::status_history`]); statuses of unknown ids are left out.
    pub(super) fn record_statuses(&mut self, updates: &[StatusUpdate]) {
        let routed = updates
            .iter()
            .map(|u| (self.status_history(u.id), u.clone()))
            .collect();
        self.record_routed_statuses(routed);
    }

    /// Appends each status to the history it was routed to. A status routed nowhere
    /// (its id unknown, such as a late report after the object was finalized) is left
    /// out with a debug log, as it cannot be told whether it is a source or a sink.
    pub(super) fn record_routed_statuses(
        &mut self,
        updates: Vec<(Option<IntrospectionType>, StatusUpdate)>,
    ) {
        let mut sources = Vec::new();
        let mut sinks = Vec::new();
        for (history, update) in updates {
            match history {
                Some(IntrospectionType::SinkStatusHistory) => sinks.push(update),
                Some(IntrospectionType::SourceStatusHistory) => sources.push(update),
                _ => {
                    tracing::debug!(id = %update.id, status = ?update.status, "status of an unknown id left out of the status histories");
                }
            }
        }
        self.introspection
            .append_statuses(IntrospectionType::SourceStatusHistory, &sources);
        self.introspection
            .append_statuses(IntrospectionType::SinkStatusHistory, &sinks);
    }

    /// Feeds one replica's statistics report to the statistics scrapers.
    pub(super) fn record_statistics(
        &mut self,
        replica: ReplicaId,
        sources: &[(GlobalId, SourceStatistics)],
        sinks: &[(GlobalId, SinkStatistics)],
    ) {
        for scraper in self.introspection.source_statistics.values() {
            for (id, stats) in sources {
                scraper.update(*id, replica, *stats);
            }
        }
        for scraper in self.introspection.sink_statistics.values() {
            for (id, stats) in sinks {
                scraper.update(*id, replica, *stats);
            }
        }
    }

    /// Applies new parameters to the statistics scrapers.
    pub(super) fn introspection_parameters(&mut self) {
        let interval = self.parameters.statistics_interval();
        for scraper in self.introspection.source_statistics.values() {
            scraper.set_interval(interval);
        }
        for scraper in self.introspection.sink_statistics.values() {
            scraper.set_interval(interval);
        }
    }

    /// Registers every live introspection collection that is not managed yet with the
    /// manager (while read-only, only the migrated ones): opens its writer, starts its
    /// task from the desired state, forwards its upper and, for statistics, starts the
    /// scraper afterwards.
    pub(super) async fn register_introspection(&mut self) -> Result<(), StorageError<T>> {
        // Read-only, only migrated collections are written: their shards are new, and
        // only this controller knows them (as the reference's `force_writable`).
        let force_writable = self.read_only;
        let pending: Vec<(GlobalId, IntrospectionType)> = self
            .introspection
            .collections
            .iter()
            .filter(|(id, _)| !self.introspection.registered.contains(id))
            .filter(|(id, _)| {
                !self.read_only
                    || self
                        .registry
                        .collections
                        .get(id)
                        .is_some_and(|state| state.migrated)
            })
            .map(|(id, kind)| (*id, *kind))
            .collect();
        for (id, kind) in pending {
            let state = self.registry.live(id)?;
            let (shard, desc) = (state.shard, state.description.desc.clone());
            let mut write = self
                .client
                .open_writer::<T>(shard, desc)
                .await
                .map_err(persist_err)?;
            // Every introspection write is conditional on our epoch still being the
            // opaque of the shard's controller reader, so a newer controller stops an
            // old one's manager from writing. Fencing here is idempotent and makes sure
            // that reader holds our epoch before the first write.
            drop(super::fencing::fence_shard::<T>(&self.client, shard, self.epoch).await?);
            write.set_fence(Some(WriteFence {
                reader: super::fencing::CONTROLLER_READER_ID.to_owned(),
                opaque: self.epoch,
            }));
            let collection_kind = CollectionKind::for_introspection(kind, &self.parameters);
            let mut registration =
                Registration::new(id, self.client.clone(), write, collection_kind);
            registration.force_writable = force_writable;
            let manager = self.introspection.manager.clone();
            match self.introspection.desired(kind) {
                Some(desired) => manager.register_with_desired(registration, desired)?,
                None => manager.register(registration)?,
            }
            self.introspection.registered.insert(id);
            forward_upper(id, manager.watch_upper(id)?, self.events_tx.clone());
            let cfg = StatisticsConfig {
                interval: self.parameters.statistics_interval(),
                ..StatisticsConfig::default()
            };
            match kind {
                IntrospectionType::SourceStatistics => {
                    let scraper = StatisticsScraper::start(manager, id, cfg).await?;
                    self.introspection.source_statistics.insert(id, scraper);
                }
                IntrospectionType::SinkStatistics => {
                    let scraper = StatisticsScraper::start(manager, id, cfg).await?;
                    self.introspection.sink_statistics.insert(id, scraper);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Leaves read-only mode for introspection: the manager becomes writable and every
    /// introspection collection is registered with its desired state.
    pub(super) async fn introspection_allow_writes(&mut self) -> Result<(), StorageError<T>> {
        self.introspection.manager.allow_writes();
        self.register_introspection().await
    }

    /// Waits until every managed introspection collection holds what the controller
    /// wanted when this was called, and applies the uppers reached, so a
    /// `snapshot_latest` afterwards sees it.
    ///
    /// # Errors
    ///
    /// [`StorageError::ReadOnly`] when read-only with no migrated introspection
    /// collection (nothing is written then; with some, only they are synced); persist
    /// errors of the writes.
    pub async fn sync_introspection(&mut self) -> Result<(), StorageError<T>> {
        self.drain_internal();
        if self.read_only && self.introspection.registered.is_empty() {
            return Err(StorageError::ReadOnly);
        }
        let ids: Vec<GlobalId> = self.introspection.registered.iter().copied().collect();
        let mut uppers = Vec::new();
        for id in ids {
            self.introspection.manager.sync(id).await?;
            let upper = self.introspection.manager.watch_upper(id)?.borrow().clone();
            uppers.push((id, upper));
        }
        let effects = self.registry.frontiers.update_write_frontiers(&uppers);
        self.execute(effects);
        Ok(())
    }
}

#[async_trait]
impl<T: StorageTimestamp> Introspection<T> for Controller<T> {
    fn record_frontiers(&mut self) {
        self.drain_internal();
    }

    fn update_introspection_collection(
        &mut self,
        kind: IntrospectionType,
        op: StorageWriteOp,
    ) -> Result<(), StorageError<T>> {
        if !kind.is_differential() || kind.is_controller_written() {
            return Err(StorageError::InvalidUsage(format!(
                "{kind:?} is not a differential collection that a coordinator writes"
            )));
        }
        for (id, desc) in self.introspection_targets(kind) {
            for (row, _) in op.rows() {
                desc.validate_row(row)
                    .map_err(|mismatch| StorageError::InvalidRow { id, mismatch })?;
            }
        }
        self.introspection.update_coordinator(kind, op)
    }

    fn append_introspection_updates(
        &mut self,
        kind: IntrospectionType,
        updates: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>> {
        if kind.is_differential() {
            return Err(StorageError::InvalidUsage(format!(
                "{kind:?} is differential, not append-only"
            )));
        }
        let targets = self.introspection_targets(kind);
        for (id, desc) in &targets {
            for (row, _) in &updates {
                desc.validate_row(row)
                    .map_err(|mismatch| StorageError::InvalidRow { id: *id, mismatch })?;
            }
        }
        if updates.is_empty() {
            return Ok(());
        }
        for (id, _) in targets {
            if !self.introspection.registered.contains(&id) {
                // Read-only: the contract drops the updates rather than failing.
                continue;
            }
            match self.introspection.manager.blind_write(id, updates.clone()) {
                Ok(()) => {}
                Err(StorageError::IdentifierInvalid(id)) => {
                    return Err(StorageError::InvalidUsage(format!(
                        "{id} is not an append-only introspection collection"
                    )));
                }
                Err(StorageError::ReadOnly) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn inspect_persist_state(
        &self,
        id: GlobalId,
    ) -> Result<serde_json::Value, StorageError<T>> {
        let state = self.registry.live(id)?;
        self.client.inspect(state.shard).await.map_err(persist_err)
    }
}
