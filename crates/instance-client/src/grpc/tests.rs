#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::{GlobalId, InstanceId, ReplicaId, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Request;

use super::{ClientTls, GrpcConnector, ServerConfig, serve};
use crate::instance::{Instance, InstanceResponse};
use crate::proto::{
    ProtoStorageCommand, ProtoStorageResponse, proto_storage_command as cmd,
    proto_storage_response as resp,
};
use crate::proto_grpc::storage_replica_client::StorageReplicaClient;
use crate::proto_grpc::storage_replica_server::{StorageReplica, StorageReplicaServer};
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::scenarios::{self, Factory};
use crate::testing::{
    FakeReplica, fast_backoff, frontier, ingestion, recv_until, soak_factor, wait_until,
};
use crate::transport::{EpochFence, ReplicaConnector, ReplicaHandler};

/// Starts a server for `handler` on a loopback port; returns its address.
async fn start(
    handler: Arc<dyn ReplicaHandler<Timestamp>>,
    fence: Arc<EpochFence>,
    config: ServerConfig,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        handler,
        fence,
        config,
        TcpListenerStream::new(listener),
        std::future::pending(),
    ));
    addr.to_string()
}

fn grpc() -> Factory {
    Arc::new(
        |fake: Arc<FakeReplica>| -> Arc<dyn ReplicaConnector<Timestamp>> {
            // Factories are synchronous: bind with std, then serve on tokio.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let listener = TcpListener::from_std(listener).unwrap();
            let config = ServerConfig {
                tls: None,
                token: Some("secret".into()),
            };
            tokio::spawn(serve(
                fake,
                EpochFence::new(),
                config,
                TcpListenerStream::new(listener),
                std::future::pending(),
            ));
            Arc::new(
                GrpcConnector::new(&format!("http://{addr}"), None)
                    .unwrap()
                    .with_token("secret"),
            )
        },
    )
}

#[tokio::test]
async fn batched_uppers() {
    scenarios::batched_uppers(grpc()).await;
}

#[tokio::test]
async fn upper_merging_one_replica() {
    scenarios::upper_merging(grpc(), 1).await;
}

#[tokio::test]
async fn upper_merging_three_replicas() {
    scenarios::upper_merging(grpc(), 3).await;
}

#[tokio::test]
async fn dropped_id_completion_three_replicas() {
    scenarios::dropped_id_completion(grpc(), 3).await;
}

#[tokio::test]
async fn reconnect_replays_history_one_replica() {
    for _ in 0..soak_factor() {
        scenarios::reconnect_replays_history(grpc(), 1).await;
    }
}

#[tokio::test]
async fn reconnect_replays_history_three_replicas() {
    for _ in 0..soak_factor() {
        scenarios::reconnect_replays_history(grpc(), 3).await;
    }
}

#[tokio::test]
async fn sink_failover() {
    for _ in 0..soak_factor() {
        scenarios::sink_failover(grpc()).await;
    }
}

