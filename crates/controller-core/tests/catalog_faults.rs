//! The durable catalog over a store that fails calls, determinately and
//! indeterminately: every acknowledged commit survives, and a commit that failed
//! determinately never shows up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strata_controller_api::{Certainty, GlobalId, StorageTxn, Timestamp};
use strata_controller_core::DurableCatalog;
use strata_controller_core::catalog::{CatalogOptions, new_shard_id};
use strata_persist_backend::location::memory_store;
use strata_persist_backend::testing::{Faults, FaultyStore};
use strata_persist_backend::{Location, PersistClient, PersistConfig};

#[tokio::test]
async fn commits_under_injected_faults() {
    let name = "catalog-faults";
    let faults = Faults::new(120, 80);
    let store = Arc::new(FaultyStore::new(memory_store(name), Arc::clone(&faults)));
    let url = format!("mem://{name}");
    let client = PersistClient::from_location(
        Location::from_store(store, "", &url),
        PersistConfig::default(),
    );

    let mut open_attempts = 0;
    let catalog = loop {
        open_attempts += 1;
        assert!(open_attempts < 100, "open never succeeded");
        if let Ok(c) = DurableCatalog::open(&client).await {
            break c;
        }
    };

    let (mut acked, mut lost, mut maybe) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for i in 0..60u64 {
        let mut txn = catalog.begin::<Timestamp>();
        txn.insert_collection_metadata(BTreeMap::from([(GlobalId::User(i), new_shard_id())]))
            .unwrap();
        match txn.commit().await {
            Ok(()) => acked.insert(i),
            Err(e) if e.certainty() == Certainty::Determinate => {
                assert!(
                    !matches!(e, strata_controller_api::StorageError::Fenced { .. }),
                    "{e}"
                );
                lost.insert(i)
            }
            Err(_) => maybe.insert(i),
        };
    }
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "faults were injected"
    );
    assert!(!acked.is_empty(), "some commits succeed");

    faults.disable();
    let clean = PersistClient::open(&url).await.unwrap();
    let latest = DurableCatalog::read_latest(&clean, &CatalogOptions::default())
        .await
        .unwrap();
    let found: BTreeSet<u64> = latest
        .collection_metadata
        .keys()
        .map(|id| match id {
            GlobalId::User(n) => *n,
            other => panic!("unexpected id {other}"),
        })
        .collect();
    assert!(
        found.is_superset(&acked),
        "acknowledged commits survive: {found:?} vs {acked:?}"
    );
    assert!(
        found.is_disjoint(&lost),
        "determinate failures never land: {found:?} vs {lost:?}"
    );
    assert!(found.difference(&acked).all(|i| maybe.contains(i)));
    assert_eq!(latest.epoch, catalog.epoch());

    // With faults off, the next commit makes the instance and storage agree exactly.
    let mut txn = catalog.begin::<Timestamp>();
    txn.insert_unfinalized_shards(BTreeSet::from([new_shard_id()]))
        .unwrap();
    txn.commit().await.unwrap();
    let latest = DurableCatalog::read_latest(&clean, &CatalogOptions::default())
        .await
        .unwrap();
    assert_eq!(&latest, txn.contents());
    assert_eq!(latest, catalog.contents());
}
