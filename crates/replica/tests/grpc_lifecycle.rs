//! A connection's lifecycle over real tonic, as a client generated from `proto/` in any
//! language sees it: the response stream ends when its command stream does, with the
//! status that says why. Every wait has a deadline, and another connection keeps being
//! served throughout.

#![cfg(test)]
#![cfg(feature = "server")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_controller_api::{GlobalId, LoadGenerator, SourceConnection, Timestamp};
use strata_instance_client::grpc::{ServerConfig, serve};
use strata_instance_client::proto::{
    ProtoAllowCompaction, ProtoStorageCommand, ProtoStorageResponse, proto_storage_command,
    proto_storage_response,
};
use strata_instance_client::proto_grpc::storage_replica_client::StorageReplicaClient;
use strata_instance_client::{EpochFence, ReplicaHandler, StorageCommand};
use strata_replica::server::ReplicaServer;
use strata_replica::shard::memory::MemShards;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

/// How long any one expected event may take.
const DEADLINE: Duration = Duration::from_secs(20);
const BASE: u64 = 4000;
const SOURCE: GlobalId = GlobalId::User(BASE);

/// A replica server on a loopback port, running until the test ends.
async fn start_replica() -> String {
    let config = strata_replica::ReplicaConfig {
        offset_limit: None,
        ..frozen_config(1, 0)
    };
    let server = ReplicaServer::start(config, Arc::new(MemShards::new())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve(
        server as Arc<dyn ReplicaHandler<Timestamp>>,
        EpochFence::new(),
        ServerConfig::default(),
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        std::future::pending(),
    ));
    addr
}

/// One client connection: the command side stays open until `commands` is dropped.
struct Connection {
    commands: Option<mpsc::UnboundedSender<ProtoStorageCommand>>,
    responses: Streaming<ProtoStorageResponse>,
}

impl Connection {
    async fn open(addr: &str, commands: Vec<StorageCommand<Timestamp>>) -> Connection {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = StorageReplicaClient::new(channel);
        let (tx, rx) = mpsc::unbounded_channel();
        for command in &commands {
            tx.send(ProtoStorageCommand::from(command)).unwrap();
        }
        let responses = client
            .command_response_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Connection {
            commands: Some(tx),
            responses,
        }
    }

    fn send(&self, command: ProtoStorageCommand) {
        self.commands.as_ref().unwrap().send(command).unwrap();
    }

    /// Reads responses until the source's upper passes `past`; returns that upper.
    async fn upper_past(&mut self, past: u64) -> u64 {
        let wait = async {
            loop {
                let response = self.responses.message().await.unwrap().unwrap();
                let Some(proto_storage_response::Kind::FrontierUppers(uppers)) = response.kind
                else {
                    continue;
                };
                for upper in uppers.uppers {
                    if upper.id == SOURCE.to_string()
                        && let Some(t) = upper.upper.and_then(|f| f.elements.first().copied())
                        && t > past
                    {
                        return t;
                    }
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("the upper did not advance in time")
    }

    /// Reads until the stream ends; its final status, or `None` for a clean end.
    async fn end(&mut self) -> Option<Status> {
        let wait = async {
            loop {
                match self.responses.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return None,
                    Err(status) => return Some(status),
                }
            }
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .expect("the response stream did not end in time")
    }
}

/// A counter source, ticking every few milliseconds forever.
fn source() -> StorageCommand<Timestamp> {
    let mut cmd = ingestion(BASE, LoadGenerator::Counter { max_ticks: None }, 0, 1);
    let SourceConnection::LoadGenerator {
        tick_interval_ms, ..
    } = &mut cmd.description.connection
    else {
        unreachable!("the ingestion is a load generator")
    };
    *tick_interval_ms = 5;
    StorageCommand::RunIngestion(cmd)
}

fn malformed() -> ProtoStorageCommand {
    ProtoStorageCommand {
        kind: Some(proto_storage_command::Kind::AllowCompaction(
            ProtoAllowCompaction {
                id: "not-an-id".into(),
                frontier: None,
            },
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_command_ends_its_stream_with_invalid_argument() {
    let addr = start_replica().await;
    // An older connection first, then the one the replica answers on.
    let mut older =
        Connection::open(&addr, vec![StorageCommand::Hello { nonce: 1, epoch: 1 }]).await;
    let mut current = Connection::open(&addr, history(1, vec![source()])).await;
    let seen = current.upper_past(2).await;

    older.send(malformed());
    let status = older.end().await.expect("an error status");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("not-an-id"), "{status:?}");
    // The other connection is served throughout.
    let seen = current.upper_past(seen).await;

    // The same on the connection the replica answers on: its stream ends too, rather
    // than going on streaming responses while ignoring its commands.
    current.send(malformed());
    let status = current.end().await.expect("an error status");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The replica serves the next connection, which learns the upper.
    let mut next = Connection::open(&addr, history(1, vec![source()])).await;
    next.upper_past(seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_connection_ends_at_once_with_failed_precondition() {
    let addr = start_replica().await;
    let mut old = Connection::open(&addr, history(1, vec![source()])).await;
    let seen = old.upper_past(2).await;
    // A higher epoch connects; the old connection sends nothing more, and its stream
    // must still end, without waiting for its next command.
    let mut new = Connection::open(&addr, history(2, vec![source()])).await;
    let status = old.end().await.expect("an error status");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(status.message(), "fenced: epoch 1 is older than 2");
    new.upper_past(seen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_ends_its_response_stream() {
    let addr = start_replica().await;
    let mut first = Connection::open(&addr, history(1, vec![source()])).await;
    let seen = first.upper_past(2).await;
    // The client closes its side; the replica ends the response stream cleanly.
    first.commands = None;
    let end = first.end().await;
    assert!(end.is_none(), "{end:?}");
    let mut second = Connection::open(&addr, history(1, vec![source()])).await;
    second.upper_past(seen).await;
}
