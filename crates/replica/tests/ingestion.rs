//! Ingestion end to end: contents, exactly-once under aborts, races, reports.

mod common;

use std::sync::Arc;

use common::gate::ShardGate;
use common::scenarios::*;
use common::*;
use strata_controller_api::{Antichain, GlobalId, LoadGenerator, Timestamp};
use strata_instance_client::{ReplicaResponse, Status, StorageCommand};
use strata_replica::shard::Shards;
use strata_replica::shard::memory::MemShards;

fn memory() -> (MemShards, impl Fn() -> Arc<dyn Shards>) {
    let shards = MemShards::new();
    let handle = shards.clone();
    (shards, move || -> Arc<dyn Shards> {
        Arc::new(handle.clone())
    })
}

#[test]
fn counter_on_two_workers_matches_the_generator() {
    let cmd = ingestion(100, LoadGenerator::Counter { max_ticks: None }, 0, 7);
    let got = run_clean(&memory().1, &cmd, 2, 100);
    assert_eq!(got, model(&cmd, 100));
    assert_eq!(got[&GlobalId::User(100)].len(), 100);
}

#[test]
fn auction_is_exactly_once_under_random_aborts() {
    // Room for 25 aborts, each a round or two past the previous one, before the end.
    const LIMIT: u64 = 900;
    let cmd = ingestion(200, LoadGenerator::Auction, 42, 7);
    let clean = run_clean(&memory().1, &cmd, 2, LIMIT);
    assert_eq!(clean, model(&cmd, LIMIT));
    exactly_once_under_aborts(&memory().1, &cmd, LIMIT, 25, &clean);
}

#[test]
fn two_racing_replicas_write_what_one_would() {
    const LIMIT: u64 = 200;
    let cmd = ingestion(300, LoadGenerator::KeyValue { keys: 16 }, 9, 5);
    let (shards, make) = memory();
    assert_eq!(racing_replicas(&make, &cmd, LIMIT), model(&cmd, LIMIT));
    // Every update was appended once: the raw appends consolidate to nothing lost and
    // contain no duplicate round.
    let raw: usize = data_shards(&cmd)
        .iter()
        .map(|(_, s)| shards.contents(*s).len())
        .sum();
    let single: usize = {
        let g = strata_replica::generator::Generator::new(&cmd.description.connection).unwrap();
        g.updates_in(0..LIMIT).len()
    };
    assert_eq!(raw, single);
}

/// Before `AllowWrites` the replica's shards are behind a gate that refuses every write
/// at the moment it is made, however late; the gate opens just before `AllowWrites`.
/// A file sink on the same worker polls its input every few milliseconds whatever the
/// write gate says, so its reads count the worker's rounds: the ingestion's leader has
/// been scheduled many times before the gate opens.
#[test]
fn nothing_is_written_before_allow_writes_and_reports_flow() {
    const SINK_POLLS: u64 = 40;
    let cmd = ingestion(400, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let sink = file_sink(490, &cmd, GlobalId::User(400), path.to_str().unwrap());
    let shards = MemShards::new();
    let gate = ShardGate::new(Arc::new(shards.clone()));
    let (mut replica, rx) = start(frozen_config(1, 30), gate.clone());
    let objects = vec![
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::RunSink(sink),
    ];
    let mut commands = history(1, objects);
    commands.pop(); // no AllowWrites yet
    send(&mut replica, &commands);
    wait_for("dataflow starts", || replica.dataflow_starts() == 2);
    // The ingestion's leader exists and has reported itself starting.
    let mut responses = Vec::new();
    wait_for("the starting status", || {
        responses.extend(drain(&rx));
        responses.iter().any(|r| {
            matches!(r, ReplicaResponse::StatusUpdate(u)
                if u.id == GlobalId::User(400) && u.status == Status::Starting)
        })
    });
    let polled = gate.reads();
    wait_for("the sink's polls", || gate.reads() >= polled + SINK_POLLS);
    gate.assert_nothing_refused("before AllowWrites");
    assert!(
        data_shards(&cmd)
            .iter()
            .all(|(_, s)| shards.contents(*s).is_empty())
    );

    gate.allow();
    replica.handle(StorageCommand::AllowWrites);
    wait_for("ingestion", || ingested_offset(&shards, &cmd) >= 30);
    // AllowCompaction downgrades the since of the shards this replica writes.
    let frontier = Antichain::from_elem(Timestamp::new(2));
    replica.handle(StorageCommand::AllowCompaction {
        id: GlobalId::User(400),
        frontier: frontier.clone(),
    });
    assert_eq!(
        shards.since(cmd.storage_metadata[&GlobalId::User(400)].data_shard),
        frontier
    );
    wait_for("statistics", || {
        responses.extend(drain(&rx));
        responses.iter().any(|r| match r {
            ReplicaResponse::StatisticsUpdates { sources, .. } => sources.iter().any(|(id, s)| {
                *id == GlobalId::User(400)
                    && s.updates_committed == 30
                    && s.offset_committed == Some(30)
            }),
            _ => false,
        })
    });
    // Dropping the ingestion reports every collection it wrote.
    replica.handle(StorageCommand::AllowCompaction {
        id: GlobalId::User(400),
        frontier: Antichain::new(),
    });
    wait_for("dropped ids", || {
        responses.extend(drain(&rx));
        responses
            .iter()
            .filter(|r| matches!(r, ReplicaResponse::DroppedId(_)))
            .count()
            == 2
    });
    replica.shutdown();
    let statuses: Vec<Status> = responses
        .iter()
        .filter_map(|r| match r {
            ReplicaResponse::StatusUpdate(u) if u.id == GlobalId::User(400) => Some(u.status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![Status::Starting, Status::Running, Status::Dropped]
    );
    assert_monotone(&responses);
}

#[test]
fn wall_clock_bindings_use_epoch_milliseconds() {
    let mut cmd = ingestion(450, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let strata_controller_api::SourceConnection::LoadGenerator {
        tick_interval_ms, ..
    } = &mut cmd.description.connection
    else {
        unreachable!("the ingestion is a load generator")
    };
    *tick_interval_ms = 2;
    let (shards, _) = memory();
    let before = strata_controller_api::Timestamp::new(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    );
    let config = strata_replica::ReplicaConfig {
        clock: strata_replica::system_clock(),
        ..frozen_config(2, 30)
    };
    let (mut replica, _rx) = start(config, Arc::new(shards.clone()));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("wall-clock ingestion", || {
        ingested_offset(&shards, &cmd) >= 30
    });
    replica.shutdown();
    assert_eq!(contents(&shards, &cmd), model(&cmd, 30));
    let times: Vec<_> = shards
        .contents(cmd.storage_metadata[&GlobalId::User(450)].data_shard)
        .iter()
        .map(|(_, t, _)| *t)
        .collect();
    assert!(
        times.iter().all(|t| *t >= before),
        "a binding time is before the run started"
    );
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}
