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
    sink_exactly_once_under_kills(&factory(file_url(&dir)), &cmd, &sink, 150, 20, &|| {
        file_output(&path)
    });
}

/// Reads the chained Parquet files of an object-store sink.
fn object_output(
    url: &str,
    prefix: &str,
    desc: &strata_controller_api::RelationDesc,
    start: u64,
) -> SinkOutput {
    use futures::TryStreamExt;
    use strata_replica::sink::object_store::{chain, file_key, parse_range};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let location = strata_persist_backend::location::Location::open(url)
            .await
            .unwrap();
        let prefix_path = object_store::path::Path::from(prefix);
        let metas: Vec<_> = location
            .store
            .list(Some(&prefix_path))
            .try_collect()
            .await
            .unwrap();
        let ranges: Vec<(u64, u64)> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_range))
            .collect();
        let chained = chain(&ranges, start);
        let mut out = Vec::new();
        for (lower, upper) in &chained {
            let key = file_key(prefix, *lower, *upper);
            let bytes = object_store::ObjectStoreExt::get(
                location.store.as_ref(),
                &object_store::path::Path::from(key.as_str()),
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
            for (data, time, diff) in
                strata_persist_backend::part::decode_part(&key, desc, bytes).unwrap()
            {
                out.push((data.unwrap(), time, diff));
            }
        }
        (out, chained.last().map(|(_, upper)| *upper))
    })
}

#[test]
fn object_store_sink_exactly_once_on_persist_file() {
    let cmd = ingestion(2400, LoadGenerator::KeyValue { keys: 8 }, 4, 3);
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let out_url = file_url(&out);
    let mut sink = file_sink(2500, &cmd, GlobalId::User(2400), "unused");
    sink.description.connection = strata_controller_api::SinkConnection::ObjectStore {
        url: out_url.clone(),
        prefix: "sink/out".into(),
    };
    let desc = sink.from_metadata.relation_desc.clone();
    sink_exactly_once_under_kills(&factory(file_url(&dir)), &cmd, &sink, 150, 20, &|| {
        object_output(&out_url, "sink/out", &desc, 0)
    });
}
