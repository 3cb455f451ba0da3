//! Two OS processes x one worker on loopback, in timely cluster mode, sharing persist
//! shards in a `file://` location (`--features persist`).
//!
//! The parent test re-executes this test binary (`std::env::current_exe()`) with
//! [`PEER_ENV`] set, running only [`cluster_peer`], which then acts as process 1. The
//! child is killed and reaped when the parent's guard drops, and its exit status and
//! output are part of the parent's verdict.
//!
//! Ports: timely binds every process's own address itself, so a test cannot hand it a
//! bound listener. Process 1, the last one, only dials out (nobody dials the last
//! process), so it listens on `127.0.0.1:0`, which cannot collide. Process 0's port is
//! picked free and then bound by timely; if something else took it in between, timely
//! reports the address in use and the parent retries with a new port and a new child.

#![cfg(test)]
#![cfg(feature = "persist")]

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use strata_controller_api::LoadGenerator;
use strata_instance_client::testing::soak_factor;
use strata_instance_client::{RunIngestionCommand, StorageCommand};
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;
use strata_replica::{ClusterConfig, Replica, ReplicaConfig, ReplicaError, ResponseSink};

/// Set in the child: `<process index> <address 0> <address 1> <persist url>`.
const PEER_ENV: &str = "STRATA_REPLICA_CLUSTER_PEER";
const LIMIT: u64 = 120;
/// What process 1 listens on: any free port (no process dials the last one).
const LAST_PROCESS_ADDRESS: &str = "127.0.0.1:0";
/// How many fresh ports process 0 tries before the test gives up.
const PORT_ATTEMPTS: usize = 5;

fn ingestion_cmd() -> RunIngestionCommand<strata_controller_api::Timestamp> {
    ingestion(1000, LoadGenerator::Auction, 5, 6)
}

/// A port that was free a moment ago (someone may take it before timely binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `common::start` that returns the replica's start error instead of panicking.
fn try_start(
    config: ReplicaConfig,
    shards: Arc<dyn Shards>,
) -> Result<(Replica, Responses), ReplicaError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let sink: Arc<dyn ResponseSink> = Arc::new(Mutex::new(tx));
    Ok((Replica::start(config, shards, sink)?, rx))
}

/// Starts process `process` of the cluster; returns once timely's networking is up.
fn start_process(
    process: usize,
    addresses: Vec<String>,
    url: &str,
) -> Result<(Replica, Responses), ReplicaError> {
    let shards: Arc<dyn Shards> = Arc::new(PersistShards::open(url).unwrap());
    let mut config = frozen_config(1, LIMIT);
    config.cluster = Some(ClusterConfig { process, addresses });
    try_start(config, shards)
}

/// Runs a started process until the ingestion reaches [`LIMIT`]; returns the dataflow
/// starts it counted.
fn run_process(mut replica: Replica, url: &str) -> u64 {
    let cmd = ingestion_cmd();
    let watch: Arc<dyn Shards> = Arc::new(PersistShards::open(url).unwrap());
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("cluster ingestion", || {
        ingested_offset(watch.as_ref(), &cmd) >= LIMIT
    });
    let starts = replica.dataflow_starts();
    replica.shutdown();
    starts
}

/// The child's half: a no-op unless [`PEER_ENV`] is set.
#[test]
fn cluster_peer() {
    let Ok(spec) = std::env::var(PEER_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let [process, a0, a1, url] = parts.as_slice() else {
        panic!("bad {PEER_ENV}: {spec:?}");
    };
    let (replica, _rx) = start_process(
        process.parse().unwrap(),
        vec![(*a0).to_owned(), (*a1).to_owned()],
        url,
    )
    .unwrap();
    let starts = run_process(replica, url);
    // Worker 0 (in process 0) counts dataflow starts; this process runs the same one.
    assert_eq!(starts, 0, "process 1 counted dataflow starts");
}

/// Kills and reaps the child when dropped, whatever happened in the parent.
struct ChildGuard(Arc<Mutex<Child>>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let mut child = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl ChildGuard {
    /// Waits for the child to exit (a hang guard, not a speed assertion).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.0.lock().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cluster peer process hung");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Process 0's timely start blocks until process 1 dials in, so a child that dies
    /// first would hang the parent: until `started` is set, a watchdog thread ends the
    /// test process with the child's log if the child exits.
    fn watch_startup(&self, started: Arc<AtomicBool>, log: &Path) {
        let child = Arc::clone(&self.0);
        let log = log.to_owned();
        std::thread::spawn(move || {
            while !started.load(Ordering::SeqCst) {
                let status = child.lock().unwrap().try_wait().ok().flatten();
                if let Some(status) = status {
                    if started.load(Ordering::SeqCst) {
                        return;
                    }
                    let output = std::fs::read_to_string(&log).unwrap_or_default();
                    // Straight to stderr: libtest captures `eprintln!` and would drop it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "cluster peer exited ({status}) before process 0 started:\n{output}"
                    );
                    std::process::exit(101);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
}

fn spawn_peer(addresses: &[String], url: &str, log: &Path) -> ChildGuard {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["cluster_peer", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            PEER_ENV,
            format!("1 {} {} {url}", addresses[0], addresses[1]),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    ChildGuard(Arc::new(Mutex::new(child)))
}

/// Starts the child as process 1 and this process as process 0, on a fresh port for
/// process 0 until one is still free when timely binds it.
fn start_cluster(url: &str, log: &Path) -> (ChildGuard, Replica, Responses) {
    for attempt in 1..=PORT_ATTEMPTS {
        let addresses = vec![
            format!("127.0.0.1:{}", free_port()),
            LAST_PROCESS_ADDRESS.to_owned(),
        ];
        let child = spawn_peer(&addresses, url, log);
        let started = Arc::new(AtomicBool::new(false));
        child.watch_startup(Arc::clone(&started), log);
        let result = start_process(0, addresses.clone(), url);
        started.store(true, Ordering::SeqCst);
        match result {
            Ok((replica, responses)) => return (child, replica, responses),
            Err(ReplicaError::Timely { reason }) if reason.contains("in use") => {
                eprintln!("attempt {attempt}: {} was taken ({reason})", addresses[0]);
            }
            Err(e) => panic!("process 0 did not start: {e}"),
        }
    }
    panic!("no free port for process 0 in {PORT_ATTEMPTS} attempts");
}

#[test]
fn two_processes_ingest_correct_contents() {
    if std::env::var_os(PEER_ENV).is_some() {
        return; // the child runs only `cluster_peer`
    }
    // Under `cargo xtask test --soak`, many clusters in a row.
    for _ in 0..soak_factor() {
        one_cluster_run();
    }
}

/// Runs the two-process cluster once, on fresh ports and a fresh persist location.
fn one_cluster_run() {
    let cmd = ingestion_cmd();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("persist").display());
    std::fs::create_dir_all(dir.path().join("persist")).unwrap();
    let log = dir.path().join("peer.log");
    let (mut child, replica, _responses) = start_cluster(&url, &log);
    let starts = run_process(replica, &url);
    let status = child.wait();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "cluster peer process failed ({status}):\n{output}"
    );
    // timely's connection retries may interleave with libtest's "test ... ok" line, so
    // look for the summary line instead.
    assert!(
        output.contains("test result: ok. 1 passed"),
        "cluster peer did not run its test:\n{output}"
    );
    assert_eq!(starts, 1, "process 0 counted the wrong dataflow starts");
    let shards = PersistShards::open(&url).unwrap();
    register(&shards, &cmd);
    assert_eq!(contents(&shards, &cmd), model(&cmd, LIMIT));
}
