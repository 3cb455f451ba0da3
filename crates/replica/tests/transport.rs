//! Exactly-once under crashes over instance-client's `local` transport: an [`Instance`]
//! drives [`ReplicaServer`]s on real persist shards (`mem://` and `file://`). Each
//! replica is aborted at a random point (connection severed, workers stopped) and a
//! fresh one is added under the same id, so the instance replays its reduced history.
//!
//! A tap between the transport and the instance records every response exactly as the
//! replicas sent it, before the instance joins uppers: the uppers the replicas report
//! to the controller are checked for monotonicity there, across every connection.

#![cfg(test)]
#![cfg(all(feature = "server", feature = "persist"))]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::scenarios::{Contents, assert_monotone, run_clean};
use common::*;
use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{Antichain, GlobalId, InstanceId, LoadGenerator, ReplicaId, Timestamp};
use strata_instance_client::testing::soak_factor;
use strata_instance_client::{
    Instance, LocalConnector, ReplicaConnection, ReplicaConnector, ReplicaResponse,
    RunIngestionCommand, StorageCommand, TransportError,
};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;
use timely::PartialOrder;

const RESTARTS: u64 = 20;
/// Aborts that must land while the shards are short of the final offset.
const MID_RUN_ABORTS: usize = 20;

/// Every connection's responses, in the order the connections were opened.
type Wire = Arc<Mutex<Vec<Vec<ReplicaResponse<Timestamp>>>>>;

/// A connector that records every response a replica sends on each connection before
/// passing it on to the instance.
struct Tap {
    inner: Arc<dyn ReplicaConnector<Timestamp>>,
    wire: Wire,
}

#[async_trait::async_trait]
impl ReplicaConnector<Timestamp> for Tap {
    async fn connect(&self) -> Result<ReplicaConnection<Timestamp>, TransportError> {
        let ReplicaConnection {
            commands,
            mut responses,
        } = self.inner.connect().await?;
        let index = {
            let mut wire = self.wire.lock().unwrap();
            wire.push(Vec::new());
            wire.len() - 1
        };
        let wire = Arc::clone(&self.wire);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(response) = responses.recv().await {
                wire.lock().unwrap()[index].push(response.clone());
                if tx.send(response).is_err() {
                    return;
                }
            }
        });
        Ok(ReplicaConnection {
            commands,
            responses: rx,
        })
    }

    fn target(&self) -> String {
        self.inner.target()
    }
}

fn open(url: &str) -> Arc<dyn Shards> {
    Arc::new(PersistShards::open(url).unwrap())
}

