//! The `StorageTxn` contract, run against the in-memory reference (`MemoryCatalog`) and
//! the durable catalog on the memory and file backends.

#![cfg(test)]

use async_trait::async_trait;
use strata_controller_api::{MemoryCatalog, MemoryStorageTxn, Timestamp};
use strata_controller_core::catalog::{CatalogHarness, storage_txn_contract};
use strata_controller_core::{DurableCatalog, DurableStorageTxn};
use strata_persist_backend::PersistClient;

struct Memory(MemoryCatalog);

#[async_trait]
impl CatalogHarness for Memory {
    type Txn = MemoryStorageTxn<Timestamp>;

    async fn begin(&mut self) -> Self::Txn {
        self.0.begin()
    }

    async fn take_over(&mut self) {
        self.0.bump_epoch();
    }
}

struct Durable {
    client: PersistClient,
    catalog: DurableCatalog,
}

impl Durable {
    async fn open(url: &str) -> Durable {
        let client = PersistClient::open(url).await.unwrap();
        let catalog = DurableCatalog::open(&client).await.unwrap();
        Durable { client, catalog }
    }
}

#[async_trait]
impl CatalogHarness for Durable {
    type Txn = DurableStorageTxn<Timestamp>;

    async fn begin(&mut self) -> Self::Txn {
        self.catalog.begin()
    }

    async fn take_over(&mut self) {
        self.catalog = DurableCatalog::open(&self.client).await.unwrap();
    }
}

#[tokio::test]
async fn memory_catalog_meets_the_contract() {
    storage_txn_contract(Memory(MemoryCatalog::new())).await;
}

#[tokio::test]
async fn durable_catalog_on_memory_meets_the_contract() {
    storage_txn_contract(Durable::open("mem://catalog-contract").await).await;
}

#[tokio::test]
async fn durable_catalog_on_file_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    storage_txn_contract(Durable::open(&url).await).await;
}

#[tokio::test]
async fn durable_catalog_contract_survives_a_fresh_client() {
    // Every take-over opens a new client of the same location: nothing is cached.
    struct Fresh {
        url: String,
        catalog: DurableCatalog,
    }
    #[async_trait]
    impl CatalogHarness for Fresh {
        type Txn = DurableStorageTxn<Timestamp>;
        async fn begin(&mut self) -> Self::Txn {
            self.catalog.begin()
        }
        async fn take_over(&mut self) {
            let client = PersistClient::open(&self.url).await.unwrap();
            self.catalog = DurableCatalog::open(&client).await.unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let client = PersistClient::open(&url).await.unwrap();
    let catalog = DurableCatalog::open(&client).await.unwrap();
    storage_txn_contract(Fresh { url, catalog }).await;
}
