//! Ingestion end to end: contents, exactly-once under aborts, races, reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_controller_api::{Antichain, GlobalId, LoadGenerator, Timestamp};
use strata_instance_client::{Status, StorageCommand, StorageResponse};
use strata_replica::shard::Shards;
use strata_replica::shard::faults::Faulty;
use strata_replica::shard::memory::MemShards;
use timely::PartialOrder;

fn run_clean(
    cmd: &strata_instance_client::RunIngestionCommand<Timestamp>,
    workers: usize,
    limit: u64,
) -> BTreeMap<GlobalId, Vec<(strata_controller_api::Row, i64)>> {
    let shards = MemShards::new();
    let (mut replica, _rx) = start(frozen_config(workers, limit), Arc::new(shards.clone()));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("clean run", || ingested_offset(&shards, cmd) >= limit);
    replica.shutdown();
    contents(&shards, cmd)
}

#[test]
fn counter_on_two_workers_matches_the_generator() {
    let cmd = ingestion(100, LoadGenerator::Counter { max_ticks: None }, 0, 7);
    let got = run_clean(&cmd, 2, 100);
    assert_eq!(got, model(&cmd, 100));
    assert_eq!(got[&GlobalId::User(100)].len(), 100);
}

/// Per id, the uppers reported over all connections never go backwards.
fn assert_monotone(responses: &[StorageResponse<Timestamp>]) -> usize {
    let mut last: BTreeMap<GlobalId, Antichain<Timestamp>> = BTreeMap::new();
    let mut reports = 0;
    for response in responses {
        if let StorageResponse::FrontierUpper { id, upper } = response {
            if let Some(previous) = last.get(id) {
                assert!(
                    PartialOrder::less_equal(previous, upper),
                    "upper of {id} regressed: {previous:?} -> {upper:?}"
                );
            }
            last.insert(*id, upper.clone());
            reports += 1;
        }
    }
    reports
}

#[test]
fn auction_is_exactly_once_under_random_aborts() {
    const LIMIT: u64 = 300;
    let cmd = ingestion(200, LoadGenerator::Auction, 42, 7);
    let clean = run_clean(&cmd, 2, LIMIT);
    assert_eq!(clean, model(&cmd, LIMIT));

    let shards = MemShards::new();
    let mut rng = Rng(0x5eed);
    let mut responses = Vec::new();
    let mut injected = 0;
    let mut restarts = 0;
    let mut midpoints = Vec::new();
    for epoch in 1..=25u64 {
        let faulty = Faulty::new(shards.clone(), epoch * 7919, 12);
        let (mut replica, rx) = start(frozen_config(2, LIMIT), Arc::new(faulty.clone()));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunIngestion(cmd.clone())]),
        );
        std::thread::sleep(Duration::from_millis(rng.below(15)));
        replica.shutdown(); // abort at a random point
        restarts += 1;
        injected += faulty.injected();
        responses.extend(drain(&rx));
        midpoints.push(ingested_offset(&shards, &cmd));
    }
    // A last, fault-free run finishes the ingestion.
    let (mut replica, rx) = start(frozen_config(2, LIMIT), Arc::new(shards.clone()));
    send(
        &mut replica,
        &history(100, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("final run", || ingested_offset(&shards, &cmd) >= LIMIT);
    replica.shutdown();
    responses.extend(drain(&rx));

    assert!(restarts >= 20);
    assert!(injected > 0, "no fault was injected");
    assert!(
        midpoints.iter().any(|o| *o > 0 && *o < LIMIT),
        "no abort hit a running ingestion: {midpoints:?}"
    );
    assert_eq!(
        contents(&shards, &cmd),
        clean,
        "contents differ from a clean run"
    );
    assert!(assert_monotone(&responses) > 0);
}

#[test]
fn two_racing_replicas_write_what_one_would() {
    const LIMIT: u64 = 200;
    let cmd = ingestion(300, LoadGenerator::KeyValue { keys: 16 }, 9, 5);
    let shards = MemShards::new();
    let shared: Arc<dyn Shards> = Arc::new(shards.clone());
    let (mut a, _ra) = start(frozen_config(1, LIMIT), Arc::clone(&shared));
    let (mut b, _rb) = start(frozen_config(2, LIMIT), Arc::clone(&shared));
    let commands = history(1, vec![StorageCommand::RunIngestion(cmd.clone())]);
    send(&mut a, &commands);
    send(&mut b, &commands);
    wait_for("racing replicas", || {
        ingested_offset(&shards, &cmd) >= LIMIT
    });
    a.shutdown();
    b.shutdown();
    assert_eq!(contents(&shards, &cmd), model(&cmd, LIMIT));
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

#[test]
fn nothing_is_written_before_allow_writes_and_reports_flow() {
    let cmd = ingestion(400, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let shards = MemShards::new();
    let (mut replica, rx) = start(frozen_config(1, 30), Arc::new(shards.clone()));
    let mut commands = history(1, vec![StorageCommand::RunIngestion(cmd.clone())]);
    commands.pop(); // no AllowWrites yet
    send(&mut replica, &commands);
    wait_for("dataflow start", || replica.dataflow_starts() == 1);
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        data_shards(&cmd)
            .iter()
            .all(|(_, s)| shards.contents(*s).is_empty())
    );
    assert!(
        shards
            .contents(cmd.storage_metadata[&GlobalId::User(401)].data_shard)
            .is_empty()
    );

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
    let mut responses = Vec::new();
    wait_for("statistics", || {
        responses.extend(drain(&rx));
        responses.iter().any(|r| match r {
            StorageResponse::StatisticsUpdates { sources, .. } => sources.iter().any(|s| {
                s.id == GlobalId::User(400)
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
            .filter(|r| matches!(r, StorageResponse::DroppedId(_)))
            .count()
            == 2
    });
    replica.shutdown();
    let statuses: Vec<Status> = responses
        .iter()
        .filter_map(|r| match r {
            StorageResponse::StatusUpdate(u) if u.id == GlobalId::User(400) => Some(u.status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        vec![Status::Starting, Status::Running, Status::Dropped]
    );
    assert_monotone(&responses);
}
