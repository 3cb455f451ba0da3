//! The acceptance scenarios against the real persist backend (`--features persist`),
//! on its memory (`mem://`) and file (`file://`) locations. Every simulated process
//! opens its own [`PersistShards`], so caches are not shared between "processes".

#![cfg(test)]
#![cfg(feature = "persist")]

mod common;

use std::sync::Arc;

use common::scenarios::*;
use common::*;
use strata_controller_api::{Antichain, GlobalId, LoadGenerator, ShardId, Timestamp};
use strata_instance_client::{ReplicaResponse, StorageCommand};
use strata_replica::shard::persist::PersistShards;
use strata_replica::shard::{ShardReader, ShardWriter, Shards};

fn factory(url: String) -> impl Fn() -> Arc<dyn Shards> {
    move || -> Arc<dyn Shards> { Arc::new(PersistShards::open(&url).unwrap()) }
}

fn file_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().display())
}

#[test]
fn exactly_once_under_aborts_on_persist_memory_and_file() {
    // Room for 20 aborts, each a round or two past the previous one, before the end.
    const LIMIT: u64 = 600;
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

/// What a shard's state says about the handles held on it.
fn holders(shards: &PersistShards, shard: ShardId) -> (usize, usize) {
    let state = shards
        .block_on(shards.client().inspect_shard(shard))
        .unwrap();
    (state.leased_readers.len(), state.writers.len())
}

/// Closes `shard` the way the controller's finalize path does: a critical since at [],
/// the upper at [], then a tombstone.
fn finalize(shards: &PersistShards, shard: ShardId, desc: &strata_controller_api::RelationDesc) {
    let client = shards.client().clone();
    let desc = desc.clone();
    shards.block_on(async move {
        let mut since = client
            .open_critical_since::<Timestamp>(shard, "controller")
            .await
            .unwrap();
        let opaque = since.opaque();
        let done = since
            .compare_and_downgrade_since(opaque, (opaque, &Antichain::new()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done, Antichain::new(), "no reader holds the since back");
        let mut writer = client.open_writer::<Timestamp>(shard, desc).await.unwrap();
        let upper = writer.fetch_recent_upper().await.unwrap().clone();
        let empty: &[strata_persist_backend::Update<Timestamp>] = &[];
        writer
            .compare_and_append(empty, upper, Antichain::new())
            .await
            .unwrap()
            .unwrap();
        writer.expire().await.unwrap();
        client.finalize_shard(shard).await.unwrap();
    });
}

#[test]
fn dropping_an_ingestion_releases_its_persist_handles() {
    let cmd = ingestion(2600, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let shards = Arc::new(PersistShards::open("mem://replica-release").unwrap());
    let dyn_shards: Arc<dyn Shards> = Arc::clone(&shards) as Arc<dyn Shards>;
    let (mut replica, rx) = start(frozen_config(2, 30), dyn_shards);
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("ingestion", || ingested_offset(&*shards, &cmd) >= 30);
    let data = cmd.storage_metadata[&GlobalId::User(2600)].data_shard;
    assert_ne!(holders(&shards, data), (0, 0), "the replica holds handles");
    let remap = cmd.description.remap_collection_id;
    for id in [GlobalId::User(2600), remap] {
        replica.handle(StorageCommand::AllowCompaction {
            id,
            frontier: Antichain::new(),
        });
    }
    // The remap's final compaction arrives after the ingestion's stop reported it
    // dropped, so it is confirmed twice: wait for both ids, not for a count.
    let mut dropped = std::collections::BTreeSet::new();
    wait_for("dropped ids", || {
        dropped.extend(drain(&rx).into_iter().filter_map(|r| match r {
            ReplicaResponse::DroppedId(id) => Some(id),
            _ => None,
        }));
        dropped.contains(&GlobalId::User(2600)) && dropped.contains(&remap)
    });
    for meta in cmd.storage_metadata.values() {
        assert_eq!(holders(&shards, meta.data_shard), (0, 0));
    }
    for meta in cmd.storage_metadata.values() {
        finalize(&shards, meta.data_shard, &meta.relation_desc);
        let state = shards
            .block_on(shards.client().inspect_shard(meta.data_shard))
            .unwrap();
        assert!(state.tombstone);
    }
    replica.shutdown();
}

#[test]
fn dropping_persist_shards_expires_its_handles_inside_and_outside_a_runtime() {
    let cmd = ingestion(2700, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let meta = cmd.storage_metadata[&GlobalId::User(2700)].clone();
    let open = |n: u64| {
        let shards = PersistShards::open("mem://replica-drop").unwrap();
        shards.register_schema(meta.data_shard, &meta.relation_desc);
        let upper = shards.upper(meta.data_shard).unwrap();
        let new = Antichain::from_elem(Timestamp::new(n));
        shards
            .compare_and_append(meta.data_shard, &[], &upper, &new)
            .unwrap()
            .unwrap();
        shards.snapshot(meta.data_shard, Timestamp::new(0)).unwrap();
        assert_eq!(holders(&shards, meta.data_shard), (1, 1));
        shards
    };
    let check = PersistShards::open("mem://replica-drop").unwrap();
    drop(open(1));
    assert_eq!(holders(&check, meta.data_shard), (0, 0));
    // Inside a runtime the expiry finishes in the background.
    let outer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = open(2);
    outer.block_on(async move { drop(inner) });
    wait_for("background expiry", || {
        holders(&check, meta.data_shard) == (0, 0)
    });
}
