//! Replica hosts: a [`ReplicaServer`] per replica, started and stopped by the driver
//! outside the simulation, served over gRPC by the software of its turmoil host.
//!
//! The server's timely workers and persist adapter run on real threads (they block,
//! and turmoil's runtimes are single-threaded and paused), so they live in a slot the
//! host's software reads when it (re)starts: a crash stops the software and the
//! server, a restart starts a new server and bounces the host.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_controller_api::Timestamp;
use strata_instance_client::grpc::{self, ServerConfig};
use strata_instance_client::transport::{EpochFence, ReplicaHandler};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::persist::PersistShards;
use strata_replica::{Clock, ReplicaConfig};

use super::SimError;
use super::net::{Links, REPLICA_PORT};
use crate::harness::ManualClock;

/// A running replica process: its server and its epoch fence.
#[derive(Clone)]
struct Running {
    server: Arc<ReplicaServer>,
    fence: Arc<EpochFence>,
}

type Slot = Arc<Mutex<Option<Running>>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Running>> {
    match slot.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What every replica process of a simulation is started with.
#[derive(Clone)]
pub(crate) struct ReplicaSettings {
    pub(crate) location: String,
    pub(crate) workers: usize,
    pub(crate) clock: ManualClock,
}

/// One replica: its host name and, while it runs, its process.
pub(crate) struct ReplicaHost {
    index: usize,
    slot: Slot,
    starts: u64,
}

/// The turmoil host name of replica `index`.
pub(crate) fn host_name(index: usize) -> String {
    format!("replica-{index}")
}

/// The gRPC address the controller connects replica `index` at.
pub(crate) fn replica_addr(index: usize) -> String {
    format!("http://{}:{REPLICA_PORT}", host_name(index))
}

impl ReplicaHost {
    pub(crate) fn new(index: usize) -> ReplicaHost {
        ReplicaHost {
            index,
            slot: Arc::new(Mutex::new(None)),
            starts: 0,
        }
    }

    pub(crate) fn name(&self) -> String {
        host_name(self.index)
    }

    pub(crate) fn starts(&self) -> u64 {
        self.starts
    }

    pub(crate) fn is_running(&self) -> bool {
        lock(&self.slot).is_some()
    }

    /// A probe of the highest controller epoch the running process admitted (`None`
    /// while it is down), for the controller's side of the simulation.
    pub(crate) fn fence_probe(&self) -> FenceProbe {
        FenceProbe(Arc::clone(&self.slot))
    }

    /// Starts a replica process on the simulation's storage. Blocks (threads start
    /// and shards open): call it outside any runtime.
    pub(crate) fn start(&mut self, settings: &ReplicaSettings) -> Result<(), SimError> {
        self.stop();
        let replica_error = |reason: String| SimError::Setup {
            reason: format!("starting replica {}: {reason}", self.index),
        };
        let shards =
            PersistShards::open(&settings.location).map_err(|e| replica_error(e.to_string()))?;
        let now = settings.clock.clone();
        let clock: Clock = Arc::new(move || Timestamp::new(now.now()));
        let config = ReplicaConfig {
            workers: settings.workers,
            clock,
            retry_backoff: Duration::from_millis(20),
            ..ReplicaConfig::default()
        };
        let server = ReplicaServer::start(config, Arc::new(shards))
            .map_err(|e| replica_error(e.to_string()))?;
        *lock(&self.slot) = Some(Running {
            server,
            fence: EpochFence::new(),
        });
        self.starts += 1;
        Ok(())
    }

    /// Stops the running process, if any: its workers stop and it writes nothing
    /// more. Blocks; call it outside any runtime.
    pub(crate) fn stop(&mut self) {
        let running = lock(&self.slot).take();
        if let Some(running) = running {
            running.server.shutdown();
        }
    }

    /// The software of the replica's turmoil host: serves the running process over
    /// gRPC on [`REPLICA_PORT`] until the host crashes; ends at once if no process
    /// runs.
    pub(crate) fn software(
        &self,
        links: &Links,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = turmoil::Result>>> + 'static {
        let (slot, links, name) = (Arc::clone(&self.slot), links.clone(), self.name());
        move || {
            let running = lock(&slot).clone();
            let (links, name) = (links.clone(), name.clone());
            Box::pin(async move {
                let Some(running) = running else {
                    return Ok(());
                };
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", REPLICA_PORT)).await?;
                let incoming = links.incoming(name, listener);
                let handler = running.server as Arc<dyn ReplicaHandler<Timestamp>>;
                grpc::serve(
                    handler,
                    running.fence,
                    ServerConfig::default(),
                    incoming,
                    futures::future::pending(),
                )
                .await?;
                Ok(())
            })
        }
    }
}

impl Drop for ReplicaHost {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads the epoch fence of whichever process of one replica runs now.
#[derive(Clone)]
pub(crate) struct FenceProbe(Slot);

impl FenceProbe {
    /// The highest epoch the running process admitted, or `None` while it is down.
    pub(crate) fn admitted(&self) -> Option<u64> {
        lock(&self.0).as_ref().map(|r| r.fence.highest())
    }
}
