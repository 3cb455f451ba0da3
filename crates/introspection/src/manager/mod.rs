//! [`CollectionManager`]: writes the collections the controller itself maintains.
//!
//! Each registered collection gets one tokio task, driven by commands over a channel,
//! that owns the collection's [`WriteHandle`]. Two kinds:
//!
//! - **differential**: the manager keeps the desired contents in memory and writes the
//!   pending difference with a compare-and-append at `[upper, max(now, upper) + 1)`.
//!   After an upper mismatch (or at start-up) it reads the shard at `upper - 1` and
//!   writes `desired - actual`, which also retracts what an earlier process left;
//! - **append-only**: blind appends at `max(now, upper)`, optionally bounded by a
//!   [`HistoryPolicy`] that runs at start-up and on an interval, and optionally
//!   de-duplicating status updates ([`StatusDeduper`]).
//!
//! Both tick the upper forward on an interval, batch writes for the batch duration,
//! and retry failures with capped exponential backoff; a write that still fails is
//! logged and retried on the next tick. In read-only mode the desired state is kept but
//! nothing is written; appends fail with [`StorageError::ReadOnly`]. After
//! [`CollectionManager::allow_writes`] every task writes its desired state.

mod desired;
mod history;
mod task;
mod writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use strata_controller_api::{
    Antichain, AppendFuture, GlobalId, IntrospectionType, MonotonicAppender, RelationDesc, Row,
    SnapshotFuture, StatusUpdate, StorageError, StorageParameters, StorageTimestamp, Timestamp,
};
use strata_persist_backend::{PersistClient, WriteHandle};
use tokio::sync::{mpsc, oneshot, watch};

pub use history::HistoryPolicy;
use strata_controller_api::StorageWriteOp;

use crate::config::ManagerConfig;
use crate::metrics::ControllerMetrics;
use crate::status::StatusDeduper;
use task::{Command, Kind, Task};
use writer::Writer;

/// How a managed collection is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionKind {
    /// A desired state reconciled against the shard; it starts empty, so whatever an
    /// earlier process left is retracted.
    Differential,
    /// Like [`CollectionKind::Differential`], but the desired state starts as the
    /// shard's contents at start-up (statistics, which continue where they were).
    DifferentialSeeded,
    /// Blind appends.
    AppendOnly {
        /// How the history is kept bounded, if at all.
        history: Option<HistoryPolicy>,
        /// Whether [`CollectionManager::append_status`] de-duplicates per `(id, replica)`.
        dedup_status: bool,
    },
}

impl CollectionKind {
    /// The kind of an introspection collection under `params`: status histories keep
    /// the newest N per `(id, replica)` and de-duplicate (a connection's status history
    /// the newest N per connection), replica metrics history keeps its retention
    /// window, statement logging is append-only and kept whole, the rest are
    /// differential.
    pub fn for_introspection(typ: IntrospectionType, params: &StorageParameters) -> Self {
        match typ {
            IntrospectionType::SourceStatusHistory | IntrospectionType::SinkStatusHistory => {
                CollectionKind::AppendOnly {
                    history: Some(HistoryPolicy::status_history(
                        params.status_history_retain_per_id(),
                    )),
                    dedup_status: true,
                }
            }
            IntrospectionType::ReplicaMetricsHistory => CollectionKind::AppendOnly {
                history: Some(HistoryPolicy::replica_metrics(
                    params.metrics_history_retention(),
                )),
                dedup_status: false,
            },
            IntrospectionType::PrivatelinkConnectionStatusHistory => CollectionKind::AppendOnly {
                history: Some(HistoryPolicy::connection_status_history(
                    params.status_history_retain_per_id(),
                )),
                dedup_status: false,
            },
            // Statement logging is never truncated, as in the reference: truncating it
            // at start-up would read all of it into memory.
            IntrospectionType::PreparedStatementHistory
            | IntrospectionType::StatementExecutionHistory
            | IntrospectionType::SessionHistory
            | IntrospectionType::StatementLifecycleHistory
            | IntrospectionType::SqlText => CollectionKind::AppendOnly {
                history: None,
                dedup_status: false,
            },
            IntrospectionType::SourceStatistics | IntrospectionType::SinkStatistics => {
                CollectionKind::DifferentialSeeded
            }
            // The controller's own differential kinds, and the compute ones, whose
            // desired state starts empty.
            IntrospectionType::ShardMapping
            | IntrospectionType::Frontiers
            | IntrospectionType::ReplicaFrontiers
            | IntrospectionType::ComputeDependencies
            | IntrospectionType::ComputeOperatorHydrationStatus
            | IntrospectionType::ComputeMaterializedViewRefreshes
            | IntrospectionType::ComputeErrorCounts
            | IntrospectionType::ComputeHydrationTimes => CollectionKind::Differential,
        }
    }
}

