//! Shared helpers of instance-client's integration tests: serving a replica handler over
//! gRPC on loopback. The recording `FakeReplica`, command builders and bounded waits are
//! in the crate's `testing` module (the `testing` feature).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use strata_controller_api::{InstanceId, Timestamp};
use strata_instance_client::grpc::{GrpcConnector, ServerConfig, serve};
use strata_instance_client::testing::fast_backoff;
use strata_instance_client::{EpochFence, Instance, ReplicaConnector, ReplicaHandler};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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