/// Records the merged uppers the instance reported so far (checking they never regress,
/// which the instance's join guarantees; the raw reports are checked on the [`Tap`]).
fn absorb_uppers(
    instance: &mut Instance<Timestamp>,
    last: &mut std::collections::BTreeMap<GlobalId, Antichain<Timestamp>>,
) -> usize {
    let mut reports = 0;
    while let Some(response) = instance.try_recv() {
        let Some(uppers) = response.merged_uppers() else {
            continue;
        };
        for (id, upper) in uppers.iter().cloned() {
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
/// `RESTARTS` times, at points drawn from `seed`; returns the final contents.
fn run_with_aborts(
    url: &str,
    cmd: &RunIngestionCommand<Timestamp>,
    limit: u64,
    seed: u64,
) -> Contents {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let backoff = BackoffConfig::doubling(Duration::from_millis(1), Duration::from_millis(20));
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
    let mut rng = Rng(0xc0ffee ^ url.len() as u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (mut uppers, mut reports, mut midpoints) = (Default::default(), 0, Vec::new());
    let wire = Wire::default();
    for _ in 0..RESTARTS {
        // Rounds of 1 to 4 ticks, so replays meet bindings of other sizes.
        let mut config = frozen_config(2, limit);
        config.max_ticks_per_round = 1 + rng.below(4);
        let server = ReplicaServer::start(config, open(url)).unwrap();
        let connector = LocalConnector::new(Arc::clone(&server) as _);
        let tap = Tap {
            inner: Arc::clone(&connector) as _,
            wire: Arc::clone(&wire),
        };
        instance.add_replica(replica, Arc::new(tap)).unwrap();
        // A random point: after a random amount of progress, then a random delay, so
        // aborts land during startup, minting, generation and commits alike.
        let start = ingested_offset(watch.as_ref(), cmd);
        let target = (start + rng.below(15)).min(limit);
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
        // Offsets only grow: one read after the abort bounds the one at the abort.
        midpoints.push((start, ingested_offset(watch.as_ref(), cmd)));
    }
    // The last replica catches up in larger rounds.
    let mut config = frozen_config(2, limit);
    config.max_ticks_per_round = 8;
    let server = ReplicaServer::start(config, open(url)).unwrap();
    let tap = Tap {
        inner: LocalConnector::new(Arc::clone(&server) as _),
        wire: Arc::clone(&wire),
    };
    instance.add_replica(replica, Arc::new(tap)).unwrap();
    wait_for("final run", || {
        reports += absorb_uppers(&mut instance, &mut uppers);
        ingested_offset(watch.as_ref(), cmd) >= limit
    });
    server.shutdown();
    reports += absorb_uppers(&mut instance, &mut uppers);

    // An abort lands mid-run when the shards are not yet at the final offset.
    let mid_run = midpoints.iter().filter(|(_, o)| *o < limit).count();
    let after_progress = midpoints.iter().filter(|(s, o)| s < o).count();
    eprintln!(
        "{url}: ingested offsets (at start, after the abort) of each replica: {midpoints:?}; \
         {mid_run} of {RESTARTS} aborts mid-run, {after_progress} after the replica ingested"
    );
    assert!(
        mid_run >= MID_RUN_ABORTS,
        "only {mid_run} aborts hit a running ingestion: {midpoints:?}"
    );
    assert!(
        midpoints.windows(2).all(|w| w[0].1 <= w[1].1),
        "ingested offsets went backwards: {midpoints:?}"
    );
    assert!(reports > 0, "the instance reported no upper");
    // The raw reports, connection by connection (connections to one replica id never
    // overlap), are monotone per collection, and include every data collection.
    let raw: Vec<ReplicaResponse<Timestamp>> = wire.lock().unwrap().concat();
    let connections = wire.lock().unwrap().len();
    let raw_reports = assert_monotone(&raw);
    eprintln!("{url}: {raw_reports} raw upper reports on {connections} connections");
    // Every replica that ingested before its abort, and the final one, connected; one
    // aborted before it made progress may have been cut off before it connected at all.
    assert!(
        connections > after_progress,
        "{connections} connections for {after_progress} replicas that ingested, and the last"
    );
    let reported = |id: &GlobalId| {
        raw.iter().any(|r| {
            let ReplicaResponse::FrontierUppers(uppers) = r else {
                return false;
            };
            uppers.iter().any(|(i, upper)| {
                i == id && upper.elements().first().is_some_and(|t| t.as_millis() > 0)
            })
        })
    };
    assert!(
        cmd.description.source_exports.keys().all(reported),
        "a data collection's upper was never reported"
    );
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
    // Long enough that 20 aborts, each after a little progress, end well short of it.
    const LIMIT: u64 = 1200;
    let cmd = ingestion(4000, LoadGenerator::Auction, 17, 3);
    let clean_factory = || open("mem://replica-transport-clean");
    let clean = run_clean(&clean_factory, &cmd, 1, LIMIT);
    assert_eq!(clean, model(&cmd, LIMIT));

    // Under `cargo xtask test --soak`, many rounds, each with other abort points and
    // fresh locations.
    for round in 0..u64::from(soak_factor()) {
        let memory = format!("mem://replica-transport-aborts-{round}");
        let on_memory = run_with_aborts(&memory, &cmd, LIMIT, round);
        assert_eq!(
            on_memory, clean,
            "memory contents differ from a clean run (round {round})"
        );

        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let on_file = run_with_aborts(&url, &cmd, LIMIT, round);
        assert_eq!(
            on_file, clean,
            "file contents differ from a clean run (round {round})"
        );
    }
}