#[tokio::test]
async fn responses_are_tagged() {
    scenarios::responses_are_tagged(grpc()).await;
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = key.cert.pem().into_bytes();
    let key_pem = key.signing_key.serialize_pem().into_bytes();
    let fake = FakeReplica::new();
    let config = ServerConfig {
        tls: Some((cert_pem.clone(), key_pem)),
        token: Some("t".into()),
    };
    let addr = start(fake.clone(), EpochFence::new(), config).await;
    let port = addr.rsplit(':').next().unwrap();
    let tls = ClientTls {
        ca_pem: cert_pem,
        domain: "localhost".into(),
    };
    let connector = GrpcConnector::new(&format!("https://localhost:{port}"), Some(tls))
        .unwrap()
        .with_token("t");
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    instance
        .add_replica(ReplicaId(1), Arc::new(connector))
        .unwrap();
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    wait_until("commands arrive over tls", || {
        fake.connections().first().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert!(fake.respond(ReplicaResponse::FrontierUppers(vec![(
        GlobalId::User(1),
        frontier(Some(9))
    )])));
    recv_until(&mut instance, |r| r.merged_uppers().is_some()).await;
    assert_eq!(instance.upper(GlobalId::User(1)), Some(&frontier(Some(9))));
    // That a plaintext client never reaches a TLS server is
    // tests/grpc_rejected_peers.rs::a_plaintext_client_never_reaches_a_tls_replica.
}

async fn raw_client(
    addr: &str,
    token: Option<&str>,
) -> StorageReplicaClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        impl tonic::service::Interceptor,
    >,
> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer =
        token.map(|t| tonic::metadata::MetadataValue::try_from(format!("Bearer {t}")).unwrap());
    StorageReplicaClient::with_interceptor(channel, move |mut r: Request<()>| {
        if let Some(b) = &bearer {
            r.metadata_mut().insert("authorization", b.clone());
        }
        Ok(r)
    })
}

fn hello(epoch: u64) -> ProtoStorageCommand {
    ProtoStorageCommand::from(&StorageCommand::<Timestamp>::Hello { nonce: 1, epoch })
}

#[tokio::test]
async fn wrong_or_missing_token_is_rejected() {
    let fake = FakeReplica::new();
    let config = ServerConfig {
        tls: None,
        token: Some("right".into()),
    };
    let addr = start(fake.clone(), EpochFence::new(), config).await;
    for token in [None, Some("wrong"), Some("righ"), Some("right ")] {
        let mut client = raw_client(&addr, token).await;
        let status = client
            .command_response_stream(futures::stream::iter(vec![hello(1)]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    // That an instance with a wrong token never reaches the handler, on any retry, is
    // tests/grpc_rejected_peers.rs::a_wrong_token_never_reaches_the_replica.
    assert!(fake.connections().is_empty());
    // The right token gets through.
    let mut client = raw_client(&addr, Some("right")).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(hello(1)).unwrap();
    let _stream = client
        .command_response_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap();
    wait_until("the handler sees the connection", || {
        fake.connections().len() == 1
    })
    .await;
}

#[tokio::test]
async fn older_epoch_is_refused() {
    let fake = FakeReplica::new();
    let fence = EpochFence::new();
    let addr = start(fake.clone(), Arc::clone(&fence), ServerConfig::default()).await;
    let mut newer = raw_client(&addr, None).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(hello(7)).unwrap();
    let _newer = newer
        .command_response_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .unwrap();
    wait_until("epoch 7 connects", || fake.connections().len() == 1).await;

    let mut older = raw_client(&addr, None).await;
    let mut stream = older
        .command_response_stream(futures::stream::iter(vec![hello(6)]))
        .await
        .unwrap()
        .into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(fake.connections().len(), 1);
    assert_eq!(fence.highest(), 7);
}

#[tokio::test]
async fn garbage_and_malformed_peers_are_disconnected_and_others_carry_on() {
    let fake = FakeReplica::new();
    let addr = start(fake.clone(), EpochFence::new(), ServerConfig::default()).await;

    // Bytes that are not HTTP/2: the server closes the socket.
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(b"\x00\xffthis is not http/2 at all\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break true,
            Ok(_) => {}
        }
    };
    assert!(closed);

    // A well-formed stream with a malformed command: the connection ends with an error.
    let mut client = raw_client(&addr, None).await;
    let malformed = ProtoStorageCommand {
        kind: Some(cmd::Kind::AllowCompaction(
            crate::proto::ProtoAllowCompaction {
                id: "nope".into(),
                frontier: None,
            },
        )),
    };
    let mut stream = client
        .command_response_stream(futures::stream::iter(vec![hello(1), malformed]))
        .await
        .unwrap()
        .into_inner();
    let status = stream.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    // The server still serves a well-behaved controller.
    let connector = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 2, fast_backoff());
    instance
        .add_replica(ReplicaId(1), Arc::new(connector))
        .unwrap();
    instance.send(StorageCommand::AllowWrites);
    wait_until("a good controller is served", || {
        fake.connections()
            .iter()
            .any(|c| c.contains(&StorageCommand::AllowWrites))
    })
    .await;
}

/// A replica server that answers every stream with one malformed response.
#[derive(Default)]
struct Evil {
    streams: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl StorageReplica for Evil {
    type CommandResponseStreamStream = super::ResponseStream;

    async fn command_response_stream(
        &self,
        _request: Request<tonic::Streaming<ProtoStorageCommand>>,
    ) -> Result<tonic::Response<Self::CommandResponseStreamStream>, tonic::Status> {
        self.streams
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let bad = ProtoStorageResponse {
            kind: Some(resp::Kind::DroppedId(crate::proto::ProtoDroppedId {
                id: "garbage".into(),
            })),
        };
        let stream = futures::StreamExt::chain(
            futures::stream::iter(vec![Ok(bad)]),
            futures::stream::pending(),
        );
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[tokio::test]
async fn a_malformed_replica_is_disconnected_and_others_carry_on() {
    use futures::StreamExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_addr = listener.local_addr().unwrap();
    let evil = Evil::default();
    let evil_streams = Arc::clone(&evil.streams);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StorageReplicaServer::new(evil))
            .serve_with_incoming(
                TcpListenerStream::new(listener).map(|io| io.map(super::Accepted)),
            ),
    );
    let good = FakeReplica::new();
    let good_addr = start(good.clone(), EpochFence::new(), ServerConfig::default()).await;

    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    instance
        .add_replica(
            ReplicaId(1),
            Arc::new(GrpcConnector::new(&format!("http://{evil_addr}"), None).unwrap()),
        )
        .unwrap();
    instance
        .add_replica(
            ReplicaId(2),
            Arc::new(GrpcConnector::new(&format!("http://{good_addr}"), None).unwrap()),
        )
        .unwrap();
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    wait_until("the good replica runs the ingestion", || {
        good.connections().first().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert!(good.respond(ReplicaResponse::FrontierUppers(vec![(
        GlobalId::User(1),
        frontier(Some(4))
    )])));
    let seen = recv_until(&mut instance, |r| r.merged_uppers().is_some()).await;
    assert!(
        seen.iter()
            .any(|r| r.merged_uppers() == Some(&[(GlobalId::User(1), frontier(Some(4)))][..])),
        "{seen:?}"
    );
    // The malformed replica was disconnected and is being reconnected.
    wait_until("the malformed replica is reconnected", || {
        evil_streams.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|r| matches!(r, InstanceResponse::DroppedId(_)))
    );
}

#[tokio::test]
async fn dropped_id_completion_one_replica() {
    scenarios::dropped_id_completion(grpc(), 1).await;
}

/// The real protocol over an in-memory network: the dialer hands one end of a duplex
/// pipe to the server's incoming stream.
fn in_memory() -> Factory {
    Arc::new(
        |fake: Arc<FakeReplica>| -> Arc<dyn ReplicaConnector<Timestamp>> {
            let (accept_tx, accept_rx) =
                tokio::sync::mpsc::unbounded_channel::<std::io::Result<tokio::io::DuplexStream>>();
            let incoming = tokio_stream::wrappers::UnboundedReceiverStream::new(accept_rx);
            tokio::spawn(serve(
                fake,
                EpochFence::new(),
                ServerConfig::default(),
                incoming,
                std::future::pending(),
            ));
            let dialer: super::Dialer = Arc::new(move |_uri| {
                let (client, server) = tokio::io::duplex(64 * 1024);
                let sent = accept_tx.send(Ok(server));
                Box::pin(async move {
                    sent.map_err(|_| std::io::Error::from(std::io::ErrorKind::ConnectionRefused))?;
                    Ok(Box::new(client) as Box<dyn super::GrpcIo>)
                })
            });
            Arc::new(
                GrpcConnector::new("http://simulated.invalid", None)
                    .unwrap()
                    .with_dialer(dialer),
            )
        },
    )
}

#[tokio::test]
async fn in_memory_network_upper_merging() {
    scenarios::upper_merging(in_memory(), 3).await;
}

#[tokio::test]
async fn in_memory_network_reconnect_replays_history() {
    for _ in 0..soak_factor() {
        scenarios::reconnect_replays_history(in_memory(), 1).await;
    }
}
