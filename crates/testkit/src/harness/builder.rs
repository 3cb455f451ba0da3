//! [`HarnessBuilder`] and [`Backend`].

use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_replica::connector::ConnectorRegistry;

use object_store::ObjectStore;
use strata_controller_api::InstanceId;
use strata_persist_backend::location::{
    Location, register_memory_location_as, unregister_memory_location,
};

use super::clock::{NowFn, system_now};
use super::replicas::ReplicaSlot;
use super::{Harness, HarnessError, Result, Settings};
use crate::faults::{FaultHandle, FaultyObjectStore, TransportFaultHandle};

/// Where a harness keeps its shards and catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Process memory, under a unique `mem://` name per harness.
    #[default]
    Memory,
    /// A temporary directory (`file://`), removed when the harness drops.
    TempDir,
    /// S3 (feature `s3`): the bucket in `STRATA_S3_TEST_BUCKET`, the endpoint and
    /// credentials in the standard `AWS_*` variables (as `cargo xtask test` sets
    /// them), under a unique prefix per harness.
    #[cfg(feature = "s3")]
    S3FromEnv,
}

/// Builds a [`Harness`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_testkit::harness::{Backend, Harness, ManualClock};
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
///     let clock = ManualClock::new(1_000);
///     let harness = Harness::builder()
///         .backend(Backend::TempDir)
///         .replicas(2)
///         .workers(2)
///         .now(clock.now_fn())
///         .timeout(Duration::from_secs(10))
///         .build()
///         .await?;
///     assert!(harness.location().starts_with("file://"));
///     assert_eq!(harness.replica_count(), 2);
///     assert_eq!(harness.now(), 1_000);
///     Ok(())
/// }
/// ```
pub struct HarnessBuilder {
    backend: Backend,
    replicas: usize,
    workers: usize,
    now: NowFn,
    read_only: bool,
    timeout: Duration,
    instance: InstanceId,
    offset_limit: Option<u64>,
    store_faults: Option<u64>,
    transport_faults: Option<u64>,
    connectors: ConnectorRegistry,
}

impl Default for HarnessBuilder {
    fn default() -> Self {
        HarnessBuilder {
            backend: Backend::Memory,
            replicas: 1,
            workers: 1,
            now: system_now(),
            read_only: false,
            timeout: Duration::from_secs(30),
            instance: InstanceId(1),
            offset_limit: None,
            store_faults: None,
            transport_faults: None,
            connectors: ConnectorRegistry::default(),
        }
    }
}

