//! [`Harness`]: a real controller and in-process replicas on a chosen backend, for
//! tests a team writes against Strata.
//!
//! A harness owns:
//! - a persist location: memory (`mem://` with a unique name), a temporary directory
//!   it keeps alive, or S3 from the environment (feature `s3`) under a unique prefix;
//! - a [`Controller`] opened with the location's durable catalog
//!   ([`Controller::open_durable`]), writable unless built read-only;
//! - one instance with N [`ReplicaServer`](strata_replica::server::ReplicaServer)s of W
//!   timely workers each, connected over instance-client's `local` transport;
//! - a clock ([`NowFn`]) that the replicas bind source data with.
//!
//! Its helpers drive the controller's `ready`/`process` loop while they wait, so
//! replica reports land without a host loop.
//!
//! # Examples
//!
//! ```
//! use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType};
//! use strata_testkit::harness::{Harness, assert_consolidated_eq};
//!
//! #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let mut harness = Harness::builder().replicas(1).build().await?;
//!     let desc = RelationDesc::builder()
//!         .with_column("x", ScalarType::Int64.nullable(false))
//!         .finish();
//!     let table = GlobalId::User(1);
//!     harness.create_table(table, desc).await?;
//!     let row = Row::pack(&[Datum::Int64(7)]);
//!     let at = harness.append(table, vec![(row.clone(), 1)]).await?;
//!     let rows = harness.snapshot_multiset(table, at).await?;
//!     assert_consolidated_eq(rows, vec![(row, 1)]);
//!     Ok(())
//! }
//! ```

mod auction;
mod builder;
mod clock;
mod multiset;
mod replicas;
mod waits;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_controller_api::{
    Certainty, CollectionDescription, Collections, GlobalId, InstanceId, Instances, Lifecycle,
    Reads, RelationDesc, ReplicaConfig, ReplicaId, ReplicaLocation, Row, StorageError,
    StorageMetadata, Tables, Timestamp,
};
use strata_controller_core::{ConnectorFactory, Controller, ControllerConfig};
use strata_instance_client::transport::ReplicaConnector;

pub use self::auction::AuctionSource;
pub use self::builder::{Backend, HarnessBuilder};
pub use self::clock::{ManualClock, NowFn, system_now};
pub use self::multiset::{
    RowDifference, assert_consolidated_eq, consolidate, multiset_difference, render_difference,
};
use self::replicas::{ReplicaSlot, SlotConnector};
use crate::faults::{FaultyConnector, TransportFaultHandle};

