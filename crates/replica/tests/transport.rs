//! Exactly-once under crashes over instance-client's `local` transport: an [`Instance`]
//! drives [`ReplicaServer`]s on real persist shards (`mem://` and `file://`). Each
//! replica is aborted at a random point (connection severed, workers stopped) and a
//! fresh one is added under the same id, so the instance replays its reduced history.
#![cfg(all(feature = "server", feature = "persist"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::scenarios::{Contents, run_clean};
use common::*;
use strata_controller_api::{Antichain, GlobalId, InstanceId, LoadGenerator, ReplicaId, Timestamp};
use strata_instance_client::{
    Backoff, Instance, InstanceResponse, LocalConnector, RunIngestionCommand, StorageCommand,
};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;
use timely::PartialOrder;

const RESTARTS: u64 = 20;

fn open(url: &str) -> Arc<dyn Shards> {
    Arc::new(PersistShards::open(url).unwrap())
}

/// Checks every merged upper the instance reported so far is at or beyond the last one
/// of its collection, and records it.
fn absorb_uppers(
    instance: &mut Instance<Timestamp>,
    last: &mut std::collections::BTreeMap<GlobalId, Antichain<Timestamp>>,
) -> usize {
    let mut reports = 0;
    while let Some(response) = instance.try_recv() {
        if let InstanceResponse::FrontierUpper { id, upper } = response {
            if let Some(previous) = last.get(&id) {
                assert!(
                    PartialOrder::less_equal(previous, &upper),
                    "instance upper of {id} regressed: {previous:?} -> {upper:?}"
                );
            }
            last.insert(id, upper);
            reports += 1;
        }
    }
    reports
}

/// Runs `cmd` to `limit` through an instance while the replica is aborted and replaced
/// `RESTARTS` times; returns the final contents.
fn run_with_aborts(url: &str, cmd: &RunIngestionCommand<Timestamp>, limit: u64) -> Contents {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let backoff = Backoff {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(20),
    };
    let mut instance = Instance::new(InstanceId(1), 1, backoff);
    for command in [
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::InitializationComplete,
        StorageCommand::AllowWrites,
    ] {
        instance.send(command);
    }
    let watch = open(url);
    let replica = ReplicaId(1);
    let mut rng = Rng(0xc0ffee ^ url.len() as u64);
    let (mut uppers, mut reports, mut midpoints) = (Default::default(), 0, Vec::new());
    for _ in 0..RESTARTS {
        // Rounds of 1 to 4 ticks, so replays meet bindings of other sizes.
        let mut config = frozen_config(2, limit);
        config.max_ticks_per_round = 1 + rng.below(4);
        let server = ReplicaServer::start(config, open(url)).unwrap();
        let connector = LocalConnector::new(Arc::clone(&server) as _);
        instance
            .add_replica(replica, Arc::clone(&connector) as _)
            .unwrap();
        // A random point: after a random amount of progress, then a random delay, so
        // aborts land during startup, minting, generation and commits alike.
        let start = ingested_offset(watch.as_ref(), cmd);
        let target = (start + rng.below(limit / RESTARTS / 2)).min(limit);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while ingested_offset(watch.as_ref(), cmd) < target {
            assert!(std::time::Instant::now() < deadline, "no progress");
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_micros(rng.below(500)));
        // Abort: cut the connection, stop the workers, forget the replica (after taking
        // what it reported: the instance ignores a dropped replica's responses).
        connector.sever();
        server.shutdown();
        reports += absorb_uppers(&mut instance, &mut uppers);
        instance.drop_replica(replica).unwrap();
        midpoints.push(ingested_offset(watch.as_ref(), cmd));
    }
    let server = ReplicaServer::start(frozen_config(2, limit), open(url)).unwrap();
    let connector = LocalConnector::new(Arc::clone(&server) as _);
    instance.add_replica(replica, connector as _).unwrap();
    wait_for("final run", || {
        reports += absorb_uppers(&mut instance, &mut uppers);
        ingested_offset(watch.as_ref(), cmd) >= limit
    });
    server.shutdown();
    reports += absorb_uppers(&mut instance, &mut uppers);

    eprintln!("{url}: ingested offsets after each abort: {midpoints:?}");
    let mid_run = midpoints.iter().filter(|o| **o > 0 && **o < limit).count();
    assert!(
        mid_run >= RESTARTS as usize / 2,
        "too few aborts hit a running ingestion: {midpoints:?}"
    );
    assert!(
        midpoints.windows(2).all(|w| w[0] <= w[1]),
        "ingested offsets went backwards: {midpoints:?}"
    );
    assert!(reports > 0, "the instance reported no upper");
    let data = &cmd.description.source_exports;
    let done = data.keys().all(|id| {
        uppers
            .get(id)
            .is_some_and(|u| u.elements().first().is_some_and(|t| t.as_millis() > 0))
    });
    assert!(done, "no data upper reached the instance: {uppers:?}");
    contents(watch.as_ref(), cmd)
}

#[test]
fn exactly_once_over_local_transport_on_persist_memory_and_file() {
    const LIMIT: u64 = 600;
    let cmd = ingestion(4000, LoadGenerator::Auction, 17, 3);
    let clean_factory = || open("mem://replica-transport-clean");
    let clean = run_clean(&clean_factory, &cmd, 1, LIMIT);
    assert_eq!(clean, model(&cmd, LIMIT));

    let on_memory = run_with_aborts("mem://replica-transport-aborts", &cmd, LIMIT);
    assert_eq!(on_memory, clean, "memory contents differ from a clean run");

    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let on_file = run_with_aborts(&url, &cmd, LIMIT);
    assert_eq!(on_file, clean, "file contents differ from a clean run");
}
