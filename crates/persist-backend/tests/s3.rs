//! The conformance suite against a real S3 server (`cargo xtask test` starts moto on
//! 127.0.0.1 and sets `STRATA_S3_TEST_BUCKET`, `AWS_ENDPOINT_URL` and credentials).
//! Without `STRATA_S3_TEST_BUCKET` the test returns early: it has no server to use.
#![cfg(feature = "s3")]

use futures::FutureExt;
use strata_persist_backend::{
    LocationError, PersistClient, PersistConfig, PersistError, conformance,
};

fn bucket() -> Option<String> {
    std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let Some(bucket) = bucket() else {
        eprintln!("conformance_s3: STRATA_S3_TEST_BUCKET is unset, no S3 server to test against");
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("strata_persist_backend=info")
        .with_test_writer()
        .try_init();
    let url = format!(
        "s3://{bucket}/conformance-{}",
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
    conformance::run_all(factory).await;
}

#[tokio::test]
async fn missing_bucket_is_a_typed_error_at_open() {
    let Some(_) = bucket() else {
        eprintln!("missing_bucket_is_a_typed_error_at_open: STRATA_S3_TEST_BUCKET is unset");
        return;
    };
    let url = format!("s3://no-such-bucket-{}/x", uuid::Uuid::new_v4().simple());
    let err = PersistClient::open(&url).await.unwrap_err();
    assert!(
        matches!(
            err,
            PersistError::Location(LocationError::Unreachable { .. })
        ),
        "{err:?}"
    );
}
