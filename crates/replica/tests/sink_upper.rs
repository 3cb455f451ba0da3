//! Sinks report their upper: `FrontierUppers` for the sink's id as its destination
//! durably advances, never beyond what the destination holds, also after a restart.

#![cfg(test)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use strata_controller_api::{GlobalId, LoadGenerator, Timestamp};
use strata_instance_client::{ReplicaResponse, StorageCommand};
use strata_replica::shard::memory::MemShards;
use strata_replica::shard::{ShardWriter, frontier_time};
use strata_replica::sink::file::{Progress, progress_path};
use strata_replica::{FaultHook, FaultPoint};

const LIMIT: u64 = 60;

/// Lets the first `commits` batches of a sink commit, then crashes every later batch
/// after its data is written and before its progress marker lands.
struct StuckAfter {
    commits: usize,
    calls: AtomicUsize,
}

impl FaultHook for StuckAfter {
    fn fail_at(&self, point: FaultPoint) -> bool {
        match point {
            FaultPoint::SinkAfterData => self.calls.fetch_add(1, Ordering::SeqCst) >= self.commits,
            _ => false,
        }
    }
}

/// The frontier in a file sink's durable marker (0 before it has one).
fn durable_frontier(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(progress_path(path)) else {
        return 0;
    };
    let progress: Progress = serde_json::from_slice(&bytes).unwrap();
    progress.frontier.unwrap_or(u64::MAX)
}

/// The uppers reported for `id` among `responses`, in order (`u64::MAX` for `[]`).
fn uppers_of(responses: &[ReplicaResponse<Timestamp>], id: GlobalId) -> Vec<u64> {
    responses
        .iter()
        .flat_map(|r| match r {
            ReplicaResponse::FrontierUppers(uppers) => uppers.as_slice(),
            _ => &[],
        })
        .filter(|(of, _)| *of == id)
        .map(|(_, upper)| frontier_time(upper).map_or(u64::MAX, |t| t.as_millis()))
        .collect()
}

#[test]
fn a_file_sink_reports_its_durable_upper_and_resumes_from_it() {
    let shards = MemShards::new();
    let cmd = ingestion(2700, LoadGenerator::KeyValue { keys: 8 }, 5, 3);
    let from = GlobalId::User(2700);
    let from_shard = cmd.storage_metadata[&from].data_shard;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let sink = file_sink(2710, &cmd, from, path.to_str().unwrap());
    let objects = vec![
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::RunSink(sink.clone()),
    ];

    // A sink that commits its snapshot and then crashes on every batch after writing
    // its data: it reports the snapshot's upper and nothing beyond.
    let stuck = Arc::new(StuckAfter {
        commits: 1,
        calls: AtomicUsize::new(0),
    });
    let mut config = frozen_config(1, LIMIT);
    config.faults = Some(Arc::clone(&stuck) as Arc<dyn FaultHook>);
    let (mut replica, rx) = start(config, Arc::new(shards.clone()));
    send(&mut replica, &history(1, objects.clone()));
    wait_for("the stuck sink", || {
        stuck.calls.load(Ordering::SeqCst) >= 3 && ingested_offset(&shards, &cmd) >= LIMIT
    });
    replica.shutdown();
    let before = drain(&rx);
    assert_eq!(uppers_of(&before, sink.id), vec![1]);
    assert_eq!(durable_frontier(&path), 1);

    // Restarted, the sink resumes from its marker and reports each durable advance,
    // up to the input's upper.
    let (mut replica, rx) = start(frozen_config(1, LIMIT), Arc::new(shards.clone()));
    send(&mut replica, &history(2, objects));
    let input_upper = frontier_time(&shards.upper(from_shard).unwrap())
        .unwrap()
        .as_millis();
    let mut reported = Vec::new();
    wait_for("the sink's upper to reach its input's", || {
        let new = uppers_of(&drain(&rx), sink.id);
        // Read the marker after the reports: it only moves forward.
        let durable = durable_frontier(&path);
        assert!(
            new.iter().all(|u| *u <= durable),
            "reported {new:?}, durable {durable}"
        );
        reported.extend(new);
        reported.last().is_some_and(|u| *u >= input_upper)
    });
    replica.shutdown();
    assert!(
        reported.windows(2).all(|w| w[0] < w[1]),
        "uppers advance: {reported:?}"
    );
    // (The restarted sink may recover and catch up within one step: it reports then
    // only where it got to.)
    assert!(reported.first().is_some_and(|u| *u > 1), "{reported:?}");
    assert!(
        reported
            .last()
            .is_some_and(|u| *u <= durable_frontier(&path))
    );
}

/// The end of the chain of files an object-store sink left under `dir` (as a
/// `file://` location) at `prefix`, from `start` (`start` if there is none).
#[cfg(feature = "persist")]
fn chain_end(dir: &Path, prefix: &str, start: u64) -> u64 {
    use strata_replica::sink::object_store::{chain, parse_range};
    let ranges: Vec<(u64, u64)> = match std::fs::read_dir(dir.join(prefix)) {
        Ok(entries) => entries
            .filter_map(|e| parse_range(e.unwrap().file_name().to_str()?))
            .collect(),
        Err(_) => Vec::new(),
    };
    chain(&ranges, start)
        .last()
        .map_or(start, |(_, upper)| *upper)
}

#[cfg(feature = "persist")]
#[test]
fn an_object_store_sink_reports_the_end_of_its_chain() {
    let shards = MemShards::new();
    let cmd = ingestion(2800, LoadGenerator::KeyValue { keys: 8 }, 6, 3);
    let from = GlobalId::User(2800);
    let from_shard = cmd.storage_metadata[&from].data_shard;
    let out = tempfile::tempdir().unwrap();
    let mut sink = file_sink(2810, &cmd, from, "unused");
    sink.description.connection = strata_controller_api::SinkConnection::ObjectStore {
        url: format!("file://{}", out.path().display()),
        prefix: "sink/out".into(),
    };
    let objects = vec![
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::RunSink(sink.clone()),
    ];
    for epoch in 1..=2 {
        // The second replica resumes from the chain the first left.
        let (mut replica, rx) = start(frozen_config(1, LIMIT * epoch), Arc::new(shards.clone()));
        send(&mut replica, &history(epoch, objects.clone()));
        let mut reported = Vec::new();
        wait_for("the sink's upper to reach its input's", || {
            let new = uppers_of(&drain(&rx), sink.id);
            let durable = chain_end(out.path(), "sink/out", 0);
            assert!(
                new.iter().all(|u| *u <= durable),
                "reported {new:?}, durable {durable}"
            );
            reported.extend(new);
            let input = frontier_time(&shards.upper(from_shard).unwrap())
                .unwrap()
                .as_millis();
            ingested_offset(&shards, &cmd) >= LIMIT * epoch
                && reported.last().is_some_and(|u| *u >= input)
        });
        replica.shutdown();
        assert!(
            reported.windows(2).all(|w| w[0] < w[1]),
            "uppers advance: {reported:?}"
        );
    }
}
