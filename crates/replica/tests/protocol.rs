//! The command handler: reconcile, epochs, bad input.

#![cfg(test)]

mod common;

use std::sync::Arc;

use common::*;
use strata_controller_api::{
    Antichain, Datum, GlobalId, LoadGenerator, RelationDesc, Row, ScalarType, SinkConnection,
    SourceOutput, Timestamp,
};
use strata_instance_client::{
    ReplicaResponse, RunIngestionCommand, RunSinkCommand, Status, StorageCommand,
};
use strata_replica::shard::ShardWriter;
use strata_replica::shard::memory::MemShards;

fn stalled_errors(responses: &[ReplicaResponse<Timestamp>]) -> Vec<(GlobalId, String)> {
    responses
        .iter()
        .filter_map(|r| match r {
            ReplicaResponse::StatusUpdate(u) if u.status == Status::Stalled => {
                Some((u.id, u.error.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn replaying_an_unchanged_history_restarts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = ingestion(700, LoadGenerator::Counter { max_ticks: None }, 0, 2);
    let sink_a = file_sink(
        710,
        &cmd,
        GlobalId::User(700),
        dir.path().join("a").to_str().unwrap(),
    );
    let sink_b = file_sink(
        711,
        &cmd,
        GlobalId::User(700),
        dir.path().join("b").to_str().unwrap(),
    );
    let shards = MemShards::new();
    let (mut replica, rx) = start(frozen_config(2, 50), Arc::new(shards.clone()));
    let objects = vec![
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::RunSink(sink_a.clone()),
    ];
    send(&mut replica, &history(1, objects.clone()));
    wait_for("two dataflows", || replica.dataflow_starts() == 2);

    // A reconnecting controller replays the same history, then adds a sink: only the
    // new sink starts (workers apply commands in order, so waiting for it suffices).
    send(&mut replica, &history(2, objects.clone()));
    replica.handle(StorageCommand::RunSink(sink_b.clone()));
    wait_for("new sink", || replica.dataflow_starts() == 3);
    // A Run* with an unchanged description is a no-op too.
    replica.handle(StorageCommand::RunIngestion(cmd.clone()));

    // A changed ingestion restarts; a sink missing from the replay is dropped.
    let mut changed = cmd.clone();
    let strata_controller_api::SourceConnection::LoadGenerator {
        offsets_per_tick, ..
    } = &mut changed.description.connection
    else {
        unreachable!("the ingestion is a load generator")
    };
    *offsets_per_tick = 5;
    send(
        &mut replica,
        &history(
            3,
            vec![
                StorageCommand::RunIngestion(changed.clone()),
                StorageCommand::RunSink(sink_a),
            ],
        ),
    );
    wait_for("restart", || replica.dataflow_starts() == 4);

    // A stale epoch is ignored entirely.
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunSink(sink_b.clone())]),
    );
    replica.handle(StorageCommand::Hello { nonce: 9, epoch: 4 });
    replica.handle(StorageCommand::RunIngestion(changed));
    replica.handle(StorageCommand::RunSink(file_sink(
        712,
        &cmd,
        GlobalId::User(700),
        dir.path().join("c").to_str().unwrap(),
    )));
    replica.handle(StorageCommand::InitializationComplete);
    wait_for("new sink after stale epoch", || {
        replica.dataflow_starts() == 5
    });
    wait_for("ingestion", || ingested_offset(&shards, &cmd) >= 50);
    replica.shutdown();
    let responses = drain(&rx);
    assert!(responses.contains(&ReplicaResponse::DroppedId(GlobalId::User(711))));
    assert!(
        !responses.contains(&ReplicaResponse::DroppedId(GlobalId::User(700))),
        "the ingestion was dropped"
    );
}

/// Ingestions the replica cannot run: an unknown output, a schema mismatch, an invalid
/// generator parameter and a corrupt remap shard (written into `shards`).
fn bad_ingestions(shards: &MemShards) -> Vec<RunIngestionCommand<Timestamp>> {
    let mut unknown_output = ingestion(820, LoadGenerator::Auction, 1, 1);
    let (id, _) = unknown_output
        .description
        .source_exports
        .pop_last()
        .unwrap();
    unknown_output
        .description
        .source_exports
        .insert(id, SourceOutput::Named("nope".into()));

    let mut mismatch = ingestion(840, LoadGenerator::Counter { max_ticks: None }, 0, 1);
    mismatch
        .storage_metadata
        .get_mut(&GlobalId::User(840))
        .unwrap()
        .relation_desc = RelationDesc::builder()
        .with_column("x", ScalarType::String.nullable(true))
        .finish();

    let mut bad_key_value = ingestion(860, LoadGenerator::KeyValue { keys: 3 }, 0, 1);
    let strata_controller_api::SourceConnection::LoadGenerator { generator, .. } =
        &mut bad_key_value.description.connection
    else {
        unreachable!("the ingestion is a load generator")
    };
    *generator = LoadGenerator::KeyValue { keys: 0 };

    let corrupt_remap = ingestion(880, LoadGenerator::Counter { max_ticks: None }, 0, 1);
    let remap_shard = corrupt_remap.storage_metadata[&GlobalId::User(881)].data_shard;
    let garbage = vec![(
        Row::pack(&[Datum::String("garbage".into())]),
        Timestamp::new(0),
        1,
    )];
    let upper = |t| Antichain::from_elem(Timestamp::new(t));
    shards
        .compare_and_append(remap_shard, &garbage, &upper(0), &upper(1))
        .unwrap()
        .unwrap();
    let data_shard = corrupt_remap.storage_metadata[&GlobalId::User(880)].data_shard;
    shards
        .compare_and_append(data_shard, &[], &upper(0), &upper(1))
        .unwrap()
        .unwrap();

    vec![unknown_output, mismatch, bad_key_value, corrupt_remap]
}

/// Sinks the replica cannot run: a missing directory, a directory as the path, a schema
/// mismatch, an unusable object store and an empty as_of.
fn bad_sinks(
    good: &RunIngestionCommand<Timestamp>,
    dir: &std::path::Path,
) -> Vec<RunSinkCommand<Timestamp>> {
    let bad_path = file_sink(
        900,
        good,
        GlobalId::User(800),
        "/nonexistent-dir/out.ndjson",
    );
    let dir_path = file_sink(901, good, GlobalId::User(800), dir.to_str().unwrap());
    let mut schema = file_sink(
        902,
        good,
        GlobalId::User(800),
        dir.join("s").to_str().unwrap(),
    );
    schema.description.from_desc = RelationDesc::builder()
        .with_column("y", ScalarType::Bool.nullable(false))
        .finish();
    let mut object_store = file_sink(903, good, GlobalId::User(800), "unused");
    object_store.description.connection = SinkConnection::ObjectStore {
        url: "bogus://x".into(),
        prefix: "p".into(),
    };
    let mut empty_as_of = file_sink(
        904,
        good,
        GlobalId::User(800),
        dir.join("e").to_str().unwrap(),
    );
    empty_as_of.description.as_of = Antichain::new();

    vec![bad_path, dir_path, schema, object_store, empty_as_of]
}

#[test]
fn bad_input_stalls_only_the_bad_object() {
    let dir = tempfile::tempdir().unwrap();
    let good = ingestion(800, LoadGenerator::Counter { max_ticks: None }, 0, 4);

    let shards = MemShards::new();
    let bad_ingestions = bad_ingestions(&shards);
    let bad_sinks = bad_sinks(&good, dir.path());
    let (mut replica, rx) = start(frozen_config(2, 40), Arc::new(shards.clone()));
    // Commands before any Hello and for unknown ids are ignored, never a panic.
    replica.handle(StorageCommand::RunIngestion(good.clone()));
    replica.handle(StorageCommand::AllowCompaction {
        id: GlobalId::User(999),
        frontier: Antichain::new(),
    });
    let objects = std::iter::once(good.clone())
        .chain(bad_ingestions)
        .map(StorageCommand::RunIngestion)
        .chain(bad_sinks.into_iter().map(StorageCommand::RunSink))
        .collect();
    send(&mut replica, &history(1, objects));
    replica.handle(StorageCommand::AllowCompaction {
        id: GlobalId::User(999),
        frontier: Antichain::new(),
    });
    replica.handle(StorageCommand::AllowCompaction {
        id: GlobalId::User(998),
        frontier: Antichain::from_elem(Timestamp::new(5)),
    });
    wait_for("good ingestion", || ingested_offset(&shards, &good) >= 40);
    let mut responses = Vec::new();
    wait_for("corrupt remap stall", || {
        responses.extend(drain(&rx));
        stalled_errors(&responses)
            .iter()
            .any(|(id, _)| *id == GlobalId::User(880))
    });
    replica.shutdown();
    let errors = stalled_errors(&responses);
    let error_of = |n: u64| {
        errors
            .iter()
            .find(|(id, _)| *id == GlobalId::User(n))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("{n} did not stall: {errors:?}"))
    };
    assert!(error_of(820).contains("no output"), "{}", error_of(820));
    assert!(
        error_of(840).contains("schema mismatch"),
        "{}",
        error_of(840)
    );
    assert!(
        error_of(860).contains("at least one key"),
        "{}",
        error_of(860)
    );
    assert!(
        error_of(880).contains("corrupt remap shard"),
        "{}",
        error_of(880)
    );
    assert!(error_of(900).contains("bad sink path"), "{}", error_of(900));
    assert!(error_of(901).contains("directory"), "{}", error_of(901));
    assert!(
        error_of(902).contains("schema mismatch"),
        "{}",
        error_of(902)
    );
    let expected = if cfg!(feature = "persist") {
        "bad sink path"
    } else {
        "unsupported"
    };
    assert!(error_of(903).contains(expected), "{}", error_of(903));
    assert!(
        error_of(904).contains("as_of is empty"),
        "{}",
        error_of(904)
    );
    assert!(
        errors.iter().all(|(id, _)| *id != GlobalId::User(800)),
        "the good ingestion stalled"
    );
    assert_eq!(contents(&shards, &good), model(&good, 40));
}
