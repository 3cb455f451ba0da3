//! The re-exported conformance suites against the in-tree implementations: persist's
//! backend suite on memory, on files, and on a `FaultyObjectStore` over files (any
//! `ObjectStore` runs the same way); the transport suite on the local transport, on
//! gRPC over TCP, and on a transparent `FaultyConnector`.

use std::sync::Arc;

use futures::FutureExt;
use futures::stream;
use strata_controller_api::Timestamp;
use strata_instance_client::LocalConnector;
use strata_instance_client::grpc::{GrpcConnector, ServerConfig, serve};
use strata_instance_client::transport::{EpochFence, ReplicaConnector, ReplicaHandler};
use strata_persist_backend::{Location, PersistClient, PersistConfig};
use strata_testkit::conformance::{persist_backend, transport};
use strata_testkit::faults::{FaultyConnector, FaultyObjectStore, TransportFaultHandle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_backend_suite_on_memory() {
    let url = format!(
        "mem://testkit-conformance-{}",
        uuid::Uuid::new_v4().simple()
    );
    let factory = move || {
        let url = url.clone();
        async move {
            PersistClient::open_with_config(&url, PersistConfig::for_tests())
                .await
                .unwrap()
        }
        .boxed()
    };
    persist_backend::run_all(factory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_backend_suite_on_a_faulty_store_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = Location::open(&format!("file://{}", dir.path().display()))
        .await
        .unwrap();
    // Transparent: a team's own store goes here the same way.
    let store = Arc::new(FaultyObjectStore::new(files.store.clone(), 11));
    let factory = move || {
        // The file register keeps its head files beside the store, so the faults reach
        // parts and the format marker; consensus is the files' own.
        let location = Location::from_store(store.clone(), "", "faulty://files")
            .with_consensus(files.consensus.clone());
        async move { PersistClient::from_location(location, PersistConfig::for_tests()) }.boxed()
    };
    persist_backend::run_all(factory).await;
}

fn local(
    handler: Arc<dyn ReplicaHandler<Timestamp>>,
) -> futures::future::BoxFuture<'static, Arc<dyn ReplicaConnector<Timestamp>>> {
    async move { LocalConnector::new(handler) as Arc<dyn ReplicaConnector<Timestamp>> }.boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_suite_on_the_local_transport() {
    transport::run_all(&local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_suite_on_a_transparent_faulty_transport() {
    let faults = TransportFaultHandle::new(5);
    let counters = faults.clone();
    let faulty = move |handler: Arc<dyn ReplicaHandler<Timestamp>>| {
        let faults = faults.clone();
        async move {
            FaultyConnector::new(local(handler).await, faults)
                as Arc<dyn ReplicaConnector<Timestamp>>
        }
        .boxed()
    };
    transport::run_all(&faulty).await;
    assert!(counters.counters().messages > 0);
    assert_eq!(counters.counters().total_faults(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_suite_on_grpc_over_tcp() {
    let grpc = |handler: Arc<dyn ReplicaHandler<Timestamp>>| {
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let incoming = stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await.map(|(socket, _)| socket);
                Some((accepted, listener))
            });
            tokio::spawn(serve(
                handler,
                EpochFence::new(),
                ServerConfig::default(),
                incoming,
                futures::future::pending(),
            ));
            let connector = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
            Arc::new(connector) as Arc<dyn ReplicaConnector<Timestamp>>
        }
        .boxed()
    };
    transport::run_all(&grpc).await;
}
