//! The conformance suite against the in-memory backend.

use futures::FutureExt;
use strata_persist_backend::{PersistClient, PersistConfig, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    let name = format!("mem://conformance-{}", uuid::Uuid::new_v4().simple());
    let factory = move || {
        let name = name.clone();
        async move {
            PersistClient::open_with_config(&name, PersistConfig::for_tests())
                .await
                .unwrap()
        }
        .boxed()
    };
    conformance::run_all(factory).await;
}

#[tokio::test]
async fn same_name_shares_data_other_name_does_not() {
    let shard = conformance::new_shard();
    let a = PersistClient::open("mem://share-a").await.unwrap();
    let b = PersistClient::open("mem://share-a").await.unwrap();
    let c = PersistClient::open("mem://share-c").await.unwrap();
    let _w = a
        .open_writer::<strata_controller_api::Timestamp>(shard, conformance::test_desc())
        .await
        .unwrap();
    assert!(b.inspect(shard).await.is_ok());
    assert!(c.inspect(shard).await.is_err());
}
