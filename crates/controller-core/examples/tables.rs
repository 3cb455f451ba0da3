//! A controller over an in-memory location: create two tables, write to both
//! atomically at increasing times, hold one time readable, and read it back.
//!
//! Run with `cargo run -p strata-controller-core --example tables`.

#![allow(clippy::print_stdout)]

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_controller_api::{
    CollectionDescription, Collections, Datum, GlobalId, MemoryCatalog, ReadPolicy, Reads,
    RelationDesc, Row, ScalarType, StorageError, StorageMetadata, StorageTxn, Tables, Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), StorageError> {
    let catalog = MemoryCatalog::new();
    let begin = {
        let catalog = catalog.clone();
        Arc::new(move || {
            Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>
        })
    } as CatalogFn<Timestamp>;
    // A controller runs at its catalog's epoch: a new one bumps it, fencing the old.
    catalog.bump_epoch();
    let mut ctl =
        Controller::new(ControllerConfig::default(), begin, "mem://example-tables").await?;

    let (orders, items) = (GlobalId::User(1), GlobalId::User(2));
    let desc = RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("what", ScalarType::String.nullable(false))
        .finish();
    let mut txn = catalog.begin::<Timestamp>();
    ctl.prepare_state(&mut txn, BTreeSet::from([orders, items]), BTreeSet::new())
        .await?;
    txn.commit().await?;
    let tables = vec![
        (orders, CollectionDescription::table(desc.clone())),
        (items, CollectionDescription::table(desc)),
    ];
    ctl.create_collections(
        &StorageMetadata::from_txn(&txn),
        Some(Timestamp::new(0)),
        tables,
    )
    .await?;
    ctl.set_read_policy(vec![
        (orders, ReadPolicy::step_back()),
        (items, ReadPolicy::step_back()),
    ])?;

    let row = |id: i64, what: &str| Row::pack(&[Datum::Int64(id), Datum::String(what.into())]);
    let hold = ctl.acquire_read_holds(vec![orders])?;
    for ts in 1..=5u64 {
        let order = row(ts as i64, "order");
        let item = row(ts as i64, "item");
        ctl.append_table(
            Timestamp::new(ts),
            Timestamp::new(ts + 1),
            vec![(orders, vec![(order, 1)]), (items, vec![(item, 1)])],
        )?
        .await?;
    }
    ctl.apply_pending();
    let frontiers = ctl.collection_frontiers(orders)?;
    println!(
        "orders: upper {:?}, since {:?} (held)",
        frontiers.upper, frontiers.since
    );
    println!(
        "orders at 2: {} rows",
        ctl.snapshot(orders, Timestamp::new(2)).await?.len()
    );
    drop(hold);
    ctl.apply_pending();
    let frontiers = ctl.collection_frontiers(orders)?;
    println!("after release: since {:?}", frontiers.since);
    println!(
        "items now: {} rows",
        ctl.snapshot_latest(items).await?.len()
    );
    Ok(())
}