impl std::fmt::Debug for HarnessBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HarnessBuilder")
            .field("backend", &self.backend)
            .field("replicas", &self.replicas)
            .field("workers", &self.workers)
            .field("read_only", &self.read_only)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HarnessBuilder {
    /// Where shards and the catalog live (default [`Backend::Memory`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// How many replicas the instance has (default 1; 0 is allowed for table-only
    /// tests).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Timely workers per replica (default 1, at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The clock the replicas bind source data with (default the wall clock); pass a
    /// [`ManualClock`](super::ManualClock)'s `now_fn()` to control it.
    pub fn now(mut self, now: NowFn) -> Self {
        self.now = now;
        self
    }

    /// Starts the controller read-only: it writes to no shard until
    /// `allow_writes` (default writable). Restarts keep this setting.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How long each wait helper waits before it fails (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The instance the replicas belong to (default `InstanceId(1)`).
    pub fn instance(mut self, instance: InstanceId) -> Self {
        self.instance = instance;
        self
    }

    /// Stops every source on the replicas at this offset (default: sources run on), so
    /// a test can wait for a source to finish and compare exact contents.
    pub fn offset_limit(mut self, limit: u64) -> Self {
        self.offset_limit = Some(limit);
        self
    }

    /// The source connectors every replica is started with (the built-ins by default):
    /// register your own kinds here to run them through the harness.
    pub fn connectors(mut self, connectors: ConnectorRegistry) -> Self {
        self.connectors = connectors;
        self
    }

    /// Puts a [`FaultyObjectStore`] seeded with `seed` under the controller and every
    /// replica (default: none). It starts transparent; turn its knobs through
    /// [`Harness::store_faults`](super::Harness::store_faults). The harness then opens
    /// its backend through a unique `mem://` name registered to the faulty store, so
    /// [`Harness::location`](super::Harness::location) is that name.
    ///
    /// # Examples
    ///
    /// ```
    /// use strata_testkit::faults::OpClass;
    /// use strata_testkit::harness::{Backend, Harness};
    ///
    /// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    ///     let harness = Harness::builder()
    ///         .backend(Backend::TempDir)
    ///         .replicas(0)
    ///         .store_faults(7)
    ///         .build()
    ///         .await?;
    ///     let faults = harness.store_faults().expect("built with store faults");
    ///     assert_eq!(faults.seed(), 7);
    ///     faults.set_error_rate(OpClass::Write, 0.2);
    ///     Ok(())
    /// }
    /// ```
    pub fn store_faults(mut self, seed: u64) -> Self {
        self.store_faults = Some(seed);
        self
    }

    /// Puts a [`FaultyConnector`](crate::faults::FaultyConnector) seeded with `seed`
    /// between the controller and every replica (default: none). It starts
    /// transparent; turn its knobs through
    /// [`Harness::transport_faults`](super::Harness::transport_faults). Every replica
    /// shares the one handle.
    ///
    /// # Examples
    ///
    /// ```
    /// use strata_testkit::harness::Harness;
    ///
    /// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
    ///     let mut harness = Harness::builder().transport_faults(3).build().await?;
    ///     harness.wait_for_replica(0).await?;
    ///     let faults = harness.transport_faults().expect("built with transport faults").clone();
    ///     faults.disconnect();
    ///     // The controller reconnects and replays its history.
    ///     harness.wait_for_replica(0).await?;
    ///     assert!(faults.counters().connections >= 1);
    ///     Ok(())
    /// }
    /// ```
    pub fn transport_faults(mut self, seed: u64) -> Self {
        self.transport_faults = Some(seed);
        self
    }

    /// Sets up the backend, starts the replicas and opens the controller.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Backend`] if the backend cannot be set up,
    /// [`HarnessError::Replica`] if a replica does not start, and
    /// [`HarnessError::Storage`] if the controller does not open.
    pub async fn build(self) -> Result<Harness> {
        let (location, dir) = location(&self.backend)?;
        let (location, faulty) = match self.store_faults {
            Some(seed) => {
                let faulty = FaultyLocation::register(&location, seed).await?;
                (faulty.url(), Some(faulty))
            }
            None => (location, None),
        };
        let settings = Settings {
            location,
            workers: self.workers,
            now: self.now,
            read_only: self.read_only,
            timeout: self.timeout,
            instance: self.instance,
            offset_limit: self.offset_limit,
            transport_faults: self.transport_faults.map(TransportFaultHandle::new),
            connectors: self.connectors,
        };
        let mut replicas = Vec::with_capacity(self.replicas);
        for index in 0..self.replicas {
            let mut slot = ReplicaSlot::new(index);
            slot.start(&settings).await?;
            replicas.push(slot);
        }
        let pending = Arc::new(Mutex::new(None));
        let controller = Harness::open_controller(&settings, &pending, &replicas, &[]).await?;
        Ok(Harness {
            settings,
            controller,
            replicas,
            pending,
            collections: Vec::new(),
            faulty,
            _dir: dir,
        })
    }
}

fn unique_name() -> String {
    format!("strata-harness-{}", uuid::Uuid::new_v4().simple())
}

/// The location URL for `backend`, and the directory to keep alive if any.
fn location(backend: &Backend) -> Result<(String, Option<tempfile::TempDir>)> {
    match backend {
        Backend::Memory => Ok((format!("mem://{}", unique_name()), None)),
        Backend::TempDir => {
            let dir = tempfile::Builder::new()
                .prefix("strata-harness-")
                .tempdir()
                .map_err(|e| HarnessError::Backend {
                    reason: format!("cannot create a temporary directory: {e}"),
                })?;
            Ok((format!("file://{}", dir.path().display()), Some(dir)))
        }
        #[cfg(feature = "s3")]
        Backend::S3FromEnv => {
            let bucket = std::env::var("STRATA_S3_TEST_BUCKET")
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| HarnessError::Backend {
                    reason: "STRATA_S3_TEST_BUCKET is not set (cargo xtask test sets it)".into(),
                })?;
            Ok((format!("s3://{bucket}/{}", unique_name()), None))
        }
    }
}

/// A faulty store registered under a unique `mem://` name for a harness's lifetime.
pub(crate) struct FaultyLocation {
    name: String,
    pub(crate) handle: FaultHandle,
}

impl FaultyLocation {
    /// Opens `location`, wraps its store (under its prefix) in a [`FaultyObjectStore`]
    /// and registers that under a fresh name.
    async fn register(location: &str, seed: u64) -> Result<FaultyLocation> {
        let opened = Location::open(location)
            .await
            .map_err(|e| HarnessError::Backend {
                reason: format!("cannot open {location}: {e}"),
            })?;
        let consensus = opened.consensus.clone();
        let inner: Arc<dyn ObjectStore> = if opened.prefix.as_ref().is_empty() {
            opened.store
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                opened.store,
                opened.prefix,
            ))
        };
        let store = FaultyObjectStore::new(inner, seed);
        let handle = store.handle();
        let name = format!("{}-faulty", unique_name());
        // The decorated location's consensus: on files the head files live beside the
        // store (outside the faults), which is where the file register keeps them.
        register_memory_location_as(&name, Arc::new(store), consensus);
        Ok(FaultyLocation { name, handle })
    }

    fn url(&self) -> String {
        format!("mem://{}", self.name)
    }
}

impl Drop for FaultyLocation {
    fn drop(&mut self) {
        let _ = unregister_memory_location(&self.name);
    }
}
