//! `PersistClient::wait_for_upper_past` is woken by the append that moves the upper,
//! not by polling: with a poll interval of an hour, a waiter parked before the append
//! completes right after it.

#![cfg(test)]

use std::time::Duration;

use futures::FutureExt;
use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::{PersistClient, PersistConfig, PersistError};

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

async fn client_that_never_polls() -> PersistClient {
    let url = format!("mem://upper-wait-{}", uuid::Uuid::new_v4().simple());
    let cfg = PersistConfig {
        poll_interval: Duration::from_secs(3600),
        ..PersistConfig::for_tests()
    };
    PersistClient::open_with_config(&url, cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_wakes_on_the_append_that_moves_the_upper() {
    let client = client_that_never_polls().await;
    let shard = new_shard();
    let mut writer = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    let waiter = client.clone();
    let mut wait = Box::pin(async move { waiter.wait_for_upper_past(shard, &fr(2)).await });
    // The shard's upper is at its minimum: the waiter reads it and parks.
    assert!((&mut wait).now_or_never().is_none());

    writer
        .compare_and_append(&[(Ok(test_row(1)), Timestamp::new(0), 1)], fr(0), fr(2))
        .await
        .unwrap()
        .unwrap();
    assert!(
        (&mut wait).now_or_never().is_none(),
        "an upper of [2] is not past [2]"
    );
    writer
        .compare_and_append(&[], fr(2), fr(3))
        .await
        .unwrap()
        .unwrap();
    // Well within the hour a poll would take.
    let upper = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the append woke the waiter")
        .unwrap();
    assert_eq!(upper, fr(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_a_new_shard_wakes_when_it_is_created_and_written() {
    let client = client_that_never_polls().await;
    let shard = new_shard();
    let waiter = client.clone();
    let mut wait = Box::pin(async move { waiter.wait_for_upper_past(shard, &fr(0)).await });
    assert!(
        (&mut wait).now_or_never().is_none(),
        "the shard does not exist"
    );
    let mut writer = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    writer
        .compare_and_append(&[], fr(0), fr(5))
        .await
        .unwrap()
        .unwrap();
    let upper = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the append woke the waiter")
        .unwrap();
    assert_eq!(upper, fr(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upper_is_past_the_empty_frontier() {
    let client = client_that_never_polls().await;
    let result = client
        .wait_for_upper_past::<Timestamp>(new_shard(), &Antichain::new())
        .await;
    assert!(
        matches!(result, Err(PersistError::InvalidUsage(_))),
        "{result:?}"
    );
}
