//! Two processes x one worker on loopback, in timely cluster mode. Each "process" is a
//! thread with its own `timely::execute` and process index, which runs the same TCP
//! path as two OS processes would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::sync::Arc;

use common::*;
use strata_controller_api::LoadGenerator;
use strata_instance_client::StorageCommand;
use strata_replica::ClusterConfig;
use strata_replica::shard::Shards;
use strata_replica::shard::memory::MemShards;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_processes_ingest_correct_contents() {
    const LIMIT: u64 = 120;
    let cmd = ingestion(1000, LoadGenerator::Auction, 5, 6);
    let shards = MemShards::new();
    let addresses = vec![
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let threads: Vec<_> = (0..2)
        .map(|process| {
            let shards: Arc<dyn Shards> = Arc::new(shards.clone());
            let watch = shards.clone();
            let addresses = addresses.clone();
            let cmd = cmd.clone();
            std::thread::spawn(move || {
                let mut config = frozen_config(1, LIMIT);
                config.cluster = Some(ClusterConfig { process, addresses });
                let (mut replica, _rx) = start(config, shards);
                send(
                    &mut replica,
                    &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
                );
                wait_for("cluster ingestion", || {
                    ingested_offset(watch.as_ref(), &cmd) >= LIMIT
                });
                replica.dataflow_starts()
            })
        })
        .collect();
    let starts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Worker 0 (process 0) counts dataflow starts; process 1 ran the same dataflow.
    assert_eq!(starts, vec![1, 0]);
    assert_eq!(contents(&shards, &cmd), model(&cmd, LIMIT));
}
