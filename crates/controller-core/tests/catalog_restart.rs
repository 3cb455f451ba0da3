//! The durable catalog across restarts, take-overs, racing opens and corruption, on the
//! memory and file backends.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{
    Antichain, Certainty, Datum, GlobalId, RelationDesc, Row, ScalarType, ShardId, StorageError,
    StorageTxn, Timestamp,
};
use strata_controller_core::DurableCatalog;
use strata_controller_core::catalog::{
    CATALOG_READER_ID, CATALOG_SHARD_ID, CatalogError, CatalogOptions, initialize_state,
    new_shard_id, prepare_state,
};
use strata_persist_backend::PersistClient;

/// A location per test: `mem://` with a unique name, or a temp directory.
struct Location {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

fn locations(name: &str) -> Vec<Location> {
    let dir = tempfile::tempdir().unwrap();
    vec![
        Location {
            url: format!("mem://catalog-{name}"),
            _dir: None,
        },
        Location {
            url: format!("file://{}", dir.path().display()),
            _dir: Some(dir),
        },
    ]
}

/// A fresh client (its own cache), so every open reads from storage.
async fn client(loc: &Location) -> PersistClient {
    PersistClient::open(&loc.url).await.unwrap()
}

fn u(n: u64) -> GlobalId {
    GlobalId::User(n)
}

#[tokio::test]
async fn ten_restarts_keep_every_mapping_and_raise_the_epoch_by_one() {
    for loc in locations("restarts") {
        let mut expected: BTreeMap<GlobalId, ShardId> = BTreeMap::new();
        let mut last_epoch = 0;
        let mut previous: Option<DurableCatalog> = None;
        for round in 0..10u64 {
            let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
            assert_eq!(
                catalog.epoch(),
                last_epoch + 1,
                "{}: round {round}",
                loc.url
            );
            last_epoch = catalog.epoch();
            let mut txn = catalog.begin::<Timestamp>();
            assert_eq!(txn.epoch(), catalog.epoch());
            assert_eq!(
                txn.get_collection_metadata(),
                expected,
                "{}: round {round}",
                loc.url
            );

            // The previous controller is still running: its next commit is fenced.
            if let Some(old) = previous.take() {
                let mut stale = old.begin::<Timestamp>();
                stale
                    .insert_collection_metadata(BTreeMap::from([(u(1000), new_shard_id())]))
                    .unwrap();
                match stale.commit().await {
                    Err(StorageError::Fenced { ours, current }) => {
                        assert_eq!((ours, current), (last_epoch - 1, last_epoch));
                    }
                    other => panic!("old controller not fenced: {other:?}"),
                }
            }

            let added = prepare_state(
                &mut txn,
                BTreeSet::from([u(round), u(round + 100)]),
                BTreeSet::new(),
                &mut new_shard_id,
            )
            .unwrap();
            txn.commit().await.unwrap();
            expected.extend(added.added);
            // A second commit in the same epoch also survives.
            let mut txn = catalog.begin::<Timestamp>();
            txn.delete_collection_metadata(BTreeSet::from([u(round + 100)]));
            txn.commit().await.unwrap();
            expected.remove(&u(round + 100));
            previous = Some(catalog);
        }
        let latest = DurableCatalog::read_latest(&client(&loc).await, &CatalogOptions::default())
            .await
            .unwrap();
        assert_eq!(latest.collection_metadata, expected);
        assert_eq!(latest.epoch, 10, "read_latest claims no epoch");
        assert_eq!(expected.len(), 10);
    }
}

#[tokio::test]
async fn an_old_catalog_is_fenced_even_before_the_new_one_writes() {
    for loc in locations("fenced") {
        let old = DurableCatalog::open(&client(&loc).await).await.unwrap();
        let mut old_txn = old.begin::<Timestamp>();
        old_txn
            .insert_collection_metadata(BTreeMap::from([(u(1), new_shard_id())]))
            .unwrap();
        old_txn.commit().await.unwrap();

        let new = DurableCatalog::open(&client(&loc).await).await.unwrap();
        assert_eq!(new.epoch(), old.epoch() + 1);
        assert_eq!(new.contents().collection_metadata.len(), 1);

        old_txn
            .insert_collection_metadata(BTreeMap::from([(u(2), new_shard_id())]))
            .unwrap();
        let err = old_txn.commit().await.unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::Fenced {
                    ours: 1,
                    current: 2
                }
            ),
            "{err}"
        );
        assert_eq!(err.certainty(), Certainty::Determinate);
        // An empty commit of the old controller is fenced too.
        assert!(matches!(
            old.begin::<Timestamp>().commit().await,
            Err(StorageError::Fenced { .. })
        ));
        let latest = DurableCatalog::read_latest(&client(&loc).await, &CatalogOptions::default())
            .await
            .unwrap();
        assert_eq!(
            latest.collection_metadata.keys().collect::<Vec<_>>(),
            vec![&u(1)]
        );
        assert_eq!(latest.epoch, 2);
    }
}

