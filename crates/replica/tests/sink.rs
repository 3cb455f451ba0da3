//! File sink: exactly-once output under random kills and injected crashes.

mod common;

use std::sync::Arc;

use common::scenarios::{file_output, sink_exactly_once_under_kills};
use common::*;
use strata_controller_api::{GlobalId, LoadGenerator};
use strata_replica::shard::Shards;
use strata_replica::shard::memory::MemShards;
use strata_replica::sink::file::{Progress, progress_path};

#[test]
fn file_sink_is_exactly_once_under_random_kills() {
    let shards = MemShards::new();
    let make = move || -> Arc<dyn Shards> { Arc::new(shards.clone()) };
    let cmd = ingestion(500, LoadGenerator::KeyValue { keys: 8 }, 3, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    let sink = file_sink(600, &cmd, GlobalId::User(500), path.to_str().unwrap());
    sink_exactly_once_under_kills(&make, &cmd, &sink, 400, 25, &|| file_output(&path));
    // Nothing uncommitted is left behind after the last clean run.
    let progress: Progress =
        serde_json::from_slice(&std::fs::read(progress_path(&path)).unwrap()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), progress.len);
}
