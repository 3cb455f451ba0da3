use std::sync::Arc;

use strata_controller_api::{GlobalId, InstanceId, ReplicaId, Timestamp};

use super::{Instance, InstanceResponse};
use crate::local::LocalConnector;
use crate::protocol::StorageCommand;
use crate::scenarios::{self, Factory};
use crate::testing::{
    CountingConnector, FakeReplica, compact, fast_backoff, ingestion, paused_ids, recv_until, sink,
    soak_factor, wait_until,
};
use crate::transport::ReplicaConnector;

/// How many connection attempts of a refused client the tests wait for: after the
/// second, the first has certainly ended.
const ATTEMPTS: usize = 3;

fn local() -> Factory {
    Arc::new(
        |fake: Arc<FakeReplica>| -> Arc<dyn ReplicaConnector<Timestamp>> {
            LocalConnector::new(fake)
        },
    )
}

#[tokio::test]
async fn upper_merging_one_replica() {
    scenarios::upper_merging(local(), 1).await;
}

#[tokio::test]
async fn upper_merging_three_replicas() {
    scenarios::upper_merging(local(), 3).await;
}

#[tokio::test]
async fn batched_uppers() {
    scenarios::batched_uppers(local()).await;
}

#[tokio::test]
async fn dropped_id_completion_one_replica() {
    scenarios::dropped_id_completion(local(), 1).await;
}

#[tokio::test]
async fn dropped_id_completion_three_replicas() {
    scenarios::dropped_id_completion(local(), 3).await;
}

#[tokio::test]
async fn reconnect_replays_history_one_replica() {
    for _ in 0..soak_factor() {
        scenarios::reconnect_replays_history(local(), 1).await;
    }
}

#[tokio::test]
async fn reconnect_replays_history_three_replicas() {
    for _ in 0..soak_factor() {
        scenarios::reconnect_replays_history(local(), 3).await;
    }
}

#[tokio::test]
async fn sink_failover() {
    for _ in 0..soak_factor() {
        scenarios::sink_failover(local()).await;
    }
}

#[tokio::test]
async fn a_late_upper_does_not_revive_a_dropped_id() {
    scenarios::late_upper_after_drop(local()).await;
}

#[tokio::test]
async fn responses_are_tagged() {
    scenarios::responses_are_tagged(local()).await;
}

#[tokio::test]
async fn zero_replicas_synthesise_paused() {
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    let drain = |instance: &mut Instance<Timestamp>| {
        let mut seen = Vec::new();
        while let Some(r) = instance.try_recv() {
            seen.push(r);
        }
        paused_ids(&seen)
    };
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[3])));
    assert_eq!(
        drain(&mut instance),
        vec![GlobalId::User(1), GlobalId::User(3)]
    );
    // Only the new object: the others are paused already.
    instance.send(StorageCommand::RunSink(sink(5, 1, 0)));
    assert_eq!(drain(&mut instance), vec![GlobalId::User(5)]);

    // Losing the last replica pauses everything again.
    let fake = FakeReplica::new();
    instance
        .add_replica(ReplicaId(1), LocalConnector::new(fake.clone()))
        .unwrap();
    wait_until("the replica connects", || fake.connections().len() == 1).await;
    assert!(instance.try_recv().is_none());
    instance.drop_replica(ReplicaId(1)).unwrap();
    let mut seen = Vec::new();
    while let Some(r) = instance.try_recv() {
        seen.push(r);
    }
    assert_eq!(
        paused_ids(&seen),
        vec![GlobalId::User(1), GlobalId::User(3), GlobalId::User(5)]
    );
}

#[tokio::test]
async fn unavailable_replica_is_retried_until_it_comes_back() {
    let fake = FakeReplica::new();
    let connector = LocalConnector::new(fake.clone());
    connector.set_available(false);
    let counting = CountingConnector::new(connector.clone());
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    instance
        .add_replica(ReplicaId(1), counting.clone())
        .unwrap();
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    wait_until("the instance has retried the refused replica", || {
        counting.attempts() >= ATTEMPTS
    })
    .await;
    assert!(fake.connections().is_empty());
    connector.set_available(true);
    wait_until("the replica connects", || {
        fake.connections().first().is_some_and(|c| c.len() == 2)
    })
    .await;
    assert_eq!(
        fake.connections()[0][1],
        StorageCommand::RunIngestion(ingestion(1, 2, &[]))
    );
}