/// What can go wrong in a harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// The backend could not be set up (a missing environment variable, a temporary
    /// directory that cannot be created).
    #[error("backend setup failed: {reason}")]
    Backend {
        /// What went wrong.
        reason: String,
    },
    /// The controller refused an operation.
    #[error("{context}: {source}")]
    Storage {
        /// What the harness was doing.
        context: String,
        /// The controller's error (it says whether a retry is safe).
        source: StorageError<Timestamp>,
    },
    /// A replica could not be started.
    #[error("replica {index}: {reason}")]
    Replica {
        /// The replica's index (0-based).
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// A replica index out of range.
    #[error("no replica {index}: the harness has {replicas}")]
    NoSuchReplica {
        /// The index asked for.
        index: usize,
        /// How many replicas the harness has.
        replicas: usize,
    },
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {waiting_for}; last saw {last_seen}")]
    Timeout {
        /// What the wait was for.
        waiting_for: String,
        /// What the last check observed.
        last_seen: String,
        /// How long it waited.
        after: Duration,
    },
    /// A restarted controller did not claim a higher epoch.
    #[error("the restarted controller has epoch {after}, not above {before}")]
    EpochNotBumped {
        /// The epoch before the restart.
        before: u64,
        /// The epoch after it.
        after: u64,
    },
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

fn storage(context: impl Into<String>) -> impl FnOnce(StorageError<Timestamp>) -> HarnessError {
    let context = context.into();
    move |source| HarnessError::Storage { context, source }
}

/// Whether `e` is a failure of the store (which a retry may get past), not a refusal.
fn is_store_failure(e: &StorageError<Timestamp>) -> bool {
    matches!(e, StorageError::Persist { .. })
}

/// Settings a harness keeps to reopen its controller and restart its replicas.
struct Settings {
    location: String,
    workers: usize,
    now: NowFn,
    read_only: bool,
    timeout: Duration,
    instance: InstanceId,
    offset_limit: Option<u64>,
    /// Faults between the controller and every replica, if asked for.
    transport_faults: Option<TransportFaultHandle>,
    /// The source connectors every replica is started with.
    connectors: strata_replica::connector::ConnectorRegistry,
}

/// A controller, an instance and in-process replicas over one persist location.
/// Build one with [`Harness::builder`]; see the [module docs](self).
///
/// Methods need a multi-threaded tokio runtime (replicas block on their own threads).
pub struct Harness {
    settings: Settings,
    controller: Controller<Timestamp>,
    replicas: Vec<ReplicaSlot>,
    /// The connector the next `connect_replica` hands the controller.
    pending: Arc<Mutex<Option<Arc<SlotConnector>>>>,
    /// Collections created through the harness, re-created after a controller restart.
    collections: Vec<(GlobalId, CollectionDescription<Timestamp>)>,
    /// The faulty store under the location, if built with `store_faults`; dropped
    /// before the directory it may write to.
    faulty: Option<builder::FaultyLocation>,
    /// Keeps a temporary directory alive for the harness's lifetime.
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("location", &self.settings.location)
            .field("epoch", &self.controller.epoch())
            .field("replicas", &self.replicas.len())
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A builder with the defaults: memory backend, one replica with one worker, the
    /// wall clock, writable, 30 s waits.
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The controller.
    pub fn controller(&self) -> &Controller<Timestamp> {
        &self.controller
    }

    /// The controller, to call any controller-api method on it.
    pub fn controller_mut(&mut self) -> &mut Controller<Timestamp> {
        &mut self.controller
    }

    /// The persist location URL (`mem://…`, `file://…` or `s3://…`).
    pub fn location(&self) -> &str {
        &self.settings.location
    }

    /// The fault knobs of the store under the controller and replicas, if the harness
    /// was built with [`HarnessBuilder::store_faults`] (see there for an example).
    pub fn store_faults(&self) -> Option<&crate::faults::FaultHandle> {
        self.faulty.as_ref().map(|f| &f.handle)
    }

    /// The fault knobs of the transport between the controller and every replica, if
    /// the harness was built with [`HarnessBuilder::transport_faults`].
    pub fn transport_faults(&self) -> Option<&TransportFaultHandle> {
        self.settings.transport_faults.as_ref()
    }

    /// The instance the replicas belong to.
    pub fn instance(&self) -> InstanceId {
        self.settings.instance
    }

    /// The id the controller knows replica `index` by.
    pub fn replica_id(index: usize) -> ReplicaId {
        ReplicaId(index as u64 + 1)
    }

    /// How many replicas the harness has (running or killed).
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// Whether replica `index` runs.
    pub fn replica_running(&self, index: usize) -> bool {
        self.replicas
            .get(index)
            .is_some_and(ReplicaSlot::is_running)
    }

    /// How many times replica `index` has started (1 after build, +1 per restart).
    pub fn replica_starts(&self, index: usize) -> u64 {
        self.replicas.get(index).map_or(0, ReplicaSlot::starts)
    }

    /// The harness clock's current time in milliseconds.
    pub fn now(&self) -> u64 {
        (self.settings.now)()
    }

    /// Creates collections and remembers them, so
    /// [`restart_controller`](Self::restart_controller) re-creates them as a host would
    /// (tables then register at the txns upper). Tables need a `register_ts` unless the
    /// controller is read-only; the controller moves it up to the txns upper.
    pub async fn create_collections(
        &mut self,
        register_ts: Option<Timestamp>,
        collections: Vec<(GlobalId, CollectionDescription<Timestamp>)>,
    ) -> Result<()> {
        self.controller
            .create_collections(
                &StorageMetadata::default(),
                register_ts,
                collections.clone(),
            )
            .await
            .map_err(storage("creating collections"))?;
        self.collections.extend(collections);
        Ok(())
    }

    /// Creates the table `id` with schema `desc` (see
    /// [`create_collections`](Self::create_collections)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_controller_api::{GlobalId, RelationDesc, ScalarType};
    /// # use strata_testkit::harness::Harness;
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    /// let mut harness = Harness::builder().replicas(0).build().await?;
    /// let desc = RelationDesc::builder()
    ///     .with_column("x", ScalarType::Int64.nullable(false))
    ///     .finish();
    /// harness.create_table(GlobalId::User(1), desc).await?;
    /// // A new table is readable (and empty) once created.
    /// let upper = harness.upper_time(GlobalId::User(1))?;
    /// let as_of = strata_controller_api::Timestamp::new(upper.saturating_sub(1));
    /// assert!(harness.snapshot_multiset(GlobalId::User(1), as_of).await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_table(&mut self, id: GlobalId, desc: RelationDesc) -> Result<()> {
        // The controller registers tables at the txns upper if that is later.
        let register_ts = Some(Timestamp::new(0));
        self.create_collections(register_ts, vec![(id, CollectionDescription::table(desc))])
            .await
    }

    /// The first time of `id`'s upper in milliseconds, or an error if the collection
    /// is unknown or closed.
    pub fn upper_time(&self, id: GlobalId) -> Result<u64> {
        let frontiers = self
            .controller
            .collection_frontiers(id)
            .map_err(storage(format!("reading the frontiers of {id}")))?;
        frontiers
            .upper
            .as_option()
            .map(Timestamp::as_millis)
            .ok_or_else(|| HarnessError::Storage {
                context: format!("appending to {id}"),
                source: StorageError::InvalidUsage(format!("{id} is closed")),
            })
    }

    /// Appends `updates` to the table `id` at its current upper, waits until the write
    /// is durable, and returns the write's time: a snapshot as of it sees the rows.
    /// A store failure that wrote nothing (determinate) is retried until the harness
    /// timeout; any other error is returned.
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType};
    /// # use strata_testkit::harness::Harness;
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    /// let mut harness = Harness::builder().replicas(0).build().await?;
    /// let desc = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
    /// let table = GlobalId::User(1);
    /// harness.create_table(table, desc).await?;
    /// let first = harness.append(table, vec![(Row::pack(&[Datum::Int64(1)]), 1)]).await?;
    /// let second = harness.append(table, vec![(Row::pack(&[Datum::Int64(2)]), 1)]).await?;
    /// assert!(first < second);
    /// assert_eq!(harness.snapshot_multiset(table, second).await?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append(&mut self, id: GlobalId, updates: Vec<(Row, i64)>) -> Result<Timestamp> {
        let deadline = std::time::Instant::now() + self.settings.timeout;
        let mut at = None;
        loop {
            match self.append_once(id, updates.clone(), at.take()).await {
                // The store failed before anything was written: try again.
                Err(HarnessError::Storage { source, .. })
                    if is_store_failure(&source)
                        && source.certainty() == Certainty::Determinate
                        && std::time::Instant::now() < deadline => {}
                // The upper moved on (a write to another table advanced it) before
                // the controller told us: write at the upper it reports.
                Err(HarnessError::Storage {
                    source: StorageError::UpdateBeforeUpper { upper, .. },
                    ..
                }) if std::time::Instant::now() < deadline => {
                    at = upper.as_option().map(Timestamp::as_millis);
                }
                result => return result,
            }
        }
    }

    async fn append_once(
        &mut self,
        id: GlobalId,
        updates: Vec<(Row, i64)>,
        at: Option<u64>,
    ) -> Result<Timestamp> {
        self.controller.apply_pending();
        let at = match at {
            Some(at) => at,
            None => self.upper_time(id)?,
        };
        let write = Timestamp::new(at);
        let advance = Timestamp::new(at.saturating_add(1));
        let context = format!("appending to {id} at {write}");
        self.controller
            .append_table(write, advance, vec![(id, updates)])
            .map_err(storage(context.clone()))?
            .await
            .map_err(storage(context))?;
        self.controller.apply_pending();
        Ok(write)
    }

    /// The contents of `id` as of `as_of`, consolidated: each row with its count, rows
    /// with a zero count left out. Waits (with the harness timeout) until `as_of` is
    /// readable, that is until the upper passes it; store failures while reading are
    /// retried until the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType};
    /// # use strata_testkit::harness::Harness;
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    /// let mut harness = Harness::builder().replicas(0).build().await?;
    /// let desc = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
    /// let table = GlobalId::User(1);
    /// harness.create_table(table, desc).await?;
    /// let row = Row::pack(&[Datum::Int64(1)]);
    /// harness.append(table, vec![(row.clone(), 2)]).await?;
    /// let at = harness.append(table, vec![(row.clone(), -1)]).await?;
    /// let rows = harness.snapshot_multiset(table, at).await?;
    /// assert_eq!(rows.into_iter().collect::<Vec<_>>(), vec![(row, 1)]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn snapshot_multiset(
        &mut self,
        id: GlobalId,
        as_of: Timestamp,
    ) -> Result<std::collections::BTreeMap<Row, i64>> {
        self.wait_for_upper(id, as_of).await?;
        let deadline = std::time::Instant::now() + self.settings.timeout;
        loop {
            match self.controller.snapshot(id, as_of).await {
                Ok(rows) => return Ok(consolidate(rows)),
                // Reads change nothing: a failed store read is retried.
                Err(e) if is_store_failure(&e) && std::time::Instant::now() < deadline => {}
                Err(e) => return Err(storage(format!("reading {id} as of {as_of}"))(e)),
            }
        }
    }

    fn connector_factory(
        pending: &Arc<Mutex<Option<Arc<SlotConnector>>>>,
        transport_faults: Option<TransportFaultHandle>,
    ) -> ConnectorFactory<Timestamp> {
        let pending = Arc::clone(pending);
        Arc::new(move |_: &ReplicaConfig| {
            let next = match pending.lock() {
                Ok(mut next) => next.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            next.map(|c| {
                let slot = c as Arc<dyn ReplicaConnector<Timestamp>>;
                match &transport_faults {
                    Some(faults) => FaultyConnector::new(slot, faults.clone())
                        as Arc<dyn ReplicaConnector<Timestamp>>,
                    None => slot,
                }
            })
            .ok_or_else(|| {
                StorageError::InvalidUsage(
                    "connect replicas through the harness (kill_replica/restart_replica)".into(),
                )
            })
        })
    }

    /// Opens a controller over the location with the durable catalog, creates the
    /// instance, connects every replica slot and re-creates remembered collections
    /// (after the instance, which ingestions run on).
    async fn open_controller(
        settings: &Settings,
        pending: &Arc<Mutex<Option<Arc<SlotConnector>>>>,
        replicas: &[ReplicaSlot],
        collections: &[(GlobalId, CollectionDescription<Timestamp>)],
    ) -> Result<Controller<Timestamp>> {
        let config = ControllerConfig {
            connector_factory: Some(Self::connector_factory(
                pending,
                settings.transport_faults.clone(),
            )),
            read_only: settings.read_only,
            upstream_probes: settings.connectors.upstream_probes().clone(),
            ..ControllerConfig::default()
        };
        let mut controller = Controller::open_durable(config, &settings.location)
            .await
            .map_err(storage(format!(
                "opening a controller on {}",
                settings.location
            )))?;
        controller
            .create_instance(settings.instance)
            .map_err(storage("creating the instance"))?;
        for (index, slot) in replicas.iter().enumerate() {
            match pending.lock() {
                Ok(mut next) => *next = Some(Arc::clone(&slot.connector)),
                Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&slot.connector)),
            }
            let config = ReplicaConfig {
                location: ReplicaLocation::InProcess {
                    workers: settings.workers,
                },
            };
            controller
                .connect_replica(settings.instance, Self::replica_id(index), config)
                .map_err(storage(format!("connecting replica {index}")))?;
        }
        if !collections.is_empty() {
            controller
                .create_collections(
                    &StorageMetadata::default(),
                    Some(Timestamp::new(0)),
                    collections.to_vec(),
                )
                .await
                .map_err(storage("re-creating collections"))?;
        }
        controller.initialization_complete();
        Ok(controller)
    }

    /// Opens a new controller over the same location (its durable catalog claims the
    /// next epoch, fencing the old controller), then drops the old one. Collections
    /// created through the harness are re-created and the replicas reconnected.
    /// Returns the new epoch.
    ///
    /// # Errors
    ///
    /// [`HarnessError::EpochNotBumped`] if the new epoch is not above the old one.
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_testkit::harness::Harness;
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    /// let mut harness = Harness::builder().replicas(1).build().await?;
    /// let before = harness.controller().epoch();
    /// let after = harness.restart_controller().await?;
    /// assert!(after > before);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn restart_controller(&mut self) -> Result<u64> {
        let before = self.controller.epoch();
        let next = Self::open_controller(
            &self.settings,
            &self.pending,
            &self.replicas,
            &self.collections,
        )
        .await?;
        let old = std::mem::replace(&mut self.controller, next);
        drop(old);
        let after = self.controller.epoch();
        if after <= before {
            return Err(HarnessError::EpochNotBumped { before, after });
        }
        Ok(after)
    }

    fn slot(&mut self, index: usize) -> Result<&mut ReplicaSlot> {
        let replicas = self.replicas.len();
        self.replicas
            .get_mut(index)
            .ok_or(HarnessError::NoSuchReplica { index, replicas })
    }

    /// Crashes replica `index`: its connections are cut, new ones are refused and its
    /// workers stop. The controller keeps the replica and retries with backoff. Killing
    /// a killed replica does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_testkit::harness::Harness;
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    /// let mut harness = Harness::builder().replicas(2).build().await?;
    /// harness.kill_replica(0).await?;
    /// assert!(!harness.replica_running(0));
    /// assert!(harness.replica_running(1));
    /// harness.restart_replica(0).await?;
    /// assert!(harness.replica_running(0));
    /// assert_eq!(harness.replica_starts(0), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn kill_replica(&mut self, index: usize) -> Result<()> {
        self.slot(index)?.kill().await;
        Ok(())
    }

    /// Starts replica `index` afresh on the same location (killing it first if it
    /// runs). The controller's reconnect replays its command history to the new
    /// process. See [`kill_replica`](Self::kill_replica) for an example.
    pub async fn restart_replica(&mut self, index: usize) -> Result<()> {
        let replicas = self.replicas.len();
        let slot = self
            .replicas
            .get_mut(index)
            .ok_or(HarnessError::NoSuchReplica { index, replicas })?;
        slot.kill().await;
        slot.start(&self.settings).await
    }
}
