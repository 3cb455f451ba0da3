//! Two OS processes x one worker on loopback, in timely cluster mode, sharing persist
//! shards in a `file://` location (`--features persist`).
//!
//! The parent test re-executes this test binary (`std::env::current_exe()`) with
//! [`PEER_ENV`] set, running only [`cluster_peer`], which then acts as process 1. The
//! child is killed and reaped when the parent's guard drops, and its exit status and
//! output are part of the parent's verdict.
#![cfg(feature = "persist")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use strata_controller_api::LoadGenerator;
use strata_instance_client::{RunIngestionCommand, StorageCommand};
use strata_replica::ClusterConfig;
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;

/// Set in the child: `<process index> <address 0> <address 1> <persist url>`.
const PEER_ENV: &str = "STRATA_REPLICA_CLUSTER_PEER";
const LIMIT: u64 = 120;

fn ingestion_cmd() -> RunIngestionCommand<strata_controller_api::Timestamp> {
    ingestion(1000, LoadGenerator::Auction, 5, 6)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs process `process` of the cluster until the ingestion reaches [`LIMIT`];
/// returns the dataflow starts it counted.
fn run_process(process: usize, addresses: Vec<String>, url: &str) -> u64 {
    let cmd = ingestion_cmd();
    let shards: Arc<dyn Shards> = Arc::new(PersistShards::open(url).unwrap());
    let watch: Arc<dyn Shards> = Arc::new(PersistShards::open(url).unwrap());
    let mut config = frozen_config(1, LIMIT);
    config.cluster = Some(ClusterConfig { process, addresses });
    let (mut replica, _rx) = start(config, shards);
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
    let starts = run_process(
        process.parse().unwrap(),
        vec![(*a0).to_owned(), (*a1).to_owned()],
        url,
    );
    // Worker 0 (in process 0) counts dataflow starts; this process runs the same one.
    assert_eq!(starts, 0, "process 1 counted dataflow starts");
}

/// Kills and reaps the child when dropped, whatever happened in the parent.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Waits for the child to exit (a hang guard, not a speed assertion).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "cluster peer process hung");
            std::thread::sleep(Duration::from_millis(10));
        }
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
    ChildGuard(child)
}

#[test]
fn two_processes_ingest_correct_contents() {
    if std::env::var_os(PEER_ENV).is_some() {
        return; // the child runs only `cluster_peer`
    }
    let cmd = ingestion_cmd();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("persist").display());
    std::fs::create_dir_all(dir.path().join("persist")).unwrap();
    let log = dir.path().join("peer.log");
    let addresses = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let mut child = spawn_peer(&addresses, &url, &log);
    let starts = run_process(0, addresses, &url);
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
