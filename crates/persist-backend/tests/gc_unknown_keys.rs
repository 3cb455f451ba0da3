//! GC deletes only objects whose keys it can read as its own. Anything else under a
//! shard's or a txns shard's parts prefix (an operator's note, a key of another tool, a
//! malformed name) is left alone, however old it is.

#![cfg(test)]

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{PersistClient, PersistConfig};

async fn put(store: &dyn ObjectStore, key: &str) {
    store
        .put(&Path::from(key), PutPayload::from_static(b"not ours"))
        .await
        .unwrap();
}

async fn exists(store: &dyn ObjectStore, key: &str) -> bool {
    store.head(&Path::from(key)).await.is_ok()
}

#[tokio::test]
async fn shard_gc_leaves_unknown_keys_alone() {
    let url = format!("mem://gc-unknown-{}", uuid::Uuid::new_v4().simple());
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let client = PersistClient::open_with_config(&url, cfg).await.unwrap();
    let shard = new_shard();
    let mut w = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    let t = |n| Antichain::from_elem(Timestamp::new(n));
    let orphan = w
        .batch(&[(Ok(test_row(1)), Timestamp::new(0), 1)], t(0), t(1))
        .await
        .unwrap();
    w.expire().await.unwrap();
    let store = client.location().store.clone();
    let strays = [
        format!("shards/{shard}/parts/README"),
        format!("shards/{shard}/parts/gone-writer/part/extra"),
        format!("shards/{shard}/parts/NOTES.md"),
    ];
    for key in &strays {
        put(store.as_ref(), key).await;
    }

    let report = client.gc(shard).await.unwrap();
    assert_eq!(orphan.part_keys().len(), 1);
    assert_eq!(
        report.deleted_orphans, 1,
        "the gone writer's unlinked part is deleted"
    );
    for key in &strays {
        assert!(exists(store.as_ref(), key).await, "{key} was deleted");
    }
}

#[tokio::test]
async fn txns_gc_leaves_unknown_keys_alone() {
    let url = format!("mem://gc-unknown-txns-{}", uuid::Uuid::new_v4().simple());
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let client = PersistClient::open_with_config(&url, cfg).await.unwrap();
    let (txns, a) = (new_shard(), new_shard());
    let mut h = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    h.register(Timestamp::new(0), [(a, test_desc())])
        .await
        .unwrap()
        .unwrap();
    let mut txn = Txn::new();
    txn.write(a, [(Ok(test_row(1)), 1)]);
    let _left_unapplied = txn
        .commit_at(&mut h, Timestamp::new(1))
        .await
        .unwrap()
        .unwrap();
    let store = client.location().store.clone();
    let strays = [
        format!("txns/{txns}/parts/not-a-shard/p"),
        format!("txns/{txns}/parts/stray"),
        format!("txns/{txns}/parts/{a}/p/extra"),
    ];
    for key in &strays {
        put(store.as_ref(), key).await;
    }
    let orphan = format!("txns/{txns}/parts/{a}/crashed-committer");
    put(store.as_ref(), &orphan).await;

    assert_eq!(h.gc_orphans().await.unwrap(), 1, "only the orphan goes");
    assert!(!exists(store.as_ref(), &orphan).await);
    for key in &strays {
        assert!(exists(store.as_ref(), key).await, "{key} was deleted");
    }
}
