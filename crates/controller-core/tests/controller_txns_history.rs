//! The txns shard stays small however many commits pass through it: every handle on it
//! (the controller's committer, its background applier, its reader) lets its since
//! follow the upper, so compaction consolidates the rows that were committed and later
//! tidied, and a handle catches up with other handles' commits by reading what they
//! added, not the whole shard again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{Reads, ShardId, Timestamp};
use strata_controller_core::Controller;

const PHASE: u64 = 1500;

/// `PHASE` single-row commits alternating between `a` and `b`, from `first`; then both
/// are read at the latest time, so every commit is applied and tidied.
async fn phase(ctl: &mut Controller<Timestamp>, first: u64) {
    let (a, b) = (id(1), id(2));
    for ts in first..first + PHASE {
        let table = if ts % 2 == 0 { a } else { b };
        append(ctl, ts, vec![(table, vec![(row(ts as i64), 1)])]).await;
    }
    let rows =
        ctl.snapshot_latest(a).await.unwrap().len() + ctl.snapshot_latest(b).await.unwrap().len();
    assert_eq!(rows as u64, first + PHASE - 1);
}

/// The updates the txns shard keeps, and its since and upper.
async fn txns_size(ctl: &Controller<Timestamp>) -> (u64, u64, u64) {
    let client = ctl.persist_client().clone();
    let txns: ShardId = ctl.txns_shard();
    client.all_maintenance_idle().await;
    // Compaction may trail a burst of commits; let it catch up, so the figure is the
    // shard's size in shape, at its since, and not how far behind compaction was.
    client.compact(txns, 1000).await.unwrap();
    let inspect = client.inspect_shard(txns).await.unwrap();
    let updates: u64 = inspect.batches.iter().map(|b| b.len).sum();
    (
        updates,
        inspect.since_code().unwrap_or(0),
        inspect.upper_code().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_txns_shard_history_stays_bounded() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    create_tables(&env, &mut ctl, &[id(1), id(2)], t(0)).await;
    phase(&mut ctl, 1).await;
    let (first, since, upper) = txns_size(&ctl).await;
    assert!(
        upper - since < PHASE / 2,
        "the txns shard's since follows its upper: since {since}, upper {upper}"
    );
    phase(&mut ctl, 1 + PHASE).await;
    let (second, since, upper) = txns_size(&ctl).await;
    eprintln!(
        "txns shard updates after {PHASE} commits: {first}; after {}: {second}",
        2 * PHASE
    );
    assert!(
        upper - since < PHASE / 2,
        "the txns shard's since follows its upper: since {since}, upper {upper}"
    );
    // Each commit adds a row and its tidying retracts it: kept for ever, that is two
    // updates per commit, 6000 here. Consolidated at a since that follows the upper,
    // the shard keeps its live rows plus what the spine has not merged since (how much
    // depends on when merges ran: 341 to 1708 seen); fewer than one per commit.
    assert!(
        second < 2 * PHASE,
        "the txns shard grows with the commits: {first} updates after {PHASE} commits, \
         {second} after {}",
        2 * PHASE
    );
}
