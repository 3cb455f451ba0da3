//! Quickstart: embed the storage controller, give it an in-process replica, create a
//! table, write to it, and read it back. Everything lives in memory (`mem://`).
//!
//! Run with `cargo run -p strata-controller-core --features replica --example quickstart`; the walk-through
//! is `docs/QUICKSTART.md`.

#![allow(clippy::print_stdout)]

use strata_controller_core::api::{
    CollectionDescription, Collections, Datum, GlobalId, InstanceId, Instances, Reads,
    RelationDesc, ReplicaConfig, ReplicaId, ReplicaLocation, Row, ScalarType, StorageError,
    StorageMetadata, Tables, Timestamp,
};
use strata_controller_core::embed::InProcessReplicas;
use strata_controller_core::{Controller, ControllerConfig};

/// One location holds the durable catalog, the txns shard and every collection's shard.
const LOCATION: &str = "mem://quickstart";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), StorageError> {
    // 1. A controller over the location's durable catalog, at the catalog's next epoch.
    let replicas = InProcessReplicas::new(LOCATION);
    let config = ControllerConfig {
        connector_factory: Some(replicas.connector_factory()),
        ..ControllerConfig::default()
    };
    let mut ctl = Controller::<Timestamp>::open_durable(config, LOCATION).await?;
    println!("controller at epoch {}", ctl.epoch());

    // 2. An instance with one replica (it runs sources and sinks; tables need none).
    ctl.create_instance(InstanceId(1))?;
    let location = ReplicaLocation::InProcess { workers: 1 };
    ctl.connect_replica(InstanceId(1), ReplicaId(1), ReplicaConfig { location })?;

    // 3. A table. The controller assigns its shard and records it in the catalog.
    let greetings = GlobalId::User(1);
    let desc = RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("text", ScalarType::String.nullable(false))
        .finish();
    let table = CollectionDescription::table(desc);
    let register_at = Some(Timestamp::new(0));
    ctl.create_collections(
        &StorageMetadata::default(),
        register_at,
        vec![(greetings, table)],
    )
    .await?;

    // 4. Writes at increasing times, each durable when its future resolves.
    for (id, text) in [(1, "hello"), (2, "world")] {
        // The time that joins the next group commit of table writes.
        let at = ctl.table_write_ts().unwrap_or_default();
        let row = Row::pack(&[Datum::Int64(id), Datum::String(text.into())]);
        let advance = Timestamp::new(at.as_millis() + 1);
        ctl.append_table(at, advance, vec![(greetings, vec![(row, 1)])])?
            .await?;
        println!("wrote {text:?} at {at}");
    }

    // 5. Read the table back at the latest time it is complete for.
    let rows = ctl.snapshot_latest(greetings).await?;
    for (row, count) in &rows {
        println!("{row} x{count}");
    }
    assert_eq!(rows.len(), 2);

    // 6. Finish what was accepted, stop, and stop the replica.
    ctl.close().await;
    replicas.shutdown();
    Ok(())
}
