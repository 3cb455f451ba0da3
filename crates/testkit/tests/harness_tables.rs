//! The harness with tables: create, append, read back as multisets, compare; on every
//! backend the harness builds without the environment.

#![cfg(test)]

use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType, Timestamp};
use strata_testkit::harness::{Backend, Harness, assert_consolidated_eq};

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .with_column("s", ScalarType::String.nullable(true))
        .finish()
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x), Datum::String(format!("row {x}"))])
}

async fn tables_round_trip(backend: Backend) {
    let mut harness = Harness::builder()
        .backend(backend)
        .replicas(1)
        .build()
        .await
        .unwrap();
    let (orders, items) = (GlobalId::User(1), GlobalId::User(2));
    harness.create_table(orders, desc()).await.unwrap();
    harness.create_table(items, desc()).await.unwrap();

    let first = harness
        .append(orders, vec![(row(1), 1), (row(2), 2)])
        .await
        .unwrap();
    let second = harness
        .append(orders, vec![(row(2), -1), (row(3), 1)])
        .await
        .unwrap();
    assert!(first < second);
    harness.append(items, vec![(row(9), 1)]).await.unwrap();

    // Each as-of sees exactly the writes at or before it.
    let at_first = harness.snapshot_multiset(orders, first).await.unwrap();
    assert_consolidated_eq(at_first, vec![(row(1), 1), (row(2), 2)]);
    let at_second = harness.snapshot_multiset(orders, second).await.unwrap();
    assert_eq!(
        at_second.clone().into_iter().collect::<Vec<_>>(),
        vec![(row(1), 1), (row(2), 1), (row(3), 1)]
    );
    assert_consolidated_eq(at_second, vec![(row(3), 1), (row(2), 1), (row(1), 1)]);
    let latest = harness.upper_time(items).unwrap() - 1;
    let items_now = harness
        .snapshot_multiset(items, Timestamp::new(latest))
        .await
        .unwrap();
    assert_consolidated_eq(items_now, vec![(row(9), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_memory() {
    tables_round_trip(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_a_temporary_directory() {
    tables_round_trip(Backend::TempDir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_harness_has_its_own_location() {
    let a = Harness::builder().replicas(0).build().await.unwrap();
    let b = Harness::builder().replicas(0).build().await.unwrap();
    assert!(a.location().starts_with("mem://"), "{}", a.location());
    assert_ne!(a.location(), b.location());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatch_panics_with_a_row_diff() {
    let mut harness = Harness::builder().replicas(0).build().await.unwrap();
    let table = GlobalId::User(1);
    harness.create_table(table, desc()).await.unwrap();
    let at = harness.append(table, vec![(row(1), 1)]).await.unwrap();
    let actual = harness.snapshot_multiset(table, at).await.unwrap();
    let caught = std::panic::catch_unwind(|| {
        assert_consolidated_eq(actual, vec![(row(1), 2)]);
    })
    .unwrap_err();
    let message = caught.downcast_ref::<String>().unwrap();
    assert!(message.contains("actual 1 expected 2"), "{message}");
}
