//! In-process replicas behind stable connectors, so a replica can crash and come back
//! without the controller noticing anything but a dropped connection.
//!
//! Each replica index has one [`SlotConnector`] for the life of the harness; the
//! controller's instance holds it. Killing a replica shuts its [`ReplicaServer`] down,
//! severs its connections and empties the slot (connects are refused); restarting
//! starts a fresh server on the same persist location and fills the slot, and the
//! instance's reconnect replays its reduced command history to it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use strata_controller_api::Timestamp;
use strata_instance_client::LocalConnector;
use strata_instance_client::transport::{
    ReplicaConnection, ReplicaConnector, ReplicaHandler, TransportError,
};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::persist::PersistShards;
use strata_replica::{Clock, ReplicaConfig};

use super::{HarnessError, Settings};

/// The connector the controller holds for one replica index.
pub(crate) struct SlotConnector {
    index: usize,
    current: Mutex<Option<Arc<LocalConnector<Timestamp>>>>,
}

impl SlotConnector {
    fn current(&self) -> Option<Arc<LocalConnector<Timestamp>>> {
        match self.current.lock() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The highest controller epoch the running replica admitted, if it runs.
    pub(crate) fn fence_epoch(&self) -> Option<u64> {
        self.current().map(|local| local.fence().highest())
    }

    fn replace(&self, next: Option<Arc<LocalConnector<Timestamp>>>) {
        match self.current.lock() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

#[async_trait]
impl ReplicaConnector<Timestamp> for SlotConnector {
    async fn connect(&self) -> Result<ReplicaConnection<Timestamp>, TransportError> {
        match self.current() {
            Some(local) => local.connect().await,
            None => Err(TransportError::Connect {
                target: self.target(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "the replica is killed",
                )),
            }),
        }
    }

    fn target(&self) -> String {
        format!("harness replica {}", self.index)
    }
}

/// One replica index: its connector and, while it runs, its server.
pub(crate) struct ReplicaSlot {
    pub(crate) connector: Arc<SlotConnector>,
    server: Option<Arc<ReplicaServer>>,
    starts: u64,
}

impl ReplicaSlot {
    /// An empty slot (the replica is not running).
    pub(crate) fn new(index: usize) -> ReplicaSlot {
        ReplicaSlot {
            connector: Arc::new(SlotConnector {
                index,
                current: Mutex::new(None),
            }),
            server: None,
            starts: 0,
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub(crate) fn starts(&self) -> u64 {
        self.starts
    }

    /// Starts a server with the harness's workers, clock and offset limit on its
    /// persist location.
    pub(crate) async fn start(&mut self, settings: &Settings) -> Result<(), HarnessError> {
        let index = self.connector.index;
        let now = Arc::clone(&settings.now);
        let clock: Clock = Arc::new(move || Timestamp::new(now()));
        let (url, workers, offset_limit, connectors) = (
            settings.location.clone(),
            settings.workers,
            settings.offset_limit,
            settings.connectors.clone(),
        );
        // Opening shards and starting workers block; persist's adapter runs its own
        // runtime, which must not start inside this one's tasks.
        let started = tokio::task::spawn_blocking(move || {
            let shards = PersistShards::open(&url).map_err(|e| e.to_string())?;
            let config = ReplicaConfig {
                workers,
                clock,
                offset_limit,
                connectors,
                ..ReplicaConfig::default()
            };
            ReplicaServer::start(config, Arc::new(shards)).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| HarnessError::Replica {
            index,
            reason: format!("the start task failed: {e}"),
        })?
        .map_err(|reason| HarnessError::Replica { index, reason })?;
        // The server applies commands on its own plain thread, so the local transport's
        // tasks never block on persist's runtime.
        let handler = Arc::clone(&started) as Arc<dyn ReplicaHandler<Timestamp>>;
        let local = LocalConnector::new(handler);
        self.connector.replace(Some(local));
        self.server = Some(started);
        self.starts += 1;
        Ok(())
    }

    /// Crashes the replica: connections are cut, new ones refused, workers stopped.
    pub(crate) async fn kill(&mut self) {
        if let Some(local) = self.connector.current() {
            local.set_available(false);
            local.sever();
        }
        self.connector.replace(None);
        if let Some(server) = self.server.take() {
            // Stopping joins worker threads.
            let _ = tokio::task::spawn_blocking(move || server.shutdown()).await;
        }
    }
}
