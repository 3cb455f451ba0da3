//! Concurrent transactions of one catalog instance (one epoch): every commit lands,
//! and contradicting commits fail with a typed error instead of overwriting.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{GlobalId, ShardId, StorageError, StorageTxn, Timestamp};
use strata_controller_core::DurableCatalog;
use strata_controller_core::catalog::{CatalogOptions, new_shard_id};
use strata_persist_backend::PersistClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_of_one_epoch_all_land() {
    let client = PersistClient::open("mem://catalog-concurrent")
        .await
        .unwrap();
    let catalog = DurableCatalog::open(&client).await.unwrap();
    // Every transaction begins before any commits.
    let txns: Vec<_> = (0..8u64)
        .map(|i| {
            let mut txn = catalog.begin::<Timestamp>();
            let shard = new_shard_id();
            txn.insert_collection_metadata(BTreeMap::from([(GlobalId::User(i), shard)]))
                .unwrap();
            txn.insert_unfinalized_shards(BTreeSet::from([new_shard_id()]))
                .unwrap();
            (txn, shard)
        })
        .collect();
    let mut expected = BTreeMap::new();
    let mut tasks = Vec::new();
    for (i, (mut txn, shard)) in txns.into_iter().enumerate() {
        expected.insert(GlobalId::User(i as u64), shard);
        tasks.push(tokio::spawn(async move {
            txn.commit().await.unwrap();
            txn.get_collection_metadata()
        }));
    }
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(
            seen.iter()
                .all(|(id, shard)| expected.get(id) == Some(shard))
        );
    }
    let latest = DurableCatalog::read_latest(&client, &CatalogOptions::default())
        .await
        .unwrap();
    assert_eq!(
        latest.collection_metadata, expected,
        "no commit overwrote another"
    );
    assert_eq!(latest.unfinalized_shards.len(), 8);
    assert_eq!(catalog.contents(), latest);
}

#[tokio::test]
async fn contradicting_commits_fail_typed_and_write_nothing() {
    let client = PersistClient::open("mem://catalog-contradict")
        .await
        .unwrap();
    let catalog = DurableCatalog::open(&client).await.unwrap();
    let (s1, s2, s3) = (
        ShardId::from_bytes([1; 16]),
        ShardId::from_bytes([2; 16]),
        ShardId::from_bytes([3; 16]),
    );
    let mut a = catalog.begin::<Timestamp>();
    let mut b = catalog.begin::<Timestamp>();
    let mut c = catalog.begin::<Timestamp>();
    let mut d = catalog.begin::<Timestamp>();
    a.insert_collection_metadata(BTreeMap::from([(GlobalId::User(1), s1)]))
        .unwrap();
    a.write_txn_wal_shard(s3).unwrap();
    b.insert_collection_metadata(BTreeMap::from([(GlobalId::User(1), s2)]))
        .unwrap();
    c.insert_collection_metadata(BTreeMap::from([(GlobalId::User(2), s1)]))
        .unwrap();
    d.write_txn_wal_shard(s2).unwrap();
    a.commit().await.unwrap();
    for (name, txn) in [
        ("same id", &mut b),
        ("same shard", &mut c),
        ("second txns shard", &mut d),
    ] {
        match txn.commit().await {
            Err(StorageError::InvalidUsage(msg)) => {
                assert!(msg.contains("conflicts"), "{name}: {msg}")
            }
            other => panic!("{name}: expected a conflict, got {other:?}"),
        }
    }
    let latest = DurableCatalog::read_latest(&client, &CatalogOptions::default())
        .await
        .unwrap();
    assert_eq!(
        latest.collection_metadata,
        BTreeMap::from([(GlobalId::User(1), s1)])
    );
    assert_eq!(latest.txns_shard, Some(s3));

    // A transaction that deletes what a concurrent one kept still applies its delete.
    let mut e = catalog.begin::<Timestamp>();
    let mut f = catalog.begin::<Timestamp>();
    e.delete_collection_metadata(BTreeSet::from([GlobalId::User(1)]));
    f.insert_unfinalized_shards(BTreeSet::from([s1])).unwrap();
    f.commit().await.unwrap();
    e.commit().await.unwrap();
    assert!(e.get_collection_metadata().is_empty());
    assert_eq!(
        e.get_unfinalized_shards(),
        BTreeSet::from([s1]),
        "e sees f's commit after its own"
    );
}
