//! The tables' shared upper through a real controller with the default kind of sweep:
//! a commit moves (and `process` reports) the tables it wrote at once, and every other
//! table in a sweep at most once per `table_upper_sweep_interval`, which `ready` wakes
//! for by itself. `collection_frontiers` is exact in between.
//!
//! (The other controller tests sweep on every commit, `Duration::ZERO`, so that their
//! frontier assertions are exact at once.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use std::collections::BTreeSet;
use std::time::Duration;

use controller_support::*;
use strata_controller_api::{
    Antichain, Collections, GlobalId, Lifecycle, StorageResponse, Timestamp,
};
use strata_controller_core::{Controller, ControllerConfig};

async fn controller_sweeping_every(env: &Env, interval: Duration) -> Controller<Timestamp> {
    env.controller_with(ControllerConfig {
        table_upper_sweep_interval: interval,
        ..ControllerConfig::default()
    })
    .await
}

/// Every `(id, upper)` the next `process` rounds report, until none is left.
fn drain_reports(ctl: &mut Controller<Timestamp>) -> Vec<(GlobalId, Antichain<Timestamp>)> {
    let mut reported = Vec::new();
    while let Some(response) = ctl.process().unwrap() {
        if let StorageResponse::FrontierUpdates(updates) = response {
            reported.extend(updates);
        }
    }
    reported
}

/// Waits (on `ready`, at most 30 s) until a `process` round reports `id` at `upper`;
/// returns every id reported on the way.
async fn wait_for_report(
    ctl: &mut Controller<Timestamp>,
    id: GlobalId,
    upper: &Antichain<Timestamp>,
) -> BTreeSet<GlobalId> {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reported = drain_reports(ctl);
        let done = reported.iter().any(|(i, u)| *i == id && u == upper);
        seen.extend(reported.into_iter().map(|(i, _)| i));
        if done {
            return seen;
        }
        tokio::time::timeout_at(deadline, ctl.ready())
            .await
            .unwrap_or_else(|_| panic!("{id} was never reported at {upper:?}; saw {seen:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_reports_the_tables_it_wrote_and_a_sweep_the_rest() {
    let env = mem_env();
    // An hour: within this test no sweep falls due after the first.
    let mut ctl = controller_sweeping_every(&env, Duration::from_secs(3600)).await;
    let (a, b, c) = (id(1), id(2), id(3));
    create_tables(&env, &mut ctl, &[a, b, c], t(0)).await;
    // The first move of the shared upper after the registration sweeps (whichever it
    // is); this write's is at the latest.
    append(&mut ctl, 1, vec![(c, vec![(row(1), 1)])]).await;
    wait_for_report(&mut ctl, c, &Antichain::from_elem(t(2))).await;

    append(&mut ctl, 2, vec![(a, vec![(row(2), 1)])]).await;
    let seen = wait_for_report(&mut ctl, a, &Antichain::from_elem(t(3))).await;
    assert_eq!(
        seen,
        BTreeSet::from([a]),
        "only the written table is reported before the next sweep"
    );
    // The others' frontiers are exact when asked for.
    for table in [b, c] {
        assert_eq!(
            ctl.collection_frontiers(table).unwrap().upper,
            Antichain::from_elem(t(3)),
            "{table}"
        );
    }
    assert_eq!(ctl.table_write_ts(), Some(t(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_wakes_ready_by_itself() {
    let env = mem_env();
    let mut ctl = controller_sweeping_every(&env, Duration::from_millis(200)).await;
    let (a, b) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[a, b], t(0)).await;
    for ts in 1..=3 {
        append(&mut ctl, ts, vec![(a, vec![(row(ts as i64), 1)])]).await;
    }
    // No further write: `ready` returns when the sweep falls due, and `process` then
    // reports b at the latest shared upper.
    let seen = wait_for_report(&mut ctl, b, &Antichain::from_elem(t(4))).await;
    assert!(seen.contains(&a), "{seen:?}");
    assert_eq!(
        ctl.collection_frontiers(b).unwrap().upper,
        Antichain::from_elem(t(4))
    );
}
