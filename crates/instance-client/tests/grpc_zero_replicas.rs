//! An instance whose last gRPC replica goes away synthesises `Paused` for every object,
//! as it does over the local transport; a replica added later gets the whole history
//! replayed over gRPC, and losing it pauses everything again.

mod common;

use common::*;
use strata_controller_api::{GlobalId, ReplicaId, Timestamp};
use strata_instance_client::testing::{
    FakeReplica, ingestion, paused_ids, recv_until, sink, wait_until,
};
use strata_instance_client::{
    Instance, InstanceResponse, ReplicaResponse, Status, StatusUpdate, StorageCommand,
};

/// Every response ready now (the instance's queue, without waiting).
fn ready(instance: &mut Instance<Timestamp>) -> Vec<InstanceResponse<Timestamp>> {
    std::iter::from_fn(|| instance.try_recv()).collect()
}

fn running(id: GlobalId) -> ReplicaResponse<Timestamp> {
    ReplicaResponse::StatusUpdate(StatusUpdate {
        id,
        status: Status::Running,
        timestamp_ms: 0,
        error: None,
        hints: vec![],
        replica_id: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_last_grpc_replica_synthesises_paused() {
    let mut instance = instance();
    let first = FakeReplica::new();
    instance
        .add_replica(ReplicaId(1), connector(serve_grpc(first.clone()).await))
        .unwrap();
    let run = StorageCommand::RunIngestion(ingestion(1, 2, &[3]));
    let sink = StorageCommand::RunSink(sink(5, 1, 0));
    instance.send(run.clone());
    instance.send(sink.clone());
    wait_until("the replica runs the ingestion and the sink", || {
        first.latest_has(&run) && first.latest_has(&sink)
    })
    .await;
    // While a replica runs them, statuses are the replica's own.
    assert!(first.respond(running(GlobalId::User(1))));
    let seen = recv_until(&mut instance, |r| matches!(r, InstanceResponse::Status(_))).await;
    assert!(paused_ids(&seen).is_empty(), "{seen:?}");
    assert!(seen.iter().any(|r| matches!(
        r,
        InstanceResponse::Status(s) if s.status == Status::Running && s.replica_id == Some(ReplicaId(1))
    )));

    // Losing the last replica pauses every ingestion, export and sink.
    instance.drop_replica(ReplicaId(1)).unwrap();
    assert_eq!(
        paused_ids(&ready(&mut instance)),
        vec![GlobalId::User(1), GlobalId::User(3), GlobalId::User(5)]
    );
    // With no replica, a new object is paused as soon as it is sent.
    let second_run = StorageCommand::RunIngestion(ingestion(7, 8, &[]));
    instance.send(second_run.clone());
    assert_eq!(paused_ids(&ready(&mut instance)), vec![GlobalId::User(7)]);

    // A new gRPC replica gets the history replayed, sink included...
    let second = FakeReplica::new();
    instance
        .add_replica(ReplicaId(2), connector(serve_grpc(second.clone()).await))
        .unwrap();
    wait_until("the history is replayed to the new replica", || {
        second.latest_has(&run) && second.latest_has(&sink) && second.latest_has(&second_run)
    })
    .await;
    assert!(second.respond(running(GlobalId::User(7))));
    let seen = recv_until(&mut instance, |r| matches!(r, InstanceResponse::Status(_))).await;
    assert!(paused_ids(&seen).is_empty(), "{seen:?}");

    // ... and losing it pauses everything again.
    instance.drop_replica(ReplicaId(2)).unwrap();
    assert_eq!(
        paused_ids(&ready(&mut instance)),
        vec![
            GlobalId::User(1),
            GlobalId::User(3),
            GlobalId::User(5),
            GlobalId::User(7)
        ]
    );
    // The first replica kept one connection until it was dropped.
    assert_eq!(first.connections().len(), 1);
}
