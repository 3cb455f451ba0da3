//! `cargo xtask bench replica`: counter-generator ingestion throughput into the persist
//! file backend with 1 and 2 workers, against the same rows appended directly with
//! persist-backend's write handle (the baseline, one `compare_and_append` per
//! `PER_ROUND` rows), in the same run. The replica runs with its default round batching
//! (`DEFAULT_MAX_TICKS_PER_ROUND` ticks per round under load) and, for comparison, with
//! one tick per round.
//!
//! All figures are end-to-end, reported through `strata-bench-support`. `--quick`
//! shrinks the sizes; run without `--bench` (as `cargo test --all-targets` does) the
//! suite runs at a tiny size and reports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_bench_support::{Metric, Mode, report};
use strata_controller_api::{
    Antichain, CollectionMetadata, Datum, GlobalId, IngestionDescription, InstanceId,
    LoadGenerator, Row, ShardId, SourceConnection, SourceOutput, Timestamp,
};
use strata_instance_client::{RunIngestionCommand, StorageCommand};
use strata_replica::generator::Generator;
use strata_replica::remap::remap_desc;
use strata_replica::shard::persist::PersistShards;
use strata_replica::shard::{ShardReader, ShardWriter, Shards, frontier_time};
use strata_replica::{Replica, ReplicaConfig, ResponseSink};

const PER_ROUND: u64 = 2_000;

fn connection() -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator: LoadGenerator::Counter { max_ticks: None },
        tick_interval_ms: 0,
        offsets_per_tick: PER_ROUND,
        seed: 0,
    }
}

fn ingestion(salt: u8) -> RunIngestionCommand<Timestamp> {
    let desc = Generator::new(&connection())
        .unwrap()
        .output_desc(&SourceOutput::Primary)
        .unwrap();
    let meta = |n: u8, desc| CollectionMetadata {
        persist_location: String::new(),
        data_shard: ShardId::from_bytes([n, salt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
        remap_shard: None,
        txns_shard: None,
        relation_desc: desc,
    };
    let (id, remap) = (GlobalId::User(1), GlobalId::User(2));
    RunIngestionCommand {
        id,
        description: IngestionDescription {
            connection: connection(),
            instance_id: InstanceId(1),
            remap_collection_id: remap,
            source_exports: BTreeMap::from([(id, SourceOutput::Primary)]),
            as_of: None,
        },
        storage_metadata: BTreeMap::from([(id, meta(1, desc)), (remap, meta(2, remap_desc()))]),
    }
}

fn ingested(shards: &PersistShards, cmd: &RunIngestionCommand<Timestamp>) -> u64 {
    let data = cmd.storage_metadata[&cmd.id].data_shard;
    let remap = cmd.storage_metadata[&cmd.description.remap_collection_id].data_shard;
    let Some(upper) = shards.upper(data).ok().and_then(|u| frontier_time(&u)) else {
        return 0;
    };
    let Some(before) = upper.as_millis().checked_sub(1) else {
        return 0;
    };
    let Ok(Some(snapshot)) = shards.snapshot(remap, Timestamp::new(before)) else {
        return 0;
    };
    snapshot
        .into_iter()
        .find_map(|(row, _, diff)| match (row.unpack().as_slice(), diff) {
            ([Datum::UInt64(o)], 1) => Some(*o),
            _ => None,
        })
        .unwrap_or(0)
}

/// Rows per second of a replica with `workers` ingesting `rows` counter rows.
fn replica_rows_per_sec(
    url: &str,
    workers: usize,
    max_ticks_per_round: u64,
    rows: u64,
    salt: u8,
) -> f64 {
    let shards = Arc::new(PersistShards::open(url).unwrap());
    let cmd = ingestion(salt);
    for meta in cmd.storage_metadata.values() {
        shards.register_schema(meta.data_shard, &meta.relation_desc);
    }
    let config = ReplicaConfig {
        workers,
        clock: Arc::new(|| Timestamp::new(0)),
        offset_limit: Some(rows),
        max_ticks_per_round,
        ..ReplicaConfig::default()
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let sink: Arc<dyn ResponseSink> = Arc::new(Mutex::new(tx));
    let mut replica = Replica::start(config, Arc::clone(&shards) as Arc<dyn Shards>, sink).unwrap();
    let start = Instant::now();
    for command in [
        StorageCommand::Hello { nonce: 1, epoch: 1 },
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::InitializationComplete,
        StorageCommand::AllowWrites,
    ] {
        replica.handle(command);
    }
    while ingested(&shards, &cmd) < rows {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    replica.shutdown();
    rows as f64 / elapsed
}

/// Rows per second of the same rows appended directly with a write handle.
fn baseline_rows_per_sec(url: &str, rows: u64, salt: u8) -> f64 {
    let cmd = ingestion(salt);
    let meta = cmd.storage_metadata[&cmd.id].clone();
    let generator = Generator::new(&connection()).unwrap();
    let shards = PersistShards::open(url).unwrap();
    let client = shards.client().clone();
    let start = Instant::now();
    shards.block_on(async move {
        let mut write = client
            .open_writer::<Timestamp>(meta.data_shard, meta.relation_desc)
            .await
            .unwrap();
        let mut round = 0u64;
        let mut offset = 0u64;
        while offset < rows {
            let end = (offset + PER_ROUND).min(rows);
            let updates: Vec<(Result<Row, String>, Timestamp, i64)> = generator
                .updates_in(offset..end)
                .into_iter()
                .map(|(_, row, diff)| (Ok(row), Timestamp::new(round), diff))
                .collect();
            let (lower, upper) = (
                Antichain::from_elem(Timestamp::new(round)),
                Antichain::from_elem(Timestamp::new(round + 1)),
            );
            write
                .compare_and_append(&updates, lower, upper)
                .await
                .unwrap()
                .unwrap();
            round += 1;
            offset = end;
        }
    });
    rows as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let mode = Mode::current();
    let rows = mode.pick(2_000, 20_000, 200_000);
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("file://{}/{name}", dir.path().display());
    // Warm up the runtime, the file system and the code paths before measuring.
    baseline_rows_per_sec(&url("warmup"), rows / 4, 9);
    let baseline = baseline_rows_per_sec(&url("baseline"), rows, 1);
    let batched = strata_replica::DEFAULT_MAX_TICKS_PER_ROUND;
    let one = replica_rows_per_sec(&url("one"), 1, batched, rows, 2);
    let two = replica_rows_per_sec(&url("two"), 2, batched, rows, 3);
    // One tick (PER_ROUND offsets) per round, as the baseline appends: the fixed cost of
    // a round without batching.
    let one_tick = replica_rows_per_sec(&url("one-tick"), 1, 1, rows, 4);
    let two_tick = replica_rows_per_sec(&url("two-tick"), 2, 1, rows, 5);
    if !mode.is_bench() {
        return;
    }
    for (name, value) in [
        ("replica_ingest_counter_file_1_worker", one),
        ("replica_ingest_counter_file_2_workers", two),
        (
            "replica_ingest_counter_file_1_worker_one_tick_rounds",
            one_tick,
        ),
        (
            "replica_ingest_counter_file_2_workers_one_tick_rounds",
            two_tick,
        ),
    ] {
        report(&Metric::new(
            name,
            value,
            "rows/s",
            "persist_write_handle_compare_and_append",
            baseline,
        ));
    }
}
