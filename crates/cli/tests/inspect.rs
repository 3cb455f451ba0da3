//! `strata inspect` on state written by the real libraries in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use strata_controller_api::{Antichain, GlobalId, ShardId, StorageTxn, Timestamp};
use strata_controller_core::catalog::DurableCatalog;
use strata_persist_backend::PersistClient;
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// Writes rows at times 0, 1 and 2 to a new shard: its upper is then 3.
async fn written_shard(client: &PersistClient) -> ShardId {
    let shard = new_shard();
    let mut writer = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    for t in 0..3 {
        let update = (
            Ok(test_row(i64::try_from(t).unwrap())),
            Timestamp::new(t),
            1,
        );
        writer
            .compare_and_append(&[update], fr(t), fr(t + 1))
            .await
            .unwrap()
            .unwrap();
    }
    shard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shard_prints_its_state_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let client = PersistClient::open(&url).await.unwrap();
    let shard = written_shard(&client).await;
    let out = run(strata().args(["inspect", "shard", "--persist", &url, &shard.to_string()]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["shard"], shard.to_string(), "{state}");
    assert_eq!(state["upper"], serde_json::json!([3]), "{state}");
    assert_eq!(state["tombstone"], false, "{state}");

    // A plain path, relative to the working directory, names the same location.
    let plain = run(strata()
        .current_dir(dir.path().parent().unwrap())
        .args(["inspect", "shard", "--persist"])
        .arg(dir.path().file_name().unwrap())
        .arg(shard.to_string()));
    assert_eq!(plain.code, Some(0), "{plain:?}");
    assert_eq!(plain.stdout, out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_collections_reads_the_durable_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let client = PersistClient::open(&url).await.unwrap();
    let written = written_shard(&client).await;
    let unwritten = new_shard();
    let catalog = DurableCatalog::open(&client).await.unwrap();
    let mut txn = catalog.begin::<Timestamp>();
    txn.insert_collection_metadata(BTreeMap::from([
        (GlobalId::User(1), written),
        (GlobalId::User(2), unwritten),
    ]))
    .unwrap();
    txn.commit().await.unwrap();

    let out = run(strata().args(["inspect", "collections", "--persist", &url, "--json"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["epoch"], catalog.epoch(), "{report}");
    let rows = report["collections"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(rows[0]["id"], "u1");
    assert_eq!(rows[0]["shard"], written.to_string());
    assert_eq!(rows[0]["upper"], serde_json::json!([3]));
    assert_eq!(rows[0]["since"], serde_json::json!([0]));
    assert_eq!(rows[1]["id"], "u2");
    assert_eq!(
        rows[1]["upper"],
        serde_json::Value::Null,
        "never written: unknown"
    );

    let out = run(strata().args(["inspect", "collections", "--persist", &url]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], format!("catalog epoch {}", catalog.epoch()));
    assert!(lines[1].starts_with("ID"), "{}", out.stdout);
    assert!(
        lines[2].starts_with("u1") && lines[2].contains(&written.to_string()),
        "{}",
        out.stdout
    );
    assert!(lines[3].contains("shard not written yet"), "{}", out.stdout);
}
