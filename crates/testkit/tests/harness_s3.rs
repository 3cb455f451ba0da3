//! The harness on S3 (feature `s3`): `cargo xtask test` starts an S3 server and sets
//! `STRATA_S3_TEST_BUCKET` and the `AWS_*` variables. Without the bucket variable the
//! harness must refuse to build and say which variable is missing.
#![cfg(feature = "s3")]

use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType};
use strata_testkit::harness::{Backend, Harness, HarnessError, assert_consolidated_eq};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_restarts_on_s3() {
    let bucket = std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty());
    let built = Harness::builder()
        .backend(Backend::S3FromEnv)
        .replicas(1)
        .build()
        .await;
    let Some(bucket) = bucket else {
        let error = built.unwrap_err();
        assert!(matches!(error, HarnessError::Backend { .. }), "{error:?}");
        assert!(
            error.to_string().contains("STRATA_S3_TEST_BUCKET"),
            "{error}"
        );
        return;
    };
    let mut harness = built.unwrap();
    assert!(
        harness
            .location()
            .starts_with(&format!("s3://{bucket}/strata-harness-")),
        "{}",
        harness.location()
    );
    let table = GlobalId::User(1);
    let desc = RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish();
    harness.create_table(table, desc).await.unwrap();
    let row = Row::pack(&[Datum::Int64(1)]);
    let at = harness.append(table, vec![(row.clone(), 1)]).await.unwrap();
    let before = harness.controller().epoch();
    assert!(harness.restart_controller().await.unwrap() > before);
    assert_consolidated_eq(
        harness.snapshot_multiset(table, at).await.unwrap(),
        vec![(row, 1)],
    );
}
