//! Reading the durable catalog for inspection writes nothing: over a store that
//! refuses every write, `DurableCatalog::read_latest` returns what the owner committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_controller_api::{GlobalId, ShardId, StorageTxn, Timestamp};
use strata_controller_core::catalog::{CatalogOptions, DurableCatalog};
use strata_persist_backend::testing::DenyWrites;
use strata_persist_backend::{Location, PersistClient, PersistConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_latest_writes_nothing() {
    let url = format!("mem://catalog-read-only-{}", uuid::Uuid::new_v4().simple());
    let owner = PersistClient::open(&url).await.unwrap();
    // Before any controller ran here, the catalog reads as empty.
    let none = DurableCatalog::read_latest(&owner, &CatalogOptions::default())
        .await
        .unwrap();
    assert_eq!(none, Default::default());
    let catalog = DurableCatalog::open(&owner).await.unwrap();
    let mut txn = catalog.begin::<Timestamp>();
    let mapping = BTreeMap::from([(GlobalId::User(1), ShardId::from_bytes([1; 16]))]);
    txn.insert_collection_metadata(mapping.clone()).unwrap();
    txn.commit().await.unwrap();

    let deny = DenyWrites::new(Arc::clone(&owner.location().store));
    let loc = Location::from_store(deny.clone(), "", &url)
        .with_consensus(owner.location().consensus.clone());
    let inspector = PersistClient::from_location(loc, PersistConfig::default());
    for _ in 0..3 {
        let contents = DurableCatalog::read_latest(&inspector, &CatalogOptions::default())
            .await
            .unwrap();
        assert_eq!(contents.collection_metadata, mapping);
        assert_eq!(contents.epoch, catalog.epoch());
    }
    assert_eq!(
        deny.refused(),
        Vec::<String>::new(),
        "reading the catalog wrote"
    );
}
