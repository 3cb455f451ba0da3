//! The txns shard's conformance cases against memory, the local file backend and, when
//! `cargo xtask test` provides a server (`STRATA_S3_TEST_BUCKET`), S3.

use futures::FutureExt;
use strata_persist_backend::{PersistClient, PersistConfig, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_conformance_memory() {
    let name = format!("mem://txns-conformance-{}", uuid::Uuid::new_v4().simple());
    let factory = move || {
        let name = name.clone();
        async move {
            PersistClient::open_with_config(&name, PersistConfig::for_tests())
                .await
                .unwrap()
        }
        .boxed()
    };
    conformance::txns::run_all(&factory).await;
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_conformance_file() {
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
    conformance::txns::run_all(&factory).await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txns_conformance_s3() {
    let Some(bucket) = std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!(
            "txns_conformance_s3: STRATA_S3_TEST_BUCKET is unset, no S3 server to test against"
        );
        return;
    };
    let url = format!(
        "s3://{bucket}/txns-conformance-{}",
        uuid::Uuid::new_v4().simple()
    );
    let factory = move || {
        let url = url.clone();
        async move {
            PersistClient::open_with_config(&url, PersistConfig::for_tests())
                .await
                .unwrap()
        }
        .boxed()
    };
    conformance::txns::run_all(&factory).await;
}