#[tokio::test]
async fn unfinalized_shards_survive_restarts_until_marked_finalized() {
    for loc in locations("unfinalized") {
        let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
        let mut txn = catalog.begin::<Timestamp>();
        let pending = initialize_state(
            &mut txn,
            BTreeSet::from([u(1), u(2), u(3)]),
            BTreeSet::new(),
        )
        .unwrap();
        assert!(pending.is_empty());
        txn.commit().await.unwrap();
        let mapping = catalog.contents().collection_metadata;
        let mut txn = catalog.begin::<Timestamp>();
        let dropped = prepare_state(
            &mut txn,
            BTreeSet::new(),
            BTreeSet::from([u(1), u(2)]),
            &mut new_shard_id,
        )
        .unwrap();
        txn.commit().await.unwrap();
        let want: BTreeSet<ShardId> = [mapping[&u(1)], mapping[&u(2)]].into();
        assert_eq!(
            dropped.dropped.values().copied().collect::<BTreeSet<_>>(),
            want
        );

        // Two restarts without finalizing: the shards are still pending.
        for _ in 0..2 {
            let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
            let mut txn = catalog.begin::<Timestamp>();
            let pending =
                initialize_state(&mut txn, BTreeSet::from([u(3)]), BTreeSet::new()).unwrap();
            assert_eq!(pending, want, "{}", loc.url);
            assert_eq!(
                txn.get_collection_metadata(),
                BTreeMap::from([(u(3), mapping[&u(3)])])
            );
            txn.commit().await.unwrap();
        }

        // Finalize one, restart, finalize the other, restart.
        let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
        let mut txn = catalog.begin::<Timestamp>();
        txn.mark_shards_as_finalized(BTreeSet::from([mapping[&u(1)]]));
        txn.commit().await.unwrap();
        let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
        let mut txn = catalog.begin::<Timestamp>();
        assert_eq!(
            txn.get_unfinalized_shards(),
            BTreeSet::from([mapping[&u(2)]])
        );
        txn.mark_shards_as_finalized(BTreeSet::from([mapping[&u(2)]]));
        txn.commit().await.unwrap();
        let catalog = DurableCatalog::open(&client(&loc).await).await.unwrap();
        assert!(catalog.contents().unfinalized_shards.is_empty());
        assert_eq!(catalog.epoch(), 6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_opens_win_distinct_epochs() {
    for loc in locations("race") {
        let mut claimed: BTreeSet<u64> = BTreeSet::new();
        for round in 0..8 {
            let (a, b) = (client(&loc).await, client(&loc).await);
            let ta = tokio::spawn(async move { DurableCatalog::open(&a).await });
            let tb = tokio::spawn(async move { DurableCatalog::open(&b).await });
            let results = [ta.await.unwrap(), tb.await.unwrap()];
            let mut winners = Vec::new();
            for r in results {
                match r {
                    Ok(c) => {
                        assert!(
                            claimed.insert(c.epoch()),
                            "round {round}: epoch {} won twice",
                            c.epoch()
                        );
                        winners.push(c);
                    }
                    Err(CatalogError::Fenced { ours, current }) => {
                        assert!(current > ours);
                        assert!(
                            claimed.insert(ours),
                            "round {round}: epoch {ours} claimed twice"
                        );
                    }
                    Err(e) => panic!("round {round}: unexpected {e}"),
                }
            }
            assert!(!winners.is_empty(), "round {round}: someone wins");
            winners.sort_by_key(DurableCatalog::epoch);
            // Only the newest winner can commit.
            let newest = winners.pop().unwrap();
            for loser in winners {
                let mut txn = loser.begin::<Timestamp>();
                txn.insert_unfinalized_shards(BTreeSet::from([new_shard_id()]))
                    .unwrap();
                assert!(matches!(
                    txn.commit().await,
                    Err(StorageError::Fenced { .. })
                ));
            }
            let mut txn = newest.begin::<Timestamp>();
            txn.insert_collection_metadata(BTreeMap::from([(u(round), new_shard_id())]))
                .unwrap();
            txn.commit().await.unwrap();
            let max = *claimed.iter().max().unwrap();
            assert_eq!(newest.epoch(), max, "round {round}: the highest claim wins");
        }
        let last = DurableCatalog::open(&client(&loc).await).await.unwrap();
        assert_eq!(last.epoch(), claimed.iter().max().unwrap() + 1);
        assert_eq!(last.contents().collection_metadata.len(), 8);
    }
}

fn raw_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("kind", ScalarType::String.nullable(false))
        .with_column("key", ScalarType::String.nullable(false))
        .with_column("value", ScalarType::String.nullable(false))
        .finish()
}

fn raw_row(kind: &str, key: &str, value: &str) -> Row {
    Row::pack(&[
        Datum::String(kind.into()),
        Datum::String(key.into()),
        Datum::String(value.into()),
    ])
}

/// Appends `rows` to the metadata shard behind the catalog's back, as one version.
async fn write_raw(client: &PersistClient, rows: &[(Row, i64)]) {
    let mut write = client
        .open_writer::<Timestamp>(CATALOG_SHARD_ID, raw_desc())
        .await
        .unwrap();
    let upper = write.fetch_recent_upper().await.unwrap().clone();
    let at = *upper.as_option().unwrap();
    let updates: Vec<_> = rows.iter().map(|(r, d)| (Ok(r.clone()), at, *d)).collect();
    let next = Antichain::from_elem(Timestamp::new(at.as_millis() + 1));
    write
        .compare_and_append(&updates, upper, next)
        .await
        .unwrap()
        .unwrap();
}

fn expect_corrupt(err: &CatalogError, want: &str) {
    match err {
        CatalogError::CorruptRow { shard, reason, row } => {
            assert_eq!(*shard, CATALOG_SHARD_ID);
            assert!(
                reason.contains(want),
                "reason {reason:?} lacks {want:?} (row {row})"
            );
        }
        other => panic!("expected a corrupt row, got {other}"),
    }
}

#[tokio::test]
async fn a_corrupt_row_is_a_typed_error() {
    type Case = (&'static str, Vec<(Row, i64)>, &'static str);
    let cases: [Case; 3] = [
        (
            "bad-shard",
            vec![(raw_row("collection", "u9", "not-a-shard"), 1)],
            "invalid shard id",
        ),
        (
            "bad-kind",
            vec![(raw_row("mystery", "", ""), 1)],
            "unknown kind",
        ),
        (
            "twice",
            vec![(raw_row("epoch", "", "1"), 1)],
            "multiplicity 2",
        ),
    ];
    for (name, rows, want) in cases {
        for loc in locations(&format!("corrupt-{name}")) {
            let running = DurableCatalog::open(&client(&loc).await).await.unwrap();
            write_raw(&client(&loc).await, &rows).await;

            let err = DurableCatalog::open(&client(&loc).await).await.unwrap_err();
            expect_corrupt(&err, want);
            let err = DurableCatalog::read_latest(&client(&loc).await, &CatalogOptions::default())
                .await
                .unwrap_err();
            expect_corrupt(&err, want);

            // The running catalog finds the corruption on its next commit: a determinate
            // persist error whose source is the catalog error.
            let mut txn = running.begin::<Timestamp>();
            txn.insert_collection_metadata(BTreeMap::from([(u(1), new_shard_id())]))
                .unwrap();
            match txn.commit().await {
                Err(StorageError::Persist { certainty, source }) => {
                    assert_eq!(certainty, Certainty::Determinate);
                    let inner = source
                        .downcast_ref::<CatalogError>()
                        .expect("a catalog error");
                    expect_corrupt(inner, want);
                }
                other => panic!("{name}: expected a persist error, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn the_epoch_lives_in_the_critical_since_and_abandoned_claims_are_skipped() {
    for loc in locations("opaque") {
        let c = client(&loc).await;
        let catalog = DurableCatalog::open(&c).await.unwrap();
        let since = c
            .open_critical_since::<Timestamp>(CATALOG_SHARD_ID, CATALOG_READER_ID)
            .await
            .unwrap();
        assert_eq!(since.opaque(), catalog.epoch(), "the opaque is the epoch");

        // Enough commits that the catalog moves its critical since for compaction.
        for i in 0..40 {
            let mut txn = catalog.begin::<Timestamp>();
            txn.insert_collection_metadata(BTreeMap::from([(u(i), new_shard_id())]))
                .unwrap();
            txn.commit().await.unwrap();
        }
        let mut since = c
            .open_critical_since::<Timestamp>(CATALOG_SHARD_ID, CATALOG_READER_ID)
            .await
            .unwrap();
        assert!(
            since.since().as_option().unwrap().as_millis() >= 16,
            "since {:?}",
            since.since()
        );

        // A controller claimed epoch 2 in the opaque and died before writing its row.
        let held = since.since().clone();
        since
            .compare_and_downgrade_since(1, (2, &held))
            .await
            .unwrap()
            .unwrap();
        // The running catalog learns it is fenced no later than its next since downgrade.
        let mut fenced = false;
        for i in 100..140 {
            let mut txn = catalog.begin::<Timestamp>();
            txn.insert_collection_metadata(BTreeMap::from([(u(i), new_shard_id())]))
                .unwrap();
            match txn.commit().await {
                Ok(()) => assert!(!fenced, "no commit after being fenced"),
                Err(StorageError::Fenced {
                    ours: 1,
                    current: 2,
                }) => fenced = true,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(fenced, "the catalog noticed the newer claim");

        let next = DurableCatalog::open(&client(&loc).await).await.unwrap();
        assert_eq!(
            next.epoch(),
            3,
            "an abandoned claim's epoch is never reused"
        );
        let committed = next.contents().collection_metadata.len();
        assert!((40..80).contains(&committed), "{committed}");
    }
}
