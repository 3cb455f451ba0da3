//! Replicas that send garbage to an [`Instance`]'s gRPC client: bytes that are not
//! HTTP/2, HTTP/2 whose gRPC message is not protobuf, and a well-formed message that
//! does not validate. Each is disconnected (and reconnected, and disconnected again)
//! while the well-behaved replicas keep receiving commands and their uppers keep
//! advancing. No thread or task panics: a panic hook records any panic, including one
//! in a spawned tokio task that would otherwise go unnoticed.

#![cfg(test)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::*;
use futures::StreamExt;
use strata_controller_api::{GlobalId, ReplicaId};
use strata_instance_client::grpc::{Accepted, GrpcConnector};
use strata_instance_client::proto::{ProtoDroppedId, ProtoStorageResponse, proto_storage_response};
use strata_instance_client::proto_grpc::storage_replica_server::{
    StorageReplica, StorageReplicaServer,
};
use strata_instance_client::testing::{
    FakeReplica, frontier, ingestion, recv_until, soak_factor, wait_until,
};
use strata_instance_client::{ReplicaResponse, StorageCommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Records every panic in the process, wherever it happens, and still prints it.
fn record_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.store(true, Ordering::SeqCst);
        previous(info);
    }));
}

/// What a garbage peer sends once a client connects.
#[derive(Clone, Copy, Debug)]
enum Garbage {
    /// Pseudo-random bytes, then the socket closes.
    RandomThenClose,
    /// Bytes that are not an HTTP/2 frame (a frame header announcing more than the
    /// maximum frame size); the socket stays open until the client leaves.
    NotHttp2KeepOpen,
    /// A valid HTTP/2 and gRPC response whose message is not protobuf; the socket stays
    /// open until the client leaves.
    Http2WithBadMessage,
}

fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Answers a client's HTTP/2 connection by hand: settings, then, for each request, a
/// `200 application/grpc` response carrying one gRPC message of undecodable bytes.
/// Counts the requests it answered.
async fn http2_with_bad_message(mut socket: TcpStream, answered: Arc<AtomicUsize>) {
    let mut preface = [0u8; 24];
    if socket.read_exact(&mut preface).await.is_err() {
        return;
    }
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    if socket.write_all(&frame(SETTINGS, 0, 0, &[])).await.is_err() {
        return;
    }
    loop {
        let mut header = [0u8; 9];
        if socket.read_exact(&mut header).await.is_err() {
            return;
        }
        let len =
            usize::try_from(u32::from_be_bytes([0, header[0], header[1], header[2]])).unwrap();
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if socket.read_exact(&mut payload).await.is_err() {
            return;
        }
        let reply = match kind {
            SETTINGS if flags & ACK == 0 => frame(SETTINGS, ACK, 0, &[]),
            HEADERS => {
                // HPACK: `:status: 200` (static index 8), then `content-type` (static
                // index 31) as a literal without indexing.
                let mut block = vec![0x88, 0x0f, 0x10, 16];
                block.extend(b"application/grpc");
                let mut out = frame(HEADERS, END_HEADERS, stream, &block);
                // A gRPC message: uncompressed, 16 bytes of 0xff (not protobuf: a varint
                // that never ends).
                let mut message = vec![0u8];
                message.extend(16u32.to_be_bytes());
                message.extend([0xff; 16]);
                out.extend(frame(DATA, 0, stream, &message));
                out
            }
            _ => continue,
        };
        if socket.write_all(&reply).await.is_err() {
            return;
        }
        if kind == HEADERS {
            answered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Reads until the client closes its side (or the socket fails).
async fn drain(mut socket: impl AsyncRead + Unpin) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// A peer that answers every connection with `garbage`. Counts the connections it
/// accepted or, for [`Garbage::Http2WithBadMessage`], the gRPC requests it answered.
async fn garbage_peer(garbage: Garbage) -> (GrpcConnector, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&counter);
    tokio::spawn(async move {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        while let Ok((mut socket, _)) = listener.accept().await {
            if !matches!(garbage, Garbage::Http2WithBadMessage) {
                count.fetch_add(1, Ordering::SeqCst);
            }
            seed = seed.wrapping_add(1);
            let bytes = random_bytes(seed, 4096);
            let answered = Arc::clone(&count);
            tokio::spawn(async move {
                match garbage {
                    Garbage::RandomThenClose => {
                        let _ = socket.write_all(&bytes).await;
                    }
                    Garbage::NotHttp2KeepOpen => {
                        let _ = socket
                            .write_all(b"\x00\xffthis is not http/2 at all\r\n\r\n")
                            .await;
                        drain(socket).await;
                    }
                    Garbage::Http2WithBadMessage => {
                        http2_with_bad_message(socket, answered).await;
                    }
                }
            });
        }
    });
    let connector = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
    (connector, counter)
}

/// A gRPC replica that answers every stream with one well-encoded `DroppedId` whose id
/// does not parse; counts streams.
#[derive(Default)]
struct Malformed {
    streams: Arc<AtomicUsize>,
}

type ResponseStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<ProtoStorageResponse, tonic::Status>> + Send>,
>;

#[async_trait::async_trait]
impl StorageReplica for Malformed {
    type CommandResponseStreamStream = ResponseStream;

    async fn command_response_stream(
        &self,
        _request: tonic::Request<
            tonic::Streaming<strata_instance_client::proto::ProtoStorageCommand>,
        >,
    ) -> Result<tonic::Response<ResponseStream>, tonic::Status> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let bad = ProtoStorageResponse {
            kind: Some(proto_storage_response::Kind::DroppedId(ProtoDroppedId {
                id: "not an id".into(),
            })),
        };
        let stream = futures::stream::iter(vec![Ok(bad)]).chain(futures::stream::pending());
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

async fn malformed_peer() -> (GrpcConnector, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let malformed = Malformed::default();
    let streams = Arc::clone(&malformed.streams);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StorageReplicaServer::new(malformed))
            .serve_with_incoming(TcpListenerStream::new(listener).map(|io| io.map(Accepted))),
    );
    let connector = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
    (connector, streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_replicas_are_disconnected_without_a_panic_and_others_carry_on() {
    record_panics();
    let mut instance = instance();
    let good: Vec<_> = (0..2).map(|_| FakeReplica::new()).collect();
    // Good replicas first: r1 hosts the sinks.
    for (i, recorder) in good.iter().enumerate() {
        let c = serve_grpc(Arc::clone(recorder) as _).await;
        instance
            .add_replica(ReplicaId(i as u64 + 1), connector(c))
            .unwrap();
    }
    let mut counters = Vec::new();
    for (i, garbage) in [
        Garbage::RandomThenClose,
        Garbage::NotHttp2KeepOpen,
        Garbage::Http2WithBadMessage,
    ]
    .into_iter()
    .enumerate()
    {
        let (c, count) = garbage_peer(garbage).await;
        instance
            .add_replica(ReplicaId(10 + i as u64), connector(c))
            .unwrap();
        counters.push((format!("{garbage:?}"), count));
    }
    let (c, count) = malformed_peer().await;
    instance.add_replica(ReplicaId(20), connector(c)).unwrap();
    counters.push(("Malformed".to_owned(), count));

    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    let id = GlobalId::User(1);
    // Under `--soak`, many more disconnect/reconnect rounds.
    let rounds = 6 * soak_factor() as usize;
    for round in 1..=rounds {
        // Every bad peer has been disconnected and reconnected `round` times by now.
        for (name, count) in &counters {
            wait_until(&format!("{name} is reconnected ({round})"), || {
                count.load(Ordering::SeqCst) > round
            })
            .await;
        }
        // Commands keep reaching the good replicas...
        let compaction = StorageCommand::AllowCompaction {
            id,
            frontier: frontier(Some(round as u64)),
        };
        instance.send(compaction.clone());
        for recorder in &good {
            wait_until("a good replica receives the command", || {
                recorder.latest_has(&compaction)
            })
            .await;
        }
        // ... and their uppers keep reaching the instance, which still answers.
        for (i, recorder) in good.iter().enumerate() {
            let reported = frontier(Some(10 * round as u64 + i as u64));
            assert!(recorder.respond(ReplicaResponse::FrontierUppers(vec![(
                id,
                reported.clone()
            )])));
            let replica = ReplicaId(i as u64 + 1);
            recv_until(&mut instance, |r| {
                r.replica_uppers() == Some((replica, &[(id, reported.clone())][..]))
            })
            .await;
        }
        // The merged upper is the join of the two reports.
        assert_eq!(
            instance.upper(id),
            Some(&frontier(Some(10 * round as u64 + 1))),
            "round {round}"
        );
    }
    // The good replicas stayed on their first connection the whole time.
    for recorder in &good {
        assert_eq!(recorder.connections().len(), 1);
    }
    let reconnects: Vec<(String, usize)> = counters
        .iter()
        .map(|(name, c)| (name.clone(), c.load(Ordering::SeqCst)))
        .collect();
    eprintln!("connections per garbage peer: {reconnects:?}");
    assert!(!PANICKED.load(Ordering::SeqCst), "something panicked");
}
