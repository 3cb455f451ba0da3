//! Clients a replica's gRPC server must turn away — plaintext against TLS, a wrong
//! bearer token, an older controller epoch — never reach the handler. Instead of
//! sleeping and then asserting that nothing arrived, each test waits until the server
//! has accepted the rejected client's connection several times (so earlier attempts
//! have finished and been retried) and then checks the handler saw none of them.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use strata_controller_api::{InstanceId, ReplicaId, Timestamp};
use strata_instance_client::grpc::{ClientTls, GrpcConnector, ServerConfig};
use strata_instance_client::testing::{FakeReplica, fast_backoff, wait_until};
use strata_instance_client::{Instance, StorageCommand};

/// How many accepted connections of a rejected client the tests wait for.
const ATTEMPTS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_never_reaches_a_tls_replica() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = key.cert.pem().into_bytes();
    let config = ServerConfig {
        tls: Some((
            cert_pem.clone(),
            key.signing_key.serialize_pem().into_bytes(),
        )),
        token: None,
    };
    let recorder = FakeReplica::new();
    let (addr, accepted) = serve_grpc_counting(recorder.clone(), config).await;

    let plain = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
    let mut rejected = instance();
    rejected
        .add_replica(ReplicaId(1), connector(plain))
        .unwrap();
    rejected.send(StorageCommand::AllowWrites);
    wait_until("the plaintext client has retried", || {
        accepted.load(Ordering::SeqCst) >= ATTEMPTS
    })
    .await;
    assert!(recorder.connections().is_empty());
    drop(rejected);

    // The same server serves a TLS client.
    let tls = ClientTls {
        ca_pem: cert_pem,
        domain: "localhost".into(),
    };
    let port = addr.port();
    let good = GrpcConnector::new(&format!("https://localhost:{port}"), Some(tls)).unwrap();
    let mut accepted_instance = instance();
    accepted_instance
        .add_replica(ReplicaId(1), connector(good))
        .unwrap();
    accepted_instance.send(StorageCommand::AllowWrites);
    wait_until("the tls client is served", || {
        recorder.latest_has(&StorageCommand::AllowWrites)
    })
    .await;
    assert_eq!(recorder.connections().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_never_reaches_the_replica() {
    let config = ServerConfig {
        tls: None,
        token: Some("right".into()),
    };
    let recorder = FakeReplica::new();
    let (addr, accepted) = serve_grpc_counting(recorder.clone(), config).await;
    for token in [None, Some("wrong"), Some("righ"), Some("right ")] {
        let before = accepted.load(Ordering::SeqCst);
        let mut connector_ = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
        if let Some(token) = token {
            connector_ = connector_.with_token(token);
        }
        let mut rejected = instance();
        rejected
            .add_replica(ReplicaId(1), connector(connector_))
            .unwrap();
        rejected.send(StorageCommand::AllowWrites);
        wait_until(&format!("the client with {token:?} has retried"), || {
            accepted.load(Ordering::SeqCst) >= before + ATTEMPTS
        })
        .await;
        assert!(recorder.connections().is_empty(), "{token:?} got through");
    }
    let right = GrpcConnector::new(&format!("http://{addr}"), None)
        .unwrap()
        .with_token("right");
    let mut served = instance();
    served.add_replica(ReplicaId(1), connector(right)).unwrap();
    served.send(StorageCommand::AllowWrites);
    wait_until("the right token is served", || {
        recorder.latest_has(&StorageCommand::AllowWrites)
    })
    .await;
}

fn at_epoch(epoch: u64) -> Instance<Timestamp> {
    Instance::new(InstanceId(1), epoch, fast_backoff())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_epochs_never_reach_the_replica() {
    let recorder = FakeReplica::new();
    let (addr, accepted) = serve_grpc_counting(recorder.clone(), ServerConfig::default()).await;
    let uri = format!("http://{addr}");
    let grpc = || connector(GrpcConnector::new(&uri, None).unwrap());

    let mut newer = at_epoch(5);
    newer.add_replica(ReplicaId(1), grpc()).unwrap();
    wait_until("epoch 5 connects", || recorder.connections().len() == 1).await;

    // An older controller is refused on every attempt.
    let mut older = at_epoch(4);
    older.add_replica(ReplicaId(1), grpc()).unwrap();
    older.send(StorageCommand::AllowWrites);
    let before = accepted.load(Ordering::SeqCst);
    wait_until("epoch 4 has retried", || {
        accepted.load(Ordering::SeqCst) >= before + ATTEMPTS
    })
    .await;
    assert_eq!(recorder.connections().len(), 1);
    drop(older);

    // A newer controller fences epoch 5: its next command ends its connection without
    // reaching the handler, and its reconnections are refused.
    let mut newest = at_epoch(6);
    newest.add_replica(ReplicaId(1), grpc()).unwrap();
    wait_until("epoch 6 connects", || recorder.connections().len() == 2).await;
    let before = accepted.load(Ordering::SeqCst);
    newer.send(StorageCommand::AllowWrites);
    wait_until("epoch 5 was cut off and has retried", || {
        accepted.load(Ordering::SeqCst) >= before + ATTEMPTS
    })
    .await;
    let connections = recorder.connections();
    assert_eq!(connections.len(), 2);
    assert!(matches!(
        connections[1][0],
        StorageCommand::Hello { epoch: 6, .. }
    ));
    assert!(
        connections
            .iter()
            .all(|c| !c.contains(&StorageCommand::AllowWrites)),
        "{connections:?}"
    );
    // Epoch 6 is served.
    newest.send(StorageCommand::AllowWrites);
    wait_until("epoch 6 is served", || {
        recorder.latest_has(&StorageCommand::AllowWrites)
    })
    .await;
}
