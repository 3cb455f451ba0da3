//! Shared helpers of instance-client's integration tests: a recording replica handler
//! served over gRPC on loopback. Command builders and bounded waits are in the crate's
//! `testing` module (the `testing` feature).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use strata_controller_api::{InstanceId, Timestamp};
use strata_instance_client::grpc::{GrpcConnector, ServerConfig, serve};
use strata_instance_client::testing::fast_backoff;
use strata_instance_client::{
    CommandReceiver, EpochFence, Hello, Instance, ReplicaConnector, ReplicaHandler, ResponseSender,
    StorageCommand, StorageResponse,
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

pub fn instance() -> Instance<Timestamp> {
    Instance::new(InstanceId(1), 1, fast_backoff())
}
