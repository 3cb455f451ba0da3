//! [`Controller`]: the storage controller, implementing every controller-api trait.
//!
//! The controller is split by concern:
//! - [`registry`](self): the one collection store (descriptions, shards, frontiers);
//! - `bootstrap`: creating collections and opening their shards;
//! - `fencing`: the controller's critical reader, fencing a shard at our epoch, and
//!   reading a shard's frontiers or epoch without writing;
//! - `storage_task`: the task that owns the txns shard handle and the critical since
//!   handles, and runs group commits, since downgrades and finalization in order
//!   (`applier` links committed table writes in the background, `finalize` retires the
//!   shards of dropped collections);
//! - `tables`, `reads`, `instances`, `lifecycle`, `drops`, `exports`, `introspection`:
//!   one trait (or one part of one) each; `introspection` also owns the collection
//!   manager that writes the introspection collections;
//! - `effects`: carrying out what the pure [`frontiers`](crate::frontiers) module asks.
//!
//! # Modes
//!
//! A controller starts read-only or writable. Read-only, it writes to no shard but
//! those of migrated collections (fresh shards only it knows, see `migrated`):
//! frontiers come from reading shard state (`upper_watch`), since downgrades and
//! finalization are buffered, and other table writes fail with
//! [`StorageError::ReadOnly`]. `allow_writes` fences older controllers, opens the
//! shards and registers tables with the txns shard.
//!
//! # Fencing
//!
//! Every shard the controller owns, and the txns shard, carries a critical since whose
//! opaque value is the controller's epoch. A new controller stores its higher epoch
//! there; the older one then fails its next since downgrade or table write with
//! [`StorageError::Fenced`]. Replicas are fenced by the epoch in `Hello`.

mod applier;
mod bootstrap;
mod collections;
mod drops;
mod effects;
mod exports;
mod fencing;
mod finalize;
mod ingestions;
mod instances;
mod introspection;
mod lifecycle;
mod metered;
mod migrated;
mod reads;
mod registry;
mod rtr;
mod storage_task;
mod table_uppers;
mod tables;
mod upper_watch;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, ShardId, StorageError, StorageParameters,
    StorageResponse, StorageTimestamp, StorageTxn, prepare_initialization,
};
use strata_instance_client::{Instance, InstanceResponse, ReplicaConnector, StorageCommand};
use strata_persist_backend::txns::{TxnsError, TxnsHandle};
use strata_persist_backend::{PersistClient, PersistError};
use tokio::sync::mpsc;

pub use fencing::CONTROLLER_READER_ID;
use fencing::Fence;
pub use ingestions::WAITING_FOR_INITIALIZATION;
use registry::Registry;
use storage_task::{Command, Event, ShardKind, StorageTaskHandle};

/// Begins a transaction on the host's durable catalog. The controller begins a fresh
/// one for each change it records itself (the txns shard, shard assignments, finalized
/// shards), so it never overwrites the host's commits with a stale copy.
pub type CatalogFn<T> = Arc<dyn Fn() -> Box<dyn StorageTxn<T> + Send> + Send + Sync>;

/// A txns handle for reads, opened on first use and shared by snapshot futures.
pub(crate) type SharedReader<T> = Arc<tokio::sync::Mutex<Option<TxnsHandle<T>>>>;

/// Turns a replica configuration into a connector. The host supplies it, since only the
/// host knows how to start an in-process replica or which transports it built.
pub type ConnectorFactory<T> = Arc<
    dyn Fn(
            &strata_controller_api::ReplicaConfig,
        ) -> Result<Arc<dyn ReplicaConnector<T>>, StorageError<T>>
        + Send
        + Sync,
>;