/// What [`CollectionManager::register`] needs to manage one collection.
#[derive(Debug)]
pub struct Registration<T: StorageTimestamp> {
    /// The collection.
    pub id: GlobalId,
    /// The client of the collection's location, for snapshots.
    pub client: PersistClient,
    /// The collection's writer; the task owns it from now on.
    pub write: WriteHandle<T>,
    /// How it is written.
    pub kind: CollectionKind,
    /// Whether it is written even in read-only mode (a migrated collection).
    pub force_writable: bool,
}

impl<T: StorageTimestamp> Registration<T> {
    /// A registration that obeys read-only mode.
    pub fn new(
        id: GlobalId,
        client: PersistClient,
        write: WriteHandle<T>,
        kind: CollectionKind,
    ) -> Self {
        Registration {
            id,
            client,
            write,
            kind,
            force_writable: false,
        }
    }
}

struct Entry<T> {
    tx: mpsc::UnboundedSender<Command<T>>,
    upper: watch::Receiver<Antichain<T>>,
    differential: bool,
    desc: RelationDesc,
    force_writable: bool,
}

struct Inner<T: StorageTimestamp> {
    cfg: ManagerConfig,
    metrics: ControllerMetrics,
    read_only: watch::Sender<bool>,
    batch_duration: watch::Sender<Duration>,
    collections: Mutex<BTreeMap<GlobalId, Entry<T>>>,
}

/// Writes the controller's managed collections; see the [module docs](self).
/// Cheap to clone; clones manage the same collections.
#[derive(Clone)]
pub struct CollectionManager<T: StorageTimestamp = Timestamp> {
    inner: Arc<Inner<T>>,
}

impl<T: StorageTimestamp> std::fmt::Debug for CollectionManager<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<GlobalId> = self.lock().keys().copied().collect();
        f.debug_struct("CollectionManager")
            .field("read_only", &self.is_read_only())
            .field("collections", &ids)
            .finish_non_exhaustive()
    }
}

fn channel_closed<T>() -> StorageError<T> {
    StorageError::ShuttingDown
}

