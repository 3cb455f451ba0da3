//! The demo's replicas: in-process `ReplicaServer`s over the local transport, or
//! `strata replica` child processes over gRPC.
//!
//! Child processes belong to a [`ChildReplicas`] guard: its `Drop` stops every child
//! (SIGTERM, a short grace, then SIGKILL) and waits for it, so no replica outlives the
//! demo, whether it ends normally, with an error, on Ctrl-C or by a panic.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use async_trait::async_trait;
use strata_controller_api::{ReplicaConfig, ReplicaLocation, StorageError, Timestamp};
use strata_controller_core::ConnectorFactory;
use strata_instance_client::LocalConnector;
use strata_instance_client::grpc::GrpcConnector;
use strata_instance_client::transport::{
    CommandReceiver, Hello, ReplicaConnector, ReplicaHandler, ResponseSender,
};
use strata_introspection::ReplicaMetrics;
use strata_replica::server::ReplicaServer;
use strata_replica::shard::persist::PersistShards;

use crate::metered::{Metered, Observed};

/// How long a child may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The stderr lines of a child kept for error messages.
const KEPT_LINES: usize = 20;

/// Serves each connection of an in-process [`ReplicaServer`] on a plain thread: the
/// server's persist adapter blocks on a runtime of its own, which must not happen on
/// a task of the controller's runtime.
struct ThreadedHandler {
    server: Arc<ReplicaServer>,
}

#[async_trait]
impl ReplicaHandler<Timestamp> for ThreadedHandler {
    async fn serve(
        &self,
        hello: Hello,
        commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let server = Arc::clone(&self.server);
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("demo-replica-conn".into())
            .spawn(move || {
                futures::executor::block_on(server.serve(hello, commands, responses));
                let _ = done.send(());
            });
        if spawned.is_ok() {
            let _ = finished.await;
        }
    }
}

/// The in-process replica servers a connector factory started, to stop at the end.
pub(crate) type Servers = Arc<Mutex<Vec<Arc<ReplicaServer>>>>;

/// A connector factory for both transports: an in-process location starts a
/// [`ReplicaServer`] on `persist`, a gRPC location dials the address.
pub(crate) fn connector_factory(
    persist: String,
    metrics: ReplicaMetrics,
    servers: Servers,
) -> ConnectorFactory<Timestamp> {
    Arc::new(
        move |config: &ReplicaConfig| -> Result<_, StorageError<Timestamp>> {
            match &config.location {
                ReplicaLocation::InProcess { workers } => {
                    let (url, workers) = (persist.clone(), *workers);
                    let observer = Arc::new(Observed(metrics.clone()));
                    // Opening persist shards blocks on their own runtime: do it off this one.
                    let started = std::thread::spawn(move || {
                        let shards = PersistShards::open(&url).map_err(|e| e.to_string())?;
                        let config = strata_replica::ReplicaConfig {
                            workers,
                            observer: Some(observer),
                            ..strata_replica::ReplicaConfig::default()
                        };
                        ReplicaServer::start(config, Arc::new(shards)).map_err(|e| e.to_string())
                    })
                    .join()
                    .map_err(|_| {
                        StorageError::InvalidUsage("the replica start thread panicked".into())
                    })?
                    .map_err(|e| {
                        StorageError::InvalidUsage(format!("cannot start a replica: {e}"))
                    })?;
                    if let Ok(mut list) = servers.lock() {
                        list.push(Arc::clone(&started));
                    }
                    let handler = Metered {
                        inner: Arc::new(ThreadedHandler { server: started }),
                        metrics: metrics.clone(),
                    };
                    let connector: Arc<dyn ReplicaConnector<Timestamp>> = LocalConnector::new(
                        Arc::new(handler) as Arc<dyn ReplicaHandler<Timestamp>>,
                    );
                    Ok(connector)
                }
                ReplicaLocation::Grpc { addr, .. } => GrpcConnector::new(addr, None)
                    .map(|c| -> Arc<dyn ReplicaConnector<Timestamp>> { Arc::new(c) })
                    .map_err(|e| {
                        StorageError::InvalidUsage(format!("cannot reach replica {addr}: {e}"))
                    }),
            }
        },
    )
}

