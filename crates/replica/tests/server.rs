//! The replica over instance-client's `local` transport (`--features server`).
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use strata_controller_api::{GlobalId, LoadGenerator, Timestamp};
use strata_instance_client::transport::ReplicaConnector;
use strata_instance_client::{LocalConnector, Status, StorageCommand, StorageResponse};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::memory::MemShards;

async fn upper_of(
    responses: &mut tokio::sync::mpsc::UnboundedReceiver<StorageResponse<Timestamp>>,
    id: GlobalId,
    at_least: u64,
) {
    while let Some(response) = responses.recv().await {
        if let StorageResponse::FrontierUpper { id: got, upper } = response
            && got == id
            && upper
                .elements()
                .first()
                .is_some_and(|t| t.as_millis() >= at_least)
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
            if matches!(&response, StorageResponse::StatusUpdate(u) if u.id == GlobalId::User(3100) && u.status == Status::Running) {
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
