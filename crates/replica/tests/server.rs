//! The replica over instance-client's `local` transport (`--features server`).

#![cfg(test)]
#![cfg(feature = "server")]

mod common;

use std::sync::Arc;

use common::*;
use strata_controller_api::{GlobalId, LoadGenerator, Timestamp};
use strata_instance_client::transport::ReplicaConnector;
use strata_instance_client::{LocalConnector, ReplicaResponse, Status, StorageCommand};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::memory::MemShards;

async fn upper_of(
    responses: &mut tokio::sync::mpsc::UnboundedReceiver<ReplicaResponse<Timestamp>>,
    id: GlobalId,
    at_least: u64,
) {
    while let Some(response) = responses.recv().await {
        if let ReplicaResponse::FrontierUppers(uppers) = response
            && uppers.iter().any(|(got, upper)| {
                *got == id
                    && upper
                        .elements()
                        .first()
                        .is_some_and(|t| t.as_millis() >= at_least)
            })
        {
            return;
        }
    }
    panic!("connection closed before the upper of {id} reached {at_least}");
}

#[test]
fn local_transport_reconnect_replays_without_restarts() {
    const LIMIT: u64 = 60;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cmd = ingestion(3000, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let dir = tempfile::tempdir().unwrap();
    let sink = file_sink(
        3100,
        &cmd,
        GlobalId::User(3000),
        dir.path().join("out").to_str().unwrap(),
    );
    let shards = MemShards::new();
    let server = ReplicaServer::start(frozen_config(2, LIMIT), Arc::new(shards.clone())).unwrap();
    let connector = LocalConnector::new(Arc::clone(&server) as _);
    rt.block_on(async {
        let mut first = connector.connect().await.unwrap();
        for command in history(1, vec![StorageCommand::RunIngestion(cmd.clone())]) {
            first.commands.send(command).unwrap();
        }
        // 20 rounds of 3 offsets at times 0..20: the upper reaches 20.
        upper_of(&mut first.responses, GlobalId::User(3000), 20).await;
        connector.sever();

        let mut second = connector.connect().await.unwrap();
        for command in history(2, vec![StorageCommand::RunIngestion(cmd.clone())]) {
            second.commands.send(command).unwrap();
        }
        // The new connection learns the upper although nothing advances any more.
        upper_of(&mut second.responses, GlobalId::User(3000), 20).await;
        // Commands apply in order: once a new sink runs, the replay has been handled.
        second.commands.send(StorageCommand::RunSink(sink)).unwrap();
        while let Some(response) = second.responses.recv().await {
            if matches!(&response, ReplicaResponse::StatusUpdate(u) if u.id == GlobalId::User(3100) && u.status == Status::Running) {
                break;
            }
        }
    });
    assert_eq!(
        server.dataflow_starts(),
        2,
        "the replay restarted the ingestion"
    );
    assert_eq!(contents(&shards, &cmd), model(&cmd, LIMIT));
}

/// The since of `id`'s data shard, read from the shard's state (registering no reader,
/// which would hold the since back).
#[cfg(feature = "persist")]
fn shard_since(
    watch: &strata_replica::shard::persist::PersistShards,
    cmd: &strata_instance_client::RunIngestionCommand<Timestamp>,
    id: GlobalId,
) -> u64 {
    let shard = cmd.storage_metadata[&id].data_shard;
    let state = watch.block_on(watch.client().inspect_shard(shard)).unwrap();
    state.since_code().unwrap_or(0)
}

/// Regression: `AllowCompaction` for a running ingestion, on persist shards, served from
/// a tokio task, used to block on the adapter's runtime inside the transport's runtime
/// and panic ("Cannot start a runtime from within a runtime"), leaving the replica stuck.
#[cfg(feature = "persist")]
#[test]
fn allow_compaction_over_local_transport_on_persist_shards() {
    use strata_controller_api::Antichain;
    use strata_replica::shard::ShardWriter;
    use strata_replica::shard::persist::PersistShards;
    const URL: &str = "mem://replica-server-compaction";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cmd = ingestion(3200, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let id = GlobalId::User(3200);
    let shards = PersistShards::open(URL).unwrap();
    let server = ReplicaServer::start(frozen_config(2, 1_000_000), Arc::new(shards)).unwrap();
    let connector = LocalConnector::new(Arc::clone(&server) as _);
    let mut connection = rt.block_on(connector.connect()).unwrap();
    for command in history(1, vec![StorageCommand::RunIngestion(cmd.clone())]) {
        connection.commands.send(command).unwrap();
    }
    rt.block_on(upper_of(&mut connection.responses, id, 10));
    connection
        .commands
        .send(StorageCommand::AllowCompaction {
            id,
            frontier: Antichain::from_elem(Timestamp::new(5)),
        })
        .unwrap();
    // The since moves (observed from a plain thread, where the adapter may block).
    let watch = PersistShards::open(URL).unwrap();
    wait_for("the since to move", || shard_since(&watch, &cmd, id) >= 5);
    // The ingestion keeps running after the compaction was handled: the replica reports
    // an upper past the one the shard had once the since moved.
    let upper = watch
        .upper(cmd.storage_metadata[&id].data_shard)
        .unwrap()
        .elements()
        .first()
        .unwrap()
        .as_millis();
    rt.block_on(upper_of(&mut connection.responses, id, upper + 10));
    server.shutdown();
}