/// How a [`Controller`] is set up.
#[derive(Clone)]
pub struct ControllerConfig<T> {
    /// How many shards bootstrap opens at once.
    pub open_concurrency: usize,
    /// How replicas are reached; `None` makes `connect_replica` fail with
    /// [`StorageError::InvalidUsage`].
    pub connector_factory: Option<ConnectorFactory<T>>,
    /// Whether the controller starts read-only: writing to no shard until
    /// `allow_writes` (see the module docs).
    pub read_only: bool,
    /// The reconnect backoff of every replica.
    pub backoff: BackoffConfig,
    /// The initial parameters.
    pub parameters: StorageParameters,
    /// How often the controller reads the persist uppers of collections that nothing
    /// reports to it: those written outside the controller (`DataSource::Other`) and,
    /// while read-only, those the previous controller still writes. One round reads
    /// each such shard once, whatever the number of collections.
    pub upper_watch_interval: std::time::Duration,
    /// How often the frontiers of tables that were not written move to the tables'
    /// shared upper (and are reported in `FrontierUpdates`). Written tables move on
    /// the commit; `collection_frontiers` is exact at any time. See
    /// `controller/table_uppers.rs`.
    pub table_upper_sweep_interval: std::time::Duration,
    /// How the introspection collections are written (tick, batching, retries, clock).
    pub introspection: strata_introspection::ManagerConfig,
    /// Where the controller records its metrics; clone it before passing it in to serve
    /// it (see [`strata_introspection::serve_metrics`]).
    pub metrics: strata_introspection::Metrics,
    /// How real-time recency asks the upstream of a registered connector how far it
    /// has got, by connector kind (see `controller/rtr.rs`). An ingestion whose kind has
    /// no probe is skipped by real-time recency.
    pub upstream_probes: strata_controller_api::UpstreamProbes,
}

impl<T> Default for ControllerConfig<T> {
    fn default() -> Self {
        ControllerConfig {
            open_concurrency: 32,
            connector_factory: None,
            read_only: false,
            backoff: BackoffConfig::PEER,
            parameters: StorageParameters::default(),
            upper_watch_interval: std::time::Duration::from_secs(1),
            table_upper_sweep_interval: std::time::Duration::from_secs(1),
            introspection: strata_introspection::ManagerConfig::default(),
            metrics: strata_introspection::Metrics::default(),
            upstream_probes: strata_controller_api::UpstreamProbes::default(),
        }
    }
}

impl<T> fmt::Debug for ControllerConfig<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerConfig")
            .field("open_concurrency", &self.open_concurrency)
            .field("read_only", &self.read_only)
            .field("connector_factory", &self.connector_factory.is_some())
            .field("upstream_probes", &self.upstream_probes)
            .finish_non_exhaustive()
    }
}

/// The storage controller. See the module docs.
///
/// All methods must be called within a tokio runtime: the storage task and replica
/// connections run on spawned tasks.
pub struct Controller<T: StorageTimestamp> {
    config: ControllerConfig<T>,
    parameters: StorageParameters,
    epoch: u64,
    read_only: bool,
    initialized: bool,
    client: PersistClient,
    catalog: CatalogFn<T>,
    txns_shard: ShardId,
    registry: Registry<T>,
    holds_tx: mpsc::UnboundedSender<(GlobalId, ChangeBatch<T>)>,
    holds_rx: mpsc::UnboundedReceiver<(GlobalId, ChangeBatch<T>)>,
    storage_task: StorageTaskHandle<T>,
    /// Follows the uppers that nothing reports (see `upper_watch`).
    upper_watch: upper_watch::UpperWatch<T>,
    /// While read-only, writes the migrated tables (see `migrated`).
    migrated_tables: Option<migrated::MigratedTables<T>>,
    /// The storage-task event channel, also fed with managed introspection uppers and
    /// the upper watch.
    events_tx: mpsc::UnboundedSender<Event<T>>,
    events_rx: mpsc::UnboundedReceiver<Event<T>>,
    /// The introspection collections and their manager.
    introspection: introspection::IntrospectionState<T>,
    reader: SharedReader<T>,
    /// Our epoch, and the newer one that fenced us once known.
    fence: Fence,
    instances: BTreeMap<InstanceId, Instance<T>>,
    /// Responses `ready` received and `process` has not handled yet.
    pending: VecDeque<(InstanceId, InstanceResponse<T>)>,
    /// Whether `ready` saw internal work (holds or storage-task events).
    internal_ready: bool,
    /// Read-hold changes `ready` received.
    stashed_holds: Vec<(GlobalId, ChangeBatch<T>)>,
    /// Storage-task events `ready` received.
    stashed_events: Vec<Event<T>>,
    /// Responses `process` produced but has not returned yet (it returns one per call).
    responses: VecDeque<StorageResponse<T>>,
    /// Upper changes applied (by any call) but not yet reported by `process`: the
    /// latest per collection.
    unreported_uppers: BTreeMap<GlobalId, Antichain<T>>,
    /// The tables' shared upper (the txns shard's), as the storage task last reported.
    tables_upper: Antichain<T>,
    /// Which tables' frontiers move when `tables_upper` does.
    table_uppers: table_uppers::TableUppers,
    /// The latest time at which the storage task started a group commit of table writes.
    committing_ts: Option<T>,
}

