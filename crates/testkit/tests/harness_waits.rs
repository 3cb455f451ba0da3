//! The harness's waits: what a timeout says, and the controllable clock.

use std::time::Duration;

use strata_controller_api::{
    Collections, Datum, GlobalId, RelationDesc, Row, ScalarType, Timestamp,
};
use strata_testkit::harness::{Harness, HarnessError, ManualClock};

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_upper_timeout_names_the_id_the_target_and_the_last_upper() {
    let mut harness = Harness::builder()
        .replicas(1)
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let table = GlobalId::User(42);
    harness.create_table(table, desc()).await.unwrap();
    let at = harness
        .append(table, vec![(Row::pack(&[Datum::Int64(1)]), 1)])
        .await
        .unwrap();
    let upper = harness.wait_for_upper(table, at).await.unwrap();
    assert!(!upper.less_equal(&at));

    let target = Timestamp::new(at.as_millis() + 1_000_000);
    let error = harness.wait_for_upper(table, target).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, HarnessError::Timeout { .. }), "{error:?}");
    assert!(text.contains("waiting for the upper of u42"), "{text}");
    assert!(text.contains(&format!("to pass {target}")), "{text}");
    let seen = harness.upper_time(table).unwrap();
    assert!(text.contains(&format!("last saw upper [{seen}]")), "{text}");

    // A collection that does not exist: the wait reports the error it saw.
    let missing = harness
        .wait_for_upper(GlobalId::User(7), at)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("the upper of u7"), "{missing}");
    assert!(missing.contains("last saw error"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_returns_the_value_and_reports_the_last_observation() {
    let mut harness = Harness::builder()
        .replicas(0)
        .timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let table = GlobalId::User(1);
    harness.create_table(table, desc()).await.unwrap();
    let upper = harness
        .wait_until("the table to exist", |ctl| {
            ctl.collection_frontiers(table)
                .map(|f| f.upper)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap();
    assert!(!upper.is_empty());

    let mut calls = 0;
    let error = harness
        .wait_until("a count of three", |_| {
            calls += 1;
            Err::<(), _>(format!("count {}", calls.min(2)))
        })
        .await
        .unwrap_err();
    assert!(calls > 1, "the check ran once");
    assert_eq!(
        error.to_string().split(';').nth(1),
        Some(" last saw count 2")
    );
    assert!(error.to_string().contains("waiting for a count of three"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_clock_is_the_harness_clock() {
    let clock = ManualClock::new(5_000);
    let harness = Harness::builder()
        .replicas(1)
        .now(clock.now_fn())
        .build()
        .await
        .unwrap();
    assert_eq!(harness.now(), 5_000);
    clock.advance(250);
    assert_eq!(harness.now(), 5_250);
}
