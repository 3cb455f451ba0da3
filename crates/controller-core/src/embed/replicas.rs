//! [`InProcessReplicas`]: a connector factory that starts each replica the controller
//! connects as a `ReplicaServer` in this process.

use std::sync::{Arc, Mutex, PoisonError};

use strata_controller_api::{ReplicaConfig, StorageError, Timestamp};
use strata_instance_client::{LocalConnector, ReplicaConnector, ReplicaHandler};
use strata_replica::ReplicaConfig as ServerConfig;
use strata_replica::server::{OffRuntime, ReplicaServer};
use strata_replica::shard::persist::PersistShards;

use crate::ConnectorFactory;

/// Replicas in the host's process, each writing to the persist location it was made
/// for. Give [`InProcessReplicas::connector_factory`] to
/// [`ControllerConfig::connector_factory`](crate::ControllerConfig::connector_factory)
/// and connect replicas with `ReplicaLocation::InProcess`; call
/// [`InProcessReplicas::shutdown`] after closing the controller.
///
/// A replica is started on the first connection to it and served on a thread of its
/// own: the replica's persist adapter blocks on a runtime of its own, which must not
/// run on one of the host's async tasks.
#[derive(Clone)]
pub struct InProcessReplicas {
    location: String,
    config: Arc<dyn Fn() -> ServerConfig + Send + Sync>,
    started: Arc<Mutex<Vec<Arc<ReplicaServer>>>>,
}

impl std::fmt::Debug for InProcessReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessReplicas")
            .field("location", &self.location)
            .field("started", &self.started().len())
            .finish_non_exhaustive()
    }
}

impl InProcessReplicas {
    /// Replicas with the default configuration (one timely worker) on `location`, the
    /// controller's persist location.
    pub fn new(location: &str) -> Self {
        Self::with_config(location, ServerConfig::default)
    }

    /// Replicas whose configuration `config` makes, one call per replica started.
    pub fn with_config(
        location: &str,
        config: impl Fn() -> ServerConfig + Send + Sync + 'static,
    ) -> Self {
        InProcessReplicas {
            location: location.to_owned(),
            config: Arc::new(config),
            started: Arc::default(),
        }
    }

    /// The factory for `ControllerConfig::connector_factory`. Each connection starts a
    /// fresh replica; one that cannot start (a location it cannot open) is a
    /// [`StorageError::InvalidUsage`] naming the cause, and the controller retries.
    pub fn connector_factory(&self) -> ConnectorFactory<Timestamp> {
        let this = self.clone();
        Arc::new(move |_: &ReplicaConfig| this.start())
    }

    /// The replicas started so far.
    pub fn started(&self) -> Vec<Arc<ReplicaServer>> {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops every replica started so far: their dataflows end and their threads exit.
    pub fn shutdown(&self) {
        for server in self.started() {
            server.shutdown();
        }
    }

    fn start(&self) -> Result<Arc<dyn ReplicaConnector<Timestamp>>, StorageError> {
        let (location, config) = (self.location.clone(), (self.config)());
        let server = std::thread::spawn(move || {
            let shards = PersistShards::open(&location)
                .map_err(|e| format!("an in-process replica cannot open {location}: {e}"))?;
            ReplicaServer::start(config, Arc::new(shards))
                .map_err(|e| format!("an in-process replica did not start: {e}"))
        })
        .join()
        .map_err(|_| {
            StorageError::InvalidUsage("an in-process replica panicked while starting".into())
        })?
        .map_err(StorageError::InvalidUsage)?;
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&server));
        let handler = Arc::new(OffRuntime::new(server)) as Arc<dyn ReplicaHandler<Timestamp>>;
        Ok(LocalConnector::new(handler))
    }
}
