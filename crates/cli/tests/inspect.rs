//! `strata inspect` on state written by the real libraries in a temporary directory.

#![cfg(test)]

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

    // The table fits 80 columns; --raw adds raw timestamps and the shard ids.
    let out = run(strata().args(["inspect", "collections", "--persist", &url]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("catalog epoch {} · as of ", catalog.epoch())),
        "{}",
        out.stdout
    );
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "STATUS", "SINCE", "UPPER", "LAG", "PARTS"]
    );
    // Logical times (not wall-clock milliseconds) stay numbers.
    let u1: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(u1[..5], ["u1", "-", "-", "0", "3"], "{}", out.stdout);
    assert!(lines[3].contains("unwritten"), "{}", out.stdout);
    for line in &lines {
        assert!(line.chars().count() <= 80, "{line}");
    }
    let raw = run(strata().args(["inspect", "collections", "--persist", &url, "--raw"]));
    assert_eq!(raw.code, Some(0), "{raw:?}");
    assert!(raw.stdout.contains(&written.to_string()), "{}", raw.stdout);
}

/// Every file under `root` with its bytes, in order.
fn tree(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// Inspection writes nothing: the location's files (names and bytes) are the same
/// after `inspect collections` and `inspect shard` as before. (A read-only copy cannot
/// be simulated with file modes here, where tests may run as root, so the files
/// themselves are compared; `persist-backend`'s `read_only` and `controller-core`'s
/// `catalog_read_only` tests refuse every write with a store wrapper.)
#[test]
fn inspection_leaves_every_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    // The state is written on a runtime of its own, dropped before the inspection, so
    // no lease work of its handles can still be writing.
    let setup = tokio::runtime::Runtime::new().unwrap();
    let written = setup.block_on(async {
        let client = PersistClient::open(&url).await.unwrap();
        let written = written_shard(&client).await;
        let catalog = DurableCatalog::open(&client).await.unwrap();
        let mut txn = catalog.begin::<Timestamp>();
        txn.insert_collection_metadata(BTreeMap::from([(GlobalId::User(1), written)]))
            .unwrap();
        txn.commit().await.unwrap();
        written
    });
    drop(setup);
    let before = tree(dir.path());

    let shard = written.to_string();
    for args in [
        vec!["inspect", "collections", "--persist", &url],
        vec!["inspect", "collections", "--persist", &url, "--json"],
        vec!["inspect", "shard", "--persist", &url, &shard],
    ] {
        let out = run(strata().args(&args));
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        let after = tree(dir.path());
        let changed: Vec<_> = after
            .iter()
            .filter(|f| !before.contains(f))
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert!(changed.is_empty(), "{args:?} wrote {changed:?}");
        assert_eq!(after.len(), before.len(), "{args:?} removed files");
    }
}
