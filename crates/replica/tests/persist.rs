//! The acceptance scenarios against the real persist backend (`--features persist`),
//! on its memory (`mem://`) and file (`file://`) locations. Every simulated process
//! opens its own [`PersistShards`], so caches are not shared between "processes".
#![cfg(feature = "persist")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::scenarios::*;
use common::*;
use strata_controller_api::{GlobalId, LoadGenerator};
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;

fn factory(url: String) -> impl Fn() -> Arc<dyn Shards> {
    move || -> Arc<dyn Shards> { Arc::new(PersistShards::open(&url).unwrap()) }
}

fn file_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().display())
}

#[test]
fn exactly_once_under_aborts_on_persist_memory_and_file() {
    const LIMIT: u64 = 120;
    let cmd = ingestion(2000, LoadGenerator::Auction, 42, 7);
    let expected = model(&cmd, LIMIT);
    let clean = run_clean(&factory("mem://replica-clean".into()), &cmd, 2, LIMIT);
    assert_eq!(clean, expected);
    exactly_once_under_aborts(
        &factory("mem://replica-aborts".into()),
        &cmd,
        LIMIT,
        20,
        &clean,
    );
    let dir = tempfile::tempdir().unwrap();
    exactly_once_under_aborts(&factory(file_url(&dir)), &cmd, LIMIT, 20, &clean);
}

#[test]
fn racing_replicas_on_persist_file() {
    const LIMIT: u64 = 80;
    let cmd = ingestion(2100, LoadGenerator::KeyValue { keys: 16 }, 9, 5);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        racing_replicas(&factory(file_url(&dir)), &cmd, LIMIT),
        model(&cmd, LIMIT)
    );
}

#[test]
fn sink_exactly_once_on_persist_file() {
    let cmd = ingestion(2200, LoadGenerator::KeyValue { keys: 8 }, 3, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.ndjson");
    let sink = file_sink(2300, &cmd, GlobalId::User(2200), path.to_str().unwrap());
    sink_exactly_once_under_kills(&factory(file_url(&dir)), &cmd, &sink, 150, 20);
}
