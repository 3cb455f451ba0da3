//! The [`StorageTxn`] contract as a conformance suite: one public function that any
//! catalog implementation must pass, through a [`CatalogHarness`]. It runs against
//! [`strata_controller_api::MemoryCatalog`] and [`DurableCatalog`](super::DurableCatalog)
//! in `tests/catalog_contract.rs`. A failure panics with a message naming the rule.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use strata_controller_api::{
    GlobalId, ShardId, StorageError, StorageTxn, Timestamp, prepare_initialization,
};

/// A catalog under test, as seen by successive controllers.
#[async_trait]
pub trait CatalogHarness: Send {
    /// The transaction type.
    type Txn: StorageTxn<Timestamp> + Send;

    /// A transaction of the current controller, on the latest committed state.
    async fn begin(&mut self) -> Self::Txn;

    /// A new controller takes over: transactions begun later have a higher epoch, and
    /// transactions begun earlier are fenced.
    async fn take_over(&mut self);
}

fn s(n: u8) -> ShardId {
    ShardId::from_bytes([n; 16])
}

fn u(n: u64) -> GlobalId {
    GlobalId::User(n)
}

fn ok<V>(r: Result<V, StorageError>, what: &str) -> V {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Runs every rule of the [`StorageTxn`] contract against `harness`, which must start
/// empty.
pub async fn storage_txn_contract<H: CatalogHarness>(mut harness: H) {
    insert_conflicts(&mut harness).await;
    visibility_and_durability(&mut harness).await;
    unfinalized_and_txns_shard(&mut harness).await;
    fencing(&mut harness).await;
}

fn kind(err: StorageError) -> &'static str {
    match err {
        StorageError::CollectionIdReused(_) => "reused",
        StorageError::InvalidUsage(_) => "invalid",
        _ => "other",
    }
}

async fn insert_conflicts<H: CatalogHarness>(h: &mut H) {
    let mut txn = h.begin().await;
    assert!(
        txn.get_collection_metadata().is_empty(),
        "a new catalog is empty"
    );
    ok(
        txn.insert_collection_metadata(BTreeMap::from([(u(1), s(1))])),
        "insert",
    );
    ok(
        txn.insert_collection_metadata(BTreeMap::from([(u(1), s(1))])),
        "re-insert of the same mapping is a no-op",
    );
    let before = txn.get_collection_metadata();
    let cases = [
        (BTreeMap::from([(u(1), s(2))]), "reused"),
        (BTreeMap::from([(u(2), s(1))]), "invalid"),
        (BTreeMap::from([(u(2), s(2)), (u(3), s(1))]), "invalid"),
        (BTreeMap::from([(u(2), s(5)), (u(3), s(5))]), "invalid"),
    ];
    for (insert, want) in cases {
        match txn.insert_collection_metadata(insert.clone()) {
            Err(e) => assert_eq!(kind(e), want, "insert {insert:?}"),
            Ok(()) => panic!("insert {insert:?} must fail with {want}"),
        }
        assert_eq!(
            txn.get_collection_metadata(),
            before,
            "a failed insert changes nothing"
        );
    }
    ok(
        txn.insert_collection_metadata(BTreeMap::from([(u(2), s(2))])),
        "insert",
    );
    let removed = txn.delete_collection_metadata(BTreeSet::from([u(2), u(9)]));
    assert_eq!(
        removed,
        vec![(u(2), s(2))],
        "delete returns what it removed"
    );
    assert_eq!(
        txn.get_collection_metadata(),
        BTreeMap::from([(u(1), s(1))])
    );
    ok(txn.commit().await, "commit");
}

