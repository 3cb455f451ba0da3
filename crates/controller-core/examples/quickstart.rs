//! Quickstart: embed the storage controller, give it an in-process replica, create a
//! table, write to it, and read it back. Everything lives in memory (`mem://`).
//!
//! Run with `cargo run -p strata-controller-core --example quickstart`; the walk-through
//! is `docs/QUICKSTART.md`.

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use async_trait::async_trait;
use strata_controller_api::{
    CollectionDescription, Collections, Datum, GlobalId, InstanceId, Instances, Reads,
    RelationDesc, ReplicaConfig, ReplicaId, ReplicaLocation, Row, ScalarType, StorageError,
    StorageMetadata, Tables, Timestamp,
};
use strata_controller_core::{ConnectorFactory, Controller, ControllerConfig};
use strata_instance_client::{
    CommandReceiver, Hello, LocalConnector, ReplicaConnector, ReplicaHandler, ResponseSender,
};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::persist::PersistShards;

/// One location holds the durable catalog, the txns shard and every collection's shard.
const LOCATION: &str = "mem://quickstart";

/// Serves a replica's connection on a plain thread: the replica's persist adapter
/// blocks on a runtime of its own, which must not happen on one of our async tasks.
struct OnThread(Arc<ReplicaServer>);

#[async_trait]
impl ReplicaHandler<Timestamp> for OnThread {
    async fn serve(
        &self,
        hello: Hello,
        commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let server = Arc::clone(&self.0);
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            futures::executor::block_on(server.serve(hello, commands, responses));
            let _ = done.send(());
        });
        let _ = finished.await;
    }
}

/// How the controller reaches replicas: here, by starting one in this process.
fn in_process_replicas() -> ConnectorFactory<Timestamp> {
    Arc::new(|_config: &ReplicaConfig| -> Result<_, StorageError> {
        let start = || -> Result<Arc<ReplicaServer>, String> {
            let shards = PersistShards::open(LOCATION).map_err(|e| e.to_string())?;
            ReplicaServer::start(Default::default(), Arc::new(shards)).map_err(|e| e.to_string())
        };
        let server = std::thread::spawn(start)
            .join()
            .map_err(|_| StorageError::InvalidUsage("replica start panicked".into()))?
            .map_err(StorageError::InvalidUsage)?;
        let handler = Arc::new(OnThread(server)) as Arc<dyn ReplicaHandler<Timestamp>>;
        let connector: Arc<dyn ReplicaConnector<Timestamp>> = LocalConnector::new(handler);
        Ok(connector)
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), StorageError> {
    // 1. A controller over the location's durable catalog, at the catalog's next epoch.
    let config = ControllerConfig {
        connector_factory: Some(in_process_replicas()),
        ..ControllerConfig::default()
    };
    let mut ctl = Controller::<Timestamp>::open_durable(config, LOCATION, false).await?;
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
        // The controller learns of finished writes as it runs; apply what it learned.
        ctl.apply_pending();
        let upper = ctl.collection_frontiers(greetings)?.upper;
        let at = upper.elements().first().copied().unwrap_or_default();
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
    Ok(())
}