/// Stops in-process replica servers (joining their workers) off the async runtime.
pub(crate) async fn stop_servers(servers: &Servers) {
    let list: Vec<Arc<ReplicaServer>> = match servers.lock() {
        Ok(mut list) => list.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for server in list {
        let _ = tokio::task::spawn_blocking(move || server.shutdown()).await;
    }
}

/// One `strata replica` child.
struct ChildReplica {
    child: Child,
    addr: String,
    /// The last lines it printed on stderr.
    lines: Arc<Mutex<VecDeque<String>>>,
}

/// Every child replica of the demo; dropping it stops and reaps them all.
#[derive(Default)]
pub(crate) struct ChildReplicas {
    children: Vec<ChildReplica>,
}

impl ChildReplicas {
    /// Starts `count` children of this executable, `strata replica --listen
    /// 127.0.0.1:0 --persist URL --workers W`, and waits until each listens.
    pub(crate) fn start(&mut self, count: u16, persist: &str, workers: u16) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the strata executable")?;
        for index in 0..count {
            let child = Command::new(&exe)
                .args(["replica", "--listen", "127.0.0.1:0", "--persist", persist])
                .args(["--workers", &workers.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start replica process {index}"))?;
            self.adopt(index, child)?;
        }
        Ok(())
    }

    /// Takes ownership of `child` first (so it is reaped whatever happens), then
    /// reads its stderr until the listening line.
    fn adopt(&mut self, index: u16, mut child: Child) -> anyhow::Result<()> {
        let stderr = child.stderr.take();
        let lines: Arc<Mutex<VecDeque<String>>> = Arc::default();
        self.children.push(ChildReplica {
            child,
            addr: String::new(),
            lines: Arc::clone(&lines),
        });
        let stderr = stderr.ok_or_else(|| anyhow!("replica process {index} has no stderr"))?;
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
        // Drains stderr for the child's whole life, so its pipe never fills up.
        std::thread::Builder::new()
            .name(format!("demo-replica-{index}-stderr"))
            .spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        sent = addr_tx.send(addr.to_owned()).is_ok();
                    }
                    if let Ok(mut kept) = lines.lock() {
                        if kept.len() == KEPT_LINES {
                            kept.pop_front();
                        }
                        kept.push_back(line);
                    }
                }
            })
            .context("cannot start a thread to read a replica's output")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match addr_rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(addr) => {
                    if let Some(last) = self.children.last_mut() {
                        last.addr = addr;
                    }
                    return Ok(());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    self.check_alive()?;
                }
                Err(_) => {
                    self.check_alive()?;
                    bail!(
                        "replica process {index} did not start listening within {}s",
                        START_TIMEOUT.as_secs()
                    );
                }
            }
        }
    }

    /// The gRPC addresses of the children, in start order.
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.children.iter().map(|c| c.addr.clone()).collect()
    }

    /// The process ids of the children.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.child.id()).collect()
    }

    /// Fails with the child's last output if any child has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        for (index, replica) in self.children.iter_mut().enumerate() {
            if let Ok(Some(status)) = replica.child.try_wait() {
                let said = replica
                    .lines
                    .lock()
                    .map(|l| l.iter().cloned().collect::<Vec<_>>().join(" / "))
                    .unwrap_or_default();
                bail!("replica process {index} exited ({status}): {said}");
            }
        }
        Ok(())
    }

    /// Stops every child: SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; reaps
    /// each. Returns how many stopped on SIGTERM.
    pub(crate) fn stop(&mut self) -> usize {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        for replica in &mut self.children {
            if let Ok(None) = replica.child.try_wait()
                && let Ok(pid) = i32::try_from(replica.child.id())
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut clean = 0;
        for mut replica in self.children.drain(..) {
            loop {
                match replica.child.try_wait() {
                    Ok(Some(status)) => {
                        clean += usize::from(status.success());
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = replica.child.kill();
                        let _ = replica.child.wait();
                        break;
                    }
                }
            }
        }
        clean
    }
}

impl Drop for ChildReplicas {
    fn drop(&mut self) {
        self.stop();
    }
}