async fn visibility_and_durability<H: CatalogHarness>(h: &mut H) {
    let mut a = h.begin().await;
    assert_eq!(
        a.get_collection_metadata(),
        BTreeMap::from([(u(1), s(1))]),
        "committed state is visible"
    );
    ok(
        a.insert_collection_metadata(BTreeMap::from([(u(3), s(3))])),
        "insert",
    );
    assert!(
        a.get_collection_metadata().contains_key(&u(3)),
        "a transaction reads its own writes"
    );
    let other = h.begin().await;
    assert!(
        !other.get_collection_metadata().contains_key(&u(3)),
        "uncommitted writes are invisible"
    );
    ok(a.commit().await, "commit");
    assert!(
        h.begin()
            .await
            .get_collection_metadata()
            .contains_key(&u(3)),
        "committed writes are visible"
    );

    ok(
        a.insert_collection_metadata(BTreeMap::from([(u(4), s(4))])),
        "a transaction stays usable after commit",
    );
    ok(a.commit().await, "second commit");
    ok(a.commit().await, "an empty commit");
    let latest = h.begin().await.get_collection_metadata();
    assert_eq!(
        latest.keys().copied().collect::<Vec<_>>(),
        vec![u(1), u(3), u(4)]
    );

    h.take_over().await;
    let mut txn = h.begin().await;
    assert_eq!(
        txn.get_collection_metadata(),
        latest,
        "committed state survives a take-over"
    );
    txn.delete_collection_metadata(BTreeSet::from([u(3), u(4)]));
    ok(txn.commit().await, "commit");
}

async fn unfinalized_and_txns_shard<H: CatalogHarness>(h: &mut H) {
    let mut txn = h.begin().await;
    assert_eq!(txn.get_txn_wal_shard(), None, "no txns shard at first");
    let txns = ok(
        prepare_initialization(&mut txn, || s(50)),
        "prepare_initialization",
    );
    assert_eq!(txns, s(50));
    ok(
        txn.write_txn_wal_shard(s(50)),
        "rewriting the same txns shard is a no-op",
    );
    match txn.write_txn_wal_shard(s(51)) {
        Err(e) => assert_eq!(kind(e), "invalid", "a second txns shard"),
        Ok(()) => panic!("a different txns shard must fail"),
    }
    ok(
        txn.insert_unfinalized_shards(BTreeSet::from([s(60), s(61)])),
        "insert unfinalized",
    );
    txn.mark_shards_as_finalized(BTreeSet::from([s(60), s(99)]));
    assert_eq!(txn.get_unfinalized_shards(), BTreeSet::from([s(61)]));
    ok(txn.commit().await, "commit");

    h.take_over().await;
    let mut txn = h.begin().await;
    assert_eq!(
        txn.get_txn_wal_shard(),
        Some(s(50)),
        "the txns shard survives"
    );
    assert_eq!(
        txn.get_unfinalized_shards(),
        BTreeSet::from([s(61)]),
        "unfinalized shards survive"
    );
    let again = ok(
        prepare_initialization(&mut txn, || s(52)),
        "prepare_initialization again",
    );
    assert_eq!(again, s(50), "prepare_initialization keeps the txns shard");
    txn.mark_shards_as_finalized(BTreeSet::from([s(61)]));
    ok(txn.commit().await, "commit");
    assert!(
        h.begin().await.get_unfinalized_shards().is_empty(),
        "finalized shards are gone"
    );
}

async fn fencing<H: CatalogHarness>(h: &mut H) {
    let mut old = h.begin().await;
    let epoch = old.epoch();
    h.take_over().await;
    let mut new = h.begin().await;
    assert!(new.epoch() > epoch, "a take-over raises the epoch");
    ok(
        new.insert_collection_metadata(BTreeMap::from([(u(7), s(7))])),
        "insert",
    );
    ok(new.commit().await, "the new controller commits");

    ok(
        old.insert_collection_metadata(BTreeMap::from([(u(8), s(8))])),
        "insert",
    );
    match old.commit().await {
        Err(StorageError::Fenced { ours, current }) => {
            assert_eq!(ours, epoch, "Fenced names our epoch");
            assert_eq!(current, new.epoch(), "Fenced names the newer epoch");
        }
        other => panic!("an older controller's commit must be fenced, got {other:?}"),
    }
    let latest = h.begin().await.get_collection_metadata();
    assert!(
        latest.contains_key(&u(7)) && !latest.contains_key(&u(8)),
        "a fenced commit writes nothing"
    );
    assert!(
        matches!(old.commit().await, Err(StorageError::Fenced { .. })),
        "still fenced"
    );
}
