//! A sink of a table receives every committed row, without anyone reading the table:
//! table commits go to the txns shard, and the background applier links each one into
//! the table's data shard, where the sink reads it. The bound is the pump's hang
//! guard; nothing but the applier moves the data shard here.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use std::collections::BTreeSet;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Exports, Lifecycle, StorageResponse, Timestamp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_of_a_table_gets_every_committed_row() {
    const WRITES: u64 = 20;
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, None).await;
    add_replica(&mut ctl, 1);
    let (table, sink) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[table], t(0)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.ndjson");
    ctl.create_exports(vec![(sink, file_sink(table, &path, 0))])
        .await
        .unwrap();
    ctl.initialization_complete();

    // Each write is acknowledged once committed to the txns shard; nobody reads the
    // table afterwards.
    for ts in 1..=WRITES {
        append(&mut ctl, ts, vec![(table, vec![(row(ts as i64), 1)])]).await;
    }
    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "every row in the sink",
        |ctl, _| upper(ctl, sink) > WRITES,
    )
    .await;
    // Everything before the sink's upper is in the file, once.
    let written = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let distinct: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(lines.len() as u64, WRITES, "{written}");
    assert_eq!(
        distinct.len(),
        lines.len(),
        "a row was written twice: {written}"
    );
    for ts in 1..=WRITES {
        let text = format!("row number {ts:>12}");
        assert!(written.contains(&text), "{text} is missing: {written}");
    }
}
