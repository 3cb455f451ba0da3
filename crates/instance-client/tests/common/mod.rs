//! Shared helpers of instance-client's integration tests: a recording replica handler
//! served over gRPC on loopback, command builders, and bounded waits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use strata_controller_api::{
    Antichain, CollectionMetadata, ExportDescription, GlobalId, IngestionDescription, InstanceId,
    LoadGenerator, RelationDesc, ScalarType, ShardId, SinkConnection, SourceConnection,
    SourceOutput, Timestamp,
};
use strata_instance_client::grpc::{GrpcConnector, ServerConfig, serve};
use strata_instance_client::{
    Backoff, CommandReceiver, EpochFence, Hello, Instance, InstanceResponse, ReplicaConnector,
    ReplicaHandler, ResponseSender, RunIngestionCommand, RunSinkCommand, StorageCommand,
    StorageResponse,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub type Cmd = StorageCommand<Timestamp>;

/// A replica that records the commands of every connection and answers only when told.
#[derive(Default)]
pub struct Recorder {
    connections: Mutex<Vec<Vec<Cmd>>>,
    current: Mutex<Option<(usize, ResponseSender<Timestamp>)>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    /// The commands of every connection so far, each starting with its Hello.
    pub fn connections(&self) -> Vec<Vec<Cmd>> {
        self.connections.lock().unwrap().clone()
    }

    /// Whether the latest connection has received `command`.
    pub fn latest_has(&self, command: &Cmd) -> bool {
        self.connections
            .lock()
            .unwrap()
            .last()
            .is_some_and(|c| c.contains(command))
    }

    /// Sends a response on the current connection; false if there is none.
    pub fn respond(&self, response: StorageResponse<Timestamp>) -> bool {
        match &*self.current.lock().unwrap() {
            Some((_, tx)) => tx.send(response).is_ok(),
            None => false,
        }
    }
}

#[async_trait]
impl ReplicaHandler<Timestamp> for Recorder {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let index = {
            let mut connections = self.connections.lock().unwrap();
            connections.push(vec![StorageCommand::Hello {
                nonce: hello.nonce,
                epoch: hello.epoch,
            }]);
            connections.len() - 1
        };
        *self.current.lock().unwrap() = Some((index, responses));
        while let Some(command) = commands.recv().await {
            self.connections.lock().unwrap()[index].push(command);
        }
        // Let the connection's response stream end with it.
        let mut current = self.current.lock().unwrap();
        if current.as_ref().is_some_and(|(i, _)| *i == index) {
            *current = None;
        }
    }
}

/// Serves `handler` over plaintext gRPC on a fresh loopback port; returns a connector
/// to it. The listener is bound before this returns, so there is no port race.
pub async fn serve_grpc(handler: Arc<dyn ReplicaHandler<Timestamp>>) -> GrpcConnector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        handler,
        EpochFence::new(),
        ServerConfig::default(),
        TcpListenerStream::new(listener),
        std::future::pending(),
    ));
    GrpcConnector::new(&format!("http://{addr}"), None).unwrap()
}

/// Serves `handler` over gRPC with `config` on a fresh loopback port; returns the
/// address and a count of the TCP connections the server has accepted, so a test can
/// wait for a client's attempts instead of sleeping.
pub async fn serve_grpc_counting(
    handler: Arc<dyn ReplicaHandler<Timestamp>>,
    config: ServerConfig,
) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let incoming = TcpListenerStream::new(listener).inspect(move |io| {
        if io.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    tokio::spawn(serve(
        handler,
        EpochFence::new(),
        config,
        incoming,
        std::future::pending(),
    ));
    (addr, accepted)
}

pub fn connector(c: GrpcConnector) -> Arc<dyn ReplicaConnector<Timestamp>> {
    Arc::new(c)
}

pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(50),
    }
}

pub fn instance() -> Instance<Timestamp> {
    Instance::new(InstanceId(1), 1, fast_backoff())
}

/// A frontier at `t`, or `[]` for `None`.
pub fn frontier(t: Option<u64>) -> Antichain<Timestamp> {
    match t {
        Some(t) => Antichain::from_elem(Timestamp::new(t)),
        None => Antichain::new(),
    }
}

fn metadata(n: u8) -> CollectionMetadata {
    CollectionMetadata {
        persist_location: "mem://instance-client-tests".into(),
        data_shard: ShardId::from_bytes([n; 16]),
        remap_shard: None,
        txns_shard: None,
        relation_desc: RelationDesc::builder()
            .with_column("n", ScalarType::Int64.nullable(false))
            .finish(),
    }
}

/// An ingestion `u{id}` with remap collection `u{remap}` and the given extra exports.
pub fn ingestion(id: u64, remap: u64, exports: &[u64]) -> RunIngestionCommand<Timestamp> {
    let mut source_exports = BTreeMap::new();
    source_exports.insert(GlobalId::User(id), SourceOutput::Primary);
    for e in exports {
        source_exports.insert(GlobalId::User(*e), SourceOutput::Named(format!("out{e}")));
    }
    let storage_metadata = source_exports.keys().map(|id| (*id, metadata(1))).collect();
    RunIngestionCommand {
        id: GlobalId::User(id),
        description: IngestionDescription {
            connection: SourceConnection::LoadGenerator {
                generator: LoadGenerator::Counter { max_ticks: None },
                tick_interval_ms: 10,
                offsets_per_tick: 1,
                seed: 0,
            },
            instance_id: InstanceId(1),
            remap_collection_id: GlobalId::User(remap),
            source_exports,
            as_of: None,
        },
        storage_metadata,
    }
}

/// A sink `u{id}` reading `u{from}` from `as_of`.
pub fn sink(id: u64, from: u64, as_of: u64) -> RunSinkCommand<Timestamp> {
    RunSinkCommand {
        id: GlobalId::User(id),
        description: ExportDescription {
            from: GlobalId::User(from),
            from_desc: RelationDesc::empty(),
            connection: SinkConnection::File {
                path: format!("/tmp/strata-instance-client-sink{id}"),
            },
            as_of: frontier(Some(as_of)),
            with_snapshot: true,
            instance_id: InstanceId(1),
        },
        from_metadata: metadata(2),
    }
}

/// Waits (bounded, so a bug fails instead of hanging) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..4_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Receives responses until `pred` matches one, returning everything received.
pub async fn recv_until(
    instance: &mut Instance<Timestamp>,
    mut pred: impl FnMut(&InstanceResponse<Timestamp>) -> bool,
) -> Vec<InstanceResponse<Timestamp>> {
    let mut seen = Vec::new();
    loop {
        let response = tokio::time::timeout(Duration::from_secs(20), instance.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching response; saw {seen:?}"));
        let done = pred(&response);
        seen.push(response);
        if done {
            return seen;
        }
    }
}