#[tokio::test]
async fn older_epoch_is_fenced() {
    let fake = FakeReplica::new();
    let connector = LocalConnector::new(fake.clone());
    let newer_connector = CountingConnector::new(connector.clone());
    let mut newer = Instance::<Timestamp>::new(InstanceId(1), 5, fast_backoff());
    newer
        .add_replica(ReplicaId(1), newer_connector.clone())
        .unwrap();
    wait_until("epoch 5 connects", || fake.connections().len() == 1).await;

    // An older epoch is refused on every attempt: once it has retried, none of its
    // attempts reached the handler.
    let older_connector = CountingConnector::new(connector.clone());
    let mut older = Instance::<Timestamp>::new(InstanceId(1), 4, fast_backoff());
    older
        .add_replica(ReplicaId(1), older_connector.clone())
        .unwrap();
    older.send(StorageCommand::AllowWrites);
    wait_until("epoch 4 has retried", || {
        older_connector.attempts() >= ATTEMPTS
    })
    .await;
    assert_eq!(
        fake.connections().len(),
        1,
        "an older epoch must never reach the handler"
    );
    assert_eq!(connector.fence().highest(), 5);
    drop(older);

    // A newer epoch cuts the current connection's commands off: epoch 5's next command
    // ends its connection, and its reconnections are refused.
    let mut newest = Instance::<Timestamp>::new(InstanceId(1), 6, fast_backoff());
    newest.add_replica(ReplicaId(1), connector.clone()).unwrap();
    wait_until("epoch 6 connects", || {
        fake.connections()
            .iter()
            .any(|c| matches!(c[0], StorageCommand::Hello { epoch: 6, .. }))
    })
    .await;
    let before = newer_connector.attempts();
    newer.send(StorageCommand::AllowWrites);
    wait_until("epoch 5 was cut off and has retried", || {
        newer_connector.attempts() >= before + ATTEMPTS
    })
    .await;
    assert_eq!(fake.connections().len(), 2);
    assert!(
        fake.connections()
            .iter()
            .all(|c| !c.contains(&StorageCommand::AllowWrites))
    );
    // Epoch 6 is served.
    newest.send(StorageCommand::AllowWrites);
    wait_until("epoch 6 is served", || {
        fake.connections()
            .last()
            .is_some_and(|c| c.contains(&StorageCommand::AllowWrites))
    })
    .await;
}

/// The history keeps a dropped object's final compaction until every replica has
/// confirmed the drop, then forgets it.
#[tokio::test]
async fn confirmed_drops_leave_the_history() {
    let fake = FakeReplica::new();
    fake.auto_drop
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    instance
        .add_replica(ReplicaId(1), LocalConnector::new(fake.clone()))
        .unwrap();
    wait_until("the replica connects", || fake.connections().len() == 1).await;
    instance.send(StorageCommand::RunSink(sink(7, 1, 0)));
    instance.send(compact(7, None));
    let replayed = |instance: &Instance<Timestamp>| {
        let mut shared = instance.lock();
        shared.history.reduce();
        shared.history.iter().cloned().collect::<Vec<_>>()
    };
    assert_eq!(replayed(&instance), vec![compact(7, None)]);
    assert_eq!(instance.lock().history.live(), 1);

    wait_until("the drop arrives", || {
        fake.connections().last().is_some_and(|c| c.len() >= 3)
    })
    .await;
    assert!(
        fake.respond(crate::protocol::ReplicaResponse::DroppedId(GlobalId::User(
            7
        )))
    );
    recv_until(&mut instance, |r| {
        *r == InstanceResponse::DroppedId(GlobalId::User(7))
    })
    .await;
    assert_eq!(instance.lock().history.live(), 0);
    assert_eq!(replayed(&instance), vec![]);
}

/// With no replica, a drop is final at once and the history forgets it straight away.
#[tokio::test]
async fn zero_replica_drops_leave_the_history() {
    let mut instance = Instance::<Timestamp>::new(InstanceId(1), 1, fast_backoff());
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[3])));
    for id in 1..=3 {
        instance.send(compact(id, None));
    }
    let mut dropped = Vec::new();
    while let Some(r) = instance.try_recv() {
        if let InstanceResponse::DroppedId(id) = r {
            dropped.push(id);
        }
    }
    assert_eq!(dropped.len(), 3);
    let mut shared = instance.lock();
    assert_eq!(shared.history.live(), 0);
    shared.history.reduce();
    assert!(shared.history.is_empty());
}