impl<T: StorageTimestamp> CollectionManager<T> {
    /// A manager with no collections, read-only or writable.
    pub fn new(read_only: bool, cfg: ManagerConfig, metrics: ControllerMetrics) -> Self {
        let batch = cfg.batch_duration;
        CollectionManager {
            inner: Arc::new(Inner {
                cfg,
                metrics,
                read_only: watch::Sender::new(read_only),
                batch_duration: watch::Sender::new(batch),
                collections: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<GlobalId, Entry<T>>> {
        // The map is valid after any panic: every update is a single insert or remove.
        self.inner
            .collections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts managing a collection: spawns its task on the current tokio runtime.
    /// At start-up the task seeds and truncates history and, when writable, brings the
    /// shard to the desired state (empty until updated, unless seeded), retracting stale
    /// rows.
    pub fn register(&self, reg: Registration<T>) -> Result<(), StorageError<T>> {
        self.register_inner(reg, None)
    }

    /// Like [`CollectionManager::register`] for a differential collection whose desired
    /// state starts as `desired` rather than empty, so the first write already brings
    /// the shard to it (no moment where an earlier process's rows are retracted and the
    /// desired ones not yet written).
    pub fn register_with_desired(
        &self,
        reg: Registration<T>,
        desired: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>> {
        if matches!(reg.kind, CollectionKind::AppendOnly { .. }) {
            return Err(StorageError::IdentifierInvalid(reg.id));
        }
        self.register_inner(reg, Some(StorageWriteOp::Set(desired)))
    }

    fn register_inner(
        &self,
        reg: Registration<T>,
        initial: Option<StorageWriteOp>,
    ) -> Result<(), StorageError<T>> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StorageError::InvalidUsage("register needs a tokio runtime".into()))?;
        let mut collections = self.lock();
        if collections.contains_key(&reg.id) {
            return Err(StorageError::CollectionIdReused(reg.id));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let desc = reg.write.desc().clone();
        let (kind, history, dedup) = match reg.kind {
            CollectionKind::Differential => (
                Kind::Differential(desired::DesiredState::new()),
                None,
                false,
            ),
            CollectionKind::DifferentialSeeded => (
                Kind::Differential(desired::DesiredState::new_seeded()),
                None,
                false,
            ),
            CollectionKind::AppendOnly {
                history,
                dedup_status,
            } => (
                Kind::AppendOnly {
                    rows: Vec::new(),
                    waiters: Vec::new(),
                },
                history,
                dedup_status,
            ),
        };
        let mut kind = kind;
        if let (Kind::Differential(state), Some(op)) = (&mut kind, initial) {
            state.apply(op);
        }
        let differential = matches!(kind, Kind::Differential(_));
        let (upper_tx, upper) = watch::channel(reg.write.upper().clone());
        // Served from registration on, at zero until a retry happens.
        self.inner.metrics.track_collection(&reg.id.to_string());
        let task = Task {
            writer: Writer {
                id: reg.id,
                label: reg.id.to_string(),
                client: reg.client,
                write: reg.write,
                cfg: self.inner.cfg.clone(),
                metrics: self.inner.metrics.clone(),
                upper_tx,
            },
            kind,
            read_only: self.inner.read_only.subscribe(),
            batch_duration: self.inner.batch_duration.subscribe(),
            force_writable: reg.force_writable,
            history,
            deduper: dedup.then(StatusDeduper::new),
            seeded: false,
            flush_at: None,
            sync_waiters: Vec::new(),
            force_write: false,
        };
        runtime.spawn(task.run(rx));
        collections.insert(
            reg.id,
            Entry {
                tx,
                upper,
                differential,
                desc,
                force_writable: reg.force_writable,
            },
        );
        Ok(())
    }

    /// Stops managing `id`: writes what is pending (when writable) and ends its task.
    /// Appenders handed out for it fail with [`StorageError::ShuttingDown`] afterwards.
    pub async fn unregister(&self, id: GlobalId) -> Result<(), StorageError<T>> {
        let entry = self
            .lock()
            .remove(&id)
            .ok_or(StorageError::IdentifierMissing(id))?;
        let (done, wait) = oneshot::channel();
        if entry.tx.send(Command::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
        self.inner.metrics.remove_collection(&id.to_string());
        Ok(())
    }

    /// Whether `id` is managed.
    pub fn is_registered(&self, id: GlobalId) -> bool {
        self.lock().contains_key(&id)
    }

    /// The collection's upper as its task last saw it (after each write and each read
    /// of the shard); the receiver closes when the collection is unregistered.
    pub fn watch_upper(
        &self,
        id: GlobalId,
    ) -> Result<watch::Receiver<Antichain<T>>, StorageError<T>> {
        self.lock()
            .get(&id)
            .map(|e| e.upper.clone())
            .ok_or(StorageError::IdentifierMissing(id))
    }

    /// The managed collections.
    pub fn ids(&self) -> Vec<GlobalId> {
        self.lock().keys().copied().collect()
    }

    fn send(
        &self,
        id: GlobalId,
        differential: Option<bool>,
        cmd: Command<T>,
    ) -> Result<(), StorageError<T>> {
        let collections = self.lock();
        let entry = collections
            .get(&id)
            .ok_or(StorageError::IdentifierMissing(id))?;
        if differential.is_some_and(|d| d != entry.differential) {
            return Err(StorageError::IdentifierInvalid(id));
        }
        entry.tx.send(cmd).map_err(|_| channel_closed())
    }

    /// Changes the desired state of a differential collection. Allowed in read-only
    /// mode: the state is written once writes are allowed.
    pub fn update_desired(&self, id: GlobalId, op: StorageWriteOp) -> Result<(), StorageError<T>> {
        self.send(id, Some(true), Command::Update(op))
    }

    /// Adds `updates` to the desired state of a differential collection.
    pub fn differential_append(
        &self,
        id: GlobalId,
        updates: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>> {
        self.update_desired(id, StorageWriteOp::Append(updates))
    }

    /// Checks that `id` is append-only, writable and that `rows` match its schema.
    fn check_append(&self, id: GlobalId, rows: &[(Row, i64)]) -> Result<(), StorageError<T>> {
        let collections = self.lock();
        let entry = collections
            .get(&id)
            .ok_or(StorageError::IdentifierMissing(id))?;
        if entry.differential {
            return Err(StorageError::IdentifierInvalid(id));
        }
        if *self.inner.read_only.borrow() && !entry.force_writable {
            return Err(StorageError::ReadOnly);
        }
        for (row, _) in rows {
            entry
                .desc
                .validate_row(row)
                .map_err(|mismatch| StorageError::InvalidRow { id, mismatch })?;
        }
        Ok(())
    }

    /// Appends `rows` to an append-only collection at `max(now, upper)`; resolves when
    /// they are durable. Fails with [`StorageError::ReadOnly`] in read-only mode and
    /// [`StorageError::InvalidRow`] if a row does not match the schema.
    pub fn append(&self, id: GlobalId, rows: Vec<(Row, i64)>) -> AppendFuture<T> {
        if let Err(e) = self.check_append(id, &rows) {
            return futures::future::ready(Err(e)).boxed();
        }
        let (done, wait) = oneshot::channel();
        let sent = self.send(
            id,
            Some(false),
            Command::Append {
                rows,
                done: Some(done),
            },
        );
        wait_for(sent, wait)
    }

    /// Like [`CollectionManager::append`], without waiting for durability.
    pub fn blind_write(&self, id: GlobalId, rows: Vec<(Row, i64)>) -> Result<(), StorageError<T>> {
        self.check_append(id, &rows)?;
        self.send(id, Some(false), Command::Append { rows, done: None })
    }

    /// Appends status updates to a status-history collection, de-duplicated per
    /// `(id, replica)` if the collection was registered to. Resolves when durable.
    pub fn append_status(&self, id: GlobalId, updates: Vec<StatusUpdate>) -> AppendFuture<T> {
        if let Err(e) = self.check_append(id, &[]) {
            return futures::future::ready(Err(e)).boxed();
        }
        let (done, wait) = oneshot::channel();
        let sent = self.send(
            id,
            Some(false),
            Command::AppendStatus {
                updates,
                done: Some(done),
            },
        );
        wait_for(sent, wait)
    }

    /// A handle for webhook-style appends to an append-only collection; see
    /// [`MonotonicAppender`]'s contract. Non-positive diffs fail with
    /// [`StorageError::InvalidUsage`].
    pub fn monotonic_appender(
        &self,
        id: GlobalId,
    ) -> Result<MonotonicAppender<T>, StorageError<T>> {
        match self.lock().get(&id) {
            None => return Err(StorageError::IdentifierMissing(id)),
            Some(entry) if entry.differential => return Err(StorageError::IdentifierInvalid(id)),
            Some(_) => {}
        }
        let manager = self.clone();
        Ok(MonotonicAppender::new(
            id,
            Arc::new(move |rows: Vec<(Row, i64)>| {
                if let Some((row, diff)) = rows.iter().find(|(_, d)| *d <= 0) {
                    let msg = format!("monotonic append to {id} with diff {diff} for {row}");
                    return futures::future::ready(Err(StorageError::InvalidUsage(msg))).boxed();
                }
                manager.append(id, rows)
            }),
        ))
    }

    /// Resolves once everything submitted before is durable (and a differential
    /// collection's shard equals its desired state as of this call).
    pub fn sync(&self, id: GlobalId) -> AppendFuture<T> {
        let (done, wait) = oneshot::channel();
        wait_for(self.send(id, None, Command::Sync(done)), wait)
    }

    /// The collection's consolidated contents at its `upper - 1`, read from its shard.
    /// Works in read-only mode.
    pub fn snapshot_latest(&self, id: GlobalId) -> SnapshotFuture<T> {
        let (done, wait) = oneshot::channel();
        let sent = self.send(id, None, Command::Snapshot(done));
        async move {
            sent?;
            wait.await.unwrap_or_else(|_| Err(channel_closed()))
        }
        .boxed()
    }

    /// The schema of a managed collection.
    pub fn desc(&self, id: GlobalId) -> Result<RelationDesc, StorageError<T>> {
        self.lock()
            .get(&id)
            .map(|e| e.desc.clone())
            .ok_or(StorageError::IdentifierMissing(id))
    }

    /// Runs the collection's history truncation now (it also runs on an interval).
    pub fn truncate_now(&self, id: GlobalId) -> AppendFuture<T> {
        let (done, wait) = oneshot::channel();
        wait_for(self.send(id, Some(false), Command::Truncate(done)), wait)
    }

    /// Replaces the history policy of an append-only collection.
    pub fn set_history_policy(
        &self,
        id: GlobalId,
        policy: Option<HistoryPolicy>,
    ) -> Result<(), StorageError<T>> {
        self.send(id, Some(false), Command::SetHistory(policy))
    }

    /// Leaves read-only mode: every task writes its desired state and pending rows.
    pub fn allow_writes(&self) {
        self.inner.read_only.send_replace(false);
    }

    /// Whether the manager is in read-only mode.
    pub fn is_read_only(&self) -> bool {
        *self.inner.read_only.borrow()
    }

    /// Changes how long writes are batched, for every collection.
    pub fn set_batch_duration(&self, duration: Duration) {
        self.inner.batch_duration.send_replace(duration);
    }

    /// How long writes are batched now.
    pub fn batch_duration(&self) -> Duration {
        *self.inner.batch_duration.borrow()
    }

    /// The metrics the manager records.
    pub fn metrics(&self) -> &ControllerMetrics {
        &self.inner.metrics
    }
}

fn wait_for<T: StorageTimestamp>(
    sent: Result<(), StorageError<T>>,
    wait: oneshot::Receiver<Result<(), StorageError<T>>>,
) -> AppendFuture<T> {
    async move {
        sent?;
        wait.await.unwrap_or_else(|_| Err(channel_closed()))
    }
    .boxed()
}