impl<T: StorageTimestamp> fmt::Debug for Controller<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("epoch", &self.epoch)
            .field("read_only", &self.read_only)
            .field("txns_shard", &self.txns_shard)
            .field("collections", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl<T: StorageTimestamp> Controller<T> {
    /// Opens a controller over the persist location `persist_location` and the host's
    /// catalog (`catalog` begins its transactions), at the catalog's fencing epoch
    /// ([`StorageTxn::epoch`]), writable or read-only as `config.read_only` says.
    ///
    /// Seeds the catalog with a txns shard if it has none. A writable controller fences
    /// older epochs at once; a read-only one writes to no shard until `allow_writes`.
    ///
    /// # Errors
    ///
    /// - [`StorageError::Fenced`] if a controller with a higher epoch owns the location
    ///   or the catalog;
    /// - [`StorageError::Persist`] if the location cannot be opened.
    pub async fn new(
        config: ControllerConfig<T>,
        catalog: CatalogFn<T>,
        persist_location: &str,
    ) -> Result<Self, StorageError<T>> {
        let client = PersistClient::open(persist_location)
            .await
            .map_err(persist_err)?;
        let mut txn = catalog();
        let epoch = txn.epoch();
        let read_only = config.read_only;
        let txns_shard = prepare_initialization(txn.as_mut(), random_shard)?;
        txn.commit().await?;
        let unfinalized = txn.get_unfinalized_shards();
        let reader: SharedReader<T> = Arc::new(tokio::sync::Mutex::new(None));
        let fence = Fence::new(epoch);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let storage_task = storage_task::spawn(storage_task::StorageTaskConfig {
            client: client.clone(),
            fence: fence.clone(),
            txns_shard,
            catalog: Arc::clone(&catalog),
            reader: Arc::clone(&reader),
            events: events_tx.clone(),
        });
        let manager = strata_introspection::CollectionManager::new(
            read_only,
            config.introspection.clone(),
            config.metrics.controller.clone(),
        );
        if let Some(duration) = config.parameters.user_batch_duration {
            manager.set_batch_duration(duration);
        }
        let introspection = introspection::IntrospectionState::new(manager, config.metrics.clone());
        let (holds_tx, holds_rx) = mpsc::unbounded_channel();
        let upper_watch = upper_watch::UpperWatch::spawn(
            client.clone(),
            config.upper_watch_interval,
            events_tx.clone(),
        );
        let table_uppers = table_uppers::TableUppers::new(config.table_upper_sweep_interval);
        let mut controller = Controller {
            parameters: config.parameters.clone(),
            config,
            epoch,
            read_only,
            initialized: false,
            client,
            catalog,
            txns_shard,
            registry: Registry::new(),
            holds_tx,
            holds_rx,
            storage_task,
            upper_watch,
            migrated_tables: None,
            events_tx,
            events_rx,
            introspection,
            reader,
            fence,
            instances: BTreeMap::new(),
            pending: VecDeque::new(),
            internal_ready: false,
            stashed_holds: Vec::new(),
            stashed_events: Vec::new(),
            responses: VecDeque::new(),
            unreported_uppers: BTreeMap::new(),
            tables_upper: Antichain::from_elem(T::minimum()),
            table_uppers,
            committing_ts: None,
        };
        if !read_only {
            controller.enter_writable().await?;
        }
        for shard in unfinalized {
            // Whether it was a table's is not recorded: the txns handles that held a
            // table's since belonged to the controller that dropped it.
            controller.storage_task.send(Command::Finalize {
                shard,
                kind: ShardKind::Other,
            });
        }
        Ok(controller)
    }

    /// Opens a controller over `persist_location` with the durable catalog of that
    /// location ([`DurableCatalog`](crate::catalog::DurableCatalog)), claiming the
    /// catalog's next epoch. This is the default set-up: one location holds everything.
    ///
    /// Claiming the epoch writes to the catalog's metadata shard even when
    /// `config.read_only`; no collection shard is written until `allow_writes`.
    pub async fn open_durable(
        config: ControllerConfig<T>,
        persist_location: &str,
    ) -> Result<Self, StorageError<T>> {
        let client = PersistClient::open(persist_location)
            .await
            .map_err(persist_err)?;
        let catalog = crate::catalog::DurableCatalog::open(&client).await?;
        let begin: CatalogFn<T> = Arc::new(move || Box::new(catalog.begin::<T>()));
        Self::new(config, begin, persist_location).await
    }

    /// Fences older controllers on the txns shard and tells the storage task it may
    /// write.
    async fn enter_writable(&mut self) -> Result<(), StorageError<T>> {
        let handle = fencing::fence_shard(&self.client, self.txns_shard, self.epoch).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.storage_task.send(Command::AllowWrites {
            txns_since: handle,
            reply: tx,
        });
        rx.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// The controller's fencing epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The txns shard that tables are written through.
    pub fn txns_shard(&self) -> ShardId {
        self.txns_shard
    }

    /// Closes the controller: waits for every table write, drop and since change it has
    /// accepted to finish, stops its storage task and background applier, gives up its
    /// writer leases and disconnects its replicas. Call it before the host exits (or
    /// before dropping the controller) so that nothing accepted is left half done and no
    /// lease lingers until it times out. Dropping a controller without closing it loses
    /// nothing durable either: what was acknowledged is durable, and the next controller
    /// finishes any recorded drop.
    ///
    /// In-process `ReplicaServer`s belong to the host; stop them with their own
    /// `shutdown()` after this.
    pub async fn close(mut self) {
        self.drain_internal();
        let (reply, done) = tokio::sync::oneshot::channel();
        self.storage_task.send(Command::Close { reply });
        // An error means the storage task had already stopped.
        let _ = done.await;
        self.instances.clear();
        // What the background tasks held (a handle and cached state per shard) is let
        // go before `close` returns, not while the next controller starts.
        self.upper_watch.stop().await;
    }

    /// What the controller's catalog records now: which shard backs each collection,
    /// which shards of dropped collections still await finalization, the txns shard
    /// and the epoch. A dropped collection's id is absent from
    /// `collection_metadata` once its drop call returned; its shard leaves
    /// `unfinalized_shards` once [`PersistClient::is_finalized`] says so.
    pub fn catalog_contents(&self) -> crate::catalog::CatalogContents {
        let txn = (self.catalog)();
        crate::catalog::CatalogContents {
            collection_metadata: txn.get_collection_metadata(),
            unfinalized_shards: txn.get_unfinalized_shards(),
            txns_shard: Some(self.txns_shard),
            epoch: self.epoch,
        }
    }

    /// The persist client the controller uses (for tests and operators).
    pub fn persist_client(&self) -> &PersistClient {
        &self.client
    }

    /// `Err(Fenced)` once a newer controller has taken over.
    fn check_fenced(&self) -> Result<(), StorageError<T>> {
        self.fence.check_seen()
    }

    /// Applies every read-hold change and storage-task event received so far, and keeps
    /// the upper changes for `process` to report (whichever call drained them).
    fn drain_internal(&mut self) {
        let mut changes: BTreeMap<GlobalId, ChangeBatch<T>> = BTreeMap::new();
        let stashed = std::mem::take(&mut self.stashed_holds);
        for (id, mut batch) in stashed {
            changes.entry(id).or_default().extend(batch.drain());
        }
        while let Ok((id, mut batch)) = self.holds_rx.try_recv() {
            changes.entry(id).or_default().extend(batch.drain());
        }
        if !changes.is_empty() {
            self.apply_hold_changes(changes);
        }
        let mut uppers = Vec::new();
        let mut events = std::mem::take(&mut self.stashed_events);
        while let Ok(event) = self.events_rx.try_recv() {
            events.push(event);
        }
        // The tables share one upper: however many commits happened since the last
        // drain, each table moves once, to the latest.
        let mut tables_upper = None;
        for event in events {
            match event {
                Event::TablesUpper(upper) => tables_upper = Some(upper),
                Event::Upper(id, upper) => uppers.push((id, upper)),
                Event::Committing(ts) => self.committing_ts = self.committing_ts.max(Some(ts)),
            }
        }
        let moved = tables_upper.is_some();
        if let Some(upper) = tables_upper {
            self.tables_upper = upper;
        }
        let upper = &self.tables_upper;
        match self.table_uppers.on_drain(moved, std::time::Instant::now()) {
            table_uppers::Move::Nothing => {}
            table_uppers::Move::Written(ids) => uppers.extend(
                ids.into_iter()
                    .filter(|id| self.registry.is_txns_table(*id))
                    .map(|id| (id, upper.clone())),
            ),
            table_uppers::Move::All => {
                uppers.extend(self.registry.txns_tables().map(|id| (id, upper.clone())));
            }
        }
        if !uppers.is_empty() {
            let effects = self.registry.frontiers.update_write_frontiers(&uppers);
            self.execute(effects);
            for (id, upper) in uppers {
                self.unreported_uppers.insert(id, upper);
            }
        }
    }

    /// Applies read-hold changes. Changes for ids that are gone are ignored (a hold may
    /// outlive its collection); an invalid batch is logged and skipped.
    fn apply_hold_changes(&mut self, changes: BTreeMap<GlobalId, ChangeBatch<T>>) {
        for (id, batch) in changes {
            if !self.registry.frontiers.contains(id) {
                continue;
            }
            let single = BTreeMap::from([(id, batch)]);
            match self.registry.frontiers.update_read_capabilities(single) {
                Ok(effects) => self.execute(effects),
                Err(error) => tracing::warn!(%id, %error, "ignoring an invalid read hold change"),
            }
        }
    }

    /// The sender read holds report their changes through.
    fn change_tx(&self) -> strata_controller_api::ChangeTx<T> {
        let tx = self.holds_tx.clone();
        Arc::new(move |id, changes| {
            tx.send((id, changes))
                .map_err(|_| strata_controller_api::IssuerGone)
        })
    }

    /// Sends a command to every replica of `instance`, if it exists.
    fn send_to_instance(&mut self, instance: InstanceId, command: StorageCommand<T>) {
        if let Some(instance) = self.instances.get_mut(&instance) {
            instance.send(command);
        }
    }
}

/// A fresh random shard id.
pub(crate) fn random_shard() -> ShardId {
    ShardId::from_bytes(uuid::Uuid::new_v4().into_bytes())
}

/// Wraps a persist error, keeping its certainty.
pub(crate) fn persist_err<T>(error: PersistError) -> StorageError<T> {
    StorageError::persist(error.certainty(), error)
}

/// Wraps a txns error, keeping its certainty.
pub(crate) fn txns_err<T>(error: TxnsError) -> StorageError<T> {
    StorageError::persist(error.certainty(), error)
}
