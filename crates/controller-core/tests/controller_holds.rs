//! Read holds and read policies through a real controller: a held since never passes
//! the hold, reads before the since fail, a lag policy keeps the since within the lag,
//! and since downgrades reach the shard's critical since.

#![cfg(test)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{
    Antichain, Collections, ReadHoldError, ReadPolicy, Reads, StorageError, Timestamp,
};
use strata_controller_core::CONTROLLER_READER_ID;

fn since_of(
    ctl: &strata_controller_core::Controller<Timestamp>,
    table: strata_controller_api::GlobalId,
) -> Antichain<Timestamp> {
    ctl.collection_frontiers(table).unwrap().since
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_since_never_passes_the_hold() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let table = id(1);
        create_tables(&env, &mut ctl, &[table], t(0)).await;
        ctl.set_read_policy(vec![(table, ReadPolicy::step_back())])
            .unwrap();
        let mut hold = ctl.acquire_read_holds(vec![table]).unwrap().pop().unwrap();
        let held = hold.since().clone();
        for ts in 1..=10 {
            append(&mut ctl, ts, vec![(table, vec![(row(ts as i64), 1)])]).await;
            ctl.apply_pending();
            assert_eq!(since_of(&ctl, table), held, "{}", env.url);
        }
        // Reads at the held time still work.
        assert!(ctl.snapshot(table, t(0)).await.unwrap().is_empty());
        hold.try_downgrade(Antichain::from_elem(t(4))).unwrap();
        ctl.apply_pending();
        assert_eq!(since_of(&ctl, table), Antichain::from_elem(t(4)));
        assert_eq!(ctl.snapshot(table, t(4)).await.unwrap().len(), 4);
        drop(hold);
        ctl.apply_pending();
        // The policy takes over: one tick behind the upper (11).
        assert_eq!(since_of(&ctl, table), Antichain::from_elem(t(10)));
        let before = ctl.snapshot(table, t(3)).await;
        assert!(
            matches!(before, Err(StorageError::ReadBeforeSince { id, .. }) if id == table),
            "{before:?}"
        );
        // The downgrade reaches the shard's critical since.
        let shard = ctl.collection_metadata(table).unwrap().data_shard;
        let client = ctl.persist_client().clone();
        let mut reached = false;
        for _ in 0..500 {
            let state = client.inspect(shard).await.unwrap();
            let critical = state["critical_readers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == CONTROLLER_READER_ID)
                .cloned();
            if critical.is_some_and(|r| r["since"] == serde_json::json!([10])) {
                reached = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(reached, "critical since never reached 10 on {}", env.url);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lag_policy_keeps_the_since_within_the_lag() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let table = id(1);
    create_tables(&env, &mut ctl, &[table], t(0)).await;
    let (lag, granularity) = (5u64, 2u64);
    ctl.set_read_policy(vec![(
        table,
        ReadPolicy::lag_writes_by(t(lag), t(granularity)),
    )])
    .unwrap();
    let mut last = t(0);
    for ts in 1..=30u64 {
        append(&mut ctl, ts, vec![(table, vec![(row(ts as i64), 1)])]).await;
        ctl.apply_pending();
        let since = *since_of(&ctl, table).as_option().unwrap();
        let upper = ts + 1;
        assert!(since >= last, "the since regressed");
        assert!(
            since.as_millis() <= upper.saturating_sub(lag),
            "since {since} too close to upper {upper}"
        );
        assert!(
            since.as_millis() + lag + granularity >= upper,
            "since {since} lags {upper} by more than the lag"
        );
        last = since;
    }
    // A hold on top of the policy wins.
    let hold = ctl.acquire_read_holds(vec![table]).unwrap();
    append(&mut ctl, 31, vec![(table, vec![(row(31), 1)])]).await;
    append(&mut ctl, 32, vec![(table, vec![(row(32), 1)])]).await;
    ctl.apply_pending();
    assert_eq!(since_of(&ctl, table), hold[0].since().clone());
    // Holds on unknown ids fail, all or nothing.
    assert!(ctl.acquire_read_holds(vec![table, id(9)]).is_err());
    assert!(matches!(
        ctl.set_read_policy(vec![(id(9), ReadPolicy::step_back())]),
        Err(StorageError::IdentifierMissing(_))
    ));
}

/// Holds from two controllers on collections with the same id do not merge: the merged
/// hold would report to one controller only, and the other's hold would leak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_from_two_controllers_do_not_merge() {
    let (first_env, second_env) = (mem_env(), mem_env());
    let mut first = first_env.controller(false).await;
    let mut second = second_env.controller(false).await;
    let table = id(1);
    create_tables(&first_env, &mut first, &[table], t(0)).await;
    create_tables(&second_env, &mut second, &[table], t(0)).await;
    for ctl in [&mut first, &mut second] {
        ctl.set_read_policy(vec![(table, ReadPolicy::step_back())])
            .unwrap();
    }
    let mut ours = first
        .acquire_read_holds(vec![table])
        .unwrap()
        .pop()
        .unwrap();
    let theirs = second
        .acquire_read_holds(vec![table])
        .unwrap()
        .pop()
        .unwrap();
    let err = ours.merge_assign(theirs).unwrap_err();
    assert_eq!(err, ReadHoldError::IssuerMismatch { id: table });
    // The second controller's hold went back to it: its since follows its policy again.
    append(&mut second, 1, vec![(table, vec![(row(1), 1)])]).await;
    second.apply_pending();
    assert_eq!(since_of(&second, table), Antichain::from_elem(t(1)));
    // The first controller's hold is unchanged and still holds.
    append(&mut first, 1, vec![(table, vec![(row(1), 1)])]).await;
    first.apply_pending();
    assert_eq!(since_of(&first, table), ours.since().clone());
}
