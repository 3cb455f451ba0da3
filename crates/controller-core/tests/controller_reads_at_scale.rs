//! Reads at scale through the real controller: a snapshot cursor streams one part at a
//! time (a table, read through the txns shard, and a shard written outside the
//! controller, read directly), and the snapshot statistics are an upper bound whose
//! parts add up, also for table commits not yet linked into their shard.

#![cfg(test)]

mod controller_support;

use std::collections::BTreeMap;

use controller_support::*;
use futures::StreamExt;
use strata_controller_api::{Antichain, Collections, Datum, GlobalId, Reads, Row, Timestamp};
use strata_controller_core::Controller;

/// 8 batches of 40 rows of about 8 KiB: about 2.5 MiB in all, several parts whatever
/// compaction merges (a part holds at most about 512 KiB).
const BATCHES: u64 = 8;
const ROWS: u64 = 40;

fn big_row(i: u64) -> Row {
    Row::pack(&[
        Datum::Int64(i as i64),
        Datum::String(format!("{i:>8}{}", "x".repeat(8 * 1024))),
    ])
}

fn batch(b: u64) -> Vec<(Row, i64)> {
    (0..ROWS).map(|r| (big_row(b * ROWS + r), 1)).collect()
}

/// Reads the cursor to its end; returns the consolidated rows and each chunk's length.
async fn drain_cursor(
    ctl: &mut Controller<Timestamp>,
    id: GlobalId,
    as_of: u64,
) -> (BTreeMap<Row, i64>, Vec<usize>) {
    let mut cursor = ctl.snapshot_cursor(id, t(as_of)).await.unwrap();
    let mut rows: BTreeMap<Row, i64> = BTreeMap::new();
    let mut sizes = Vec::new();
    while let Some(chunk) = cursor.next().await {
        let chunk = chunk.unwrap();
        sizes.push(chunk.len());
        for (row, diff) in chunk {
            *rows.entry(row).or_default() += diff;
        }
    }
    rows.retain(|_, diff| *diff != 0);
    (rows, sizes)
}

fn check_streamed(rows: &BTreeMap<Row, i64>, sizes: &[usize], snapshot: Vec<(Row, i64)>) {
    assert_eq!(*rows, as_map(snapshot));
    assert_eq!(rows.len() as u64, BATCHES * ROWS);
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        sizes.len() >= 2 && largest < rows.len(),
        "one chunk holds the whole snapshot: {sizes:?}"
    );
}

#[tokio::test]
async fn a_table_cursor_streams_part_by_part() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let table = id(1);
        create_tables(&env, &mut ctl, &[table], t(0)).await;
        for b in 0..BATCHES {
            append(&mut ctl, b + 1, vec![(table, batch(b))]).await;
        }
        let as_of = BATCHES;
        let (rows, sizes) = drain_cursor(&mut ctl, table, as_of).await;
        let snapshot = ctl.snapshot(table, t(as_of)).await.unwrap();
        check_streamed(&rows, &sizes, snapshot);
    }
}

#[tokio::test]
async fn a_direct_cursor_streams_part_by_part() {
    let env = file_env();
    let mut ctl = env.controller(false).await;
    let view = id(1);
    let shard = create_other(&env, &mut ctl, view).await;
    let mut writer = outside_writer(&env, shard).await;
    for b in 0..BATCHES {
        write_outside(&mut writer, batch(b), b, Some(b + 1)).await;
    }
    let caught_up = eventually(&mut ctl, |ctl| {
        ctl.collection_frontiers(view).unwrap().upper == Antichain::from_elem(t(BATCHES))
    })
    .await;
    assert!(caught_up);
    let as_of = BATCHES - 1;
    let (rows, sizes) = drain_cursor(&mut ctl, view, as_of).await;
    let snapshot = ctl.snapshot(view, t(as_of)).await.unwrap();
    check_streamed(&rows, &sizes, snapshot);
}

#[tokio::test]
async fn snapshot_stats_bound_the_snapshot_and_the_parts_add_up() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let table = id(1);
        create_tables(&env, &mut ctl, &[table], t(0)).await;
        // 10 rows at 1, then 10 more and 5 retractions at 5; read at once, before or
        // while the applier links them.
        let first: Vec<(Row, i64)> = (0..10).map(|i| (row(i), 1)).collect();
        append(&mut ctl, 1, vec![(table, first)]).await;
        let mut second: Vec<(Row, i64)> = (10..20).map(|i| (row(i), 1)).collect();
        second.extend((0..5).map(|i| (row(i), -1)));
        append(&mut ctl, 5, vec![(table, second)]).await;

        for (as_of, updates) in [(1_u64, 10_u64), (5, 25)] {
            let frontier = Antichain::from_elem(t(as_of));
            let stats = ctl.snapshot_stats(table, frontier.clone()).await.unwrap();
            assert!(
                stats.num_updates >= updates,
                "{} < {updates} at {as_of} on {}",
                stats.num_updates,
                env.url
            );
            assert!(stats.num_updates <= 25, "{}", stats.num_updates);
            let parts = ctl.snapshot_parts_stats(table, frontier).await.unwrap();
            let sum: u64 = parts.parts.iter().map(|p| p.num_updates).sum();
            assert_eq!(sum, stats.num_updates, "{parts:?}");
            assert!(parts.parts.iter().all(|p| p.encoded_size_bytes > 0));
        }
        // The statistics check the since like a snapshot does.
        assert!(
            ctl.snapshot_stats(id(99), Antichain::from_elem(t(1)))
                .await
                .is_err()
        );
    }
}
