//! The conformance suite against the local file backend (fsynced).
#![cfg(feature = "file")]

use futures::FutureExt;
use strata_persist_backend::{PersistClient, PersistConfig, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("persist").display());
    let factory = move || {
        let url = url.clone();
        async move {
            PersistClient::open_with_config(&url, PersistConfig::for_tests())
                .await
                .unwrap()
        }
        .boxed()
    };
    conformance::run_all(factory).await;
}

#[tokio::test]
async fn data_survives_reopening_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let shard = conformance::new_shard();
    let t = strata_controller_api::Timestamp::new;
    let fr = |x| strata_controller_api::Antichain::from_elem(t(x));
    {
        let client = PersistClient::open_with_config(&url, PersistConfig::for_tests())
            .await
            .unwrap();
        let mut w = client
            .open_writer(shard, conformance::test_desc())
            .await
            .unwrap();
        let ups = vec![(Ok(conformance::test_row(1)), t(0), 1)];
        w.compare_and_append(&ups, fr(0), fr(1))
            .await
            .unwrap()
            .unwrap();
    }
    let client = PersistClient::open_with_config(&url, PersistConfig::for_tests())
        .await
        .unwrap();
    let mut r = client
        .open_leased_reader(shard, conformance::test_desc())
        .await
        .unwrap();
    assert_eq!(
        r.snapshot(&t(0)).await.unwrap(),
        vec![(Ok(conformance::test_row(1)), t(0), 1)]
    );
}
