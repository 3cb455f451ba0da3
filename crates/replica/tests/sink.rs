//! File sink: exactly-once output under random kills and injected crashes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use strata_controller_api::{GlobalId, LoadGenerator, Row, Timestamp};
use strata_instance_client::StorageCommand;
use strata_replica::shard::faults::Faulty;
use strata_replica::shard::memory::MemShards;
use strata_replica::shard::{ShardReader, ShardWriter, frontier_time};
use strata_replica::sink::file::{Progress, progress_path, read_output};
use strata_replica::{FaultHook, FaultPoint};

/// Crashes a sink after its data write, but before its progress marker, at random.
struct RandomCrash(Mutex<Rng>);

impl FaultHook for RandomCrash {
    fn fail_at(&self, point: FaultPoint) -> bool {
        point == FaultPoint::SinkAfterData && self.0.lock().unwrap().below(3) == 0
    }
}

fn consolidate_timed(updates: impl IntoIterator<Item = (Row, u64, i64)>) -> Vec<((Row, u64), i64)> {
    let mut acc = std::collections::BTreeMap::new();
    for (row, time, diff) in updates {
        *acc.entry((row, time)).or_insert(0i64) += diff;
    }
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

#[test]
fn file_sink_is_exactly_once_under_random_kills() {
    const LIMIT: u64 = 400;
    let cmd = ingestion(500, LoadGenerator::KeyValue { keys: 8 }, 3, 3);
    let from = GlobalId::User(500);
    let from_shard = cmd.storage_metadata[&from].data_shard;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let sink = file_sink(600, &cmd, from, path.to_str().unwrap());

    let shards = MemShards::new();
    let mut source_config = frozen_config(1, LIMIT);
    source_config.retry_backoff = Duration::from_millis(1);
    let (mut source, _src_rx) = start(source_config, Arc::new(shards.clone()));
    send(
        &mut source,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );

    let mut rng = Rng(0xfeed);
    let mut kills = 0;
    let mut lens = Vec::new();
    for epoch in 1..=25u64 {
        let mut config = frozen_config(1, LIMIT);
        config.faults = Some(Arc::new(RandomCrash(Mutex::new(Rng(epoch * 31 + 7)))));
        let faulty = Faulty::new(shards.clone(), epoch * 104_729, 20);
        let (mut replica, _rx) = start(config, Arc::new(faulty));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunSink(sink.clone())]),
        );
        std::thread::sleep(Duration::from_millis(rng.below(12)));
        replica.shutdown(); // kill at a random point
        kills += 1;
        lens.push(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
    }
    wait_for("source", || ingested_offset(&shards, &cmd) >= LIMIT);
    source.shutdown();

    let (mut replica, _rx) = start(frozen_config(1, LIMIT), Arc::new(shards.clone()));
    send(
        &mut replica,
        &history(100, vec![StorageCommand::RunSink(sink.clone())]),
    );
    let upper = frontier_time(&shards.upper(from_shard).unwrap())
        .unwrap()
        .as_millis();
    let marker = progress_path(&path);
    wait_for("sink to catch up", || {
        let Ok(bytes) = std::fs::read(&marker) else {
            return false;
        };
        let progress: Progress = serde_json::from_slice(&bytes).unwrap();
        progress.frontier >= Some(upper)
    });
    replica.shutdown();

    assert!(kills >= 20);
    assert!(
        lens.windows(2).any(|w| w[0] != w[1]),
        "the sink never made progress between kills"
    );
    let output = read_output(&path).unwrap();
    let progress: Progress = serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        progress.len,
        "uncommitted bytes left behind"
    );
    // The output holds exactly the collection's updates: consolidated per (row, time)
    // and, ignoring times, the contents at the final frontier.
    let (updates, _) = shards.listen_from(from_shard, Timestamp::new(0)).unwrap();
    let expected = consolidate_timed(updates.into_iter().map(|(r, t, d)| (r, t.as_millis(), d)));
    assert_eq!(consolidate_timed(output.clone()), expected);
    let rows = strata_replica::shard::consolidate_rows(output.into_iter().map(|(r, _, d)| (r, d)));
    let at_final = shards
        .snapshot(from_shard, Timestamp::new(upper - 1))
        .unwrap()
        .unwrap();
    assert_eq!(
        rows,
        at_final
            .into_iter()
            .map(|(r, _, d)| (r, d))
            .collect::<Vec<_>>()
    );
}
