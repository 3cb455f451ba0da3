//! Instance scenarios that every transport runs: one async function per behaviour, each
//! taking a factory that connects to a [`FakeReplica`].

#![cfg(test)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_controller_api::{GlobalId, InstanceId, ReplicaId, Status, StatusUpdate, Timestamp};

use crate::instance::{Instance, InstanceResponse};
use crate::protocol::{ReplicaResponse, StorageCommand};
pub(crate) use crate::testing::FakeReplica;
use crate::testing::{
    compact, config, fast_backoff, frontier, ingestion, recv_until, sink, wait_until,
};
use crate::transport::ReplicaConnector;

/// Connects to a fake replica over some transport.
pub(crate) type Factory =
    Arc<dyn Fn(Arc<FakeReplica>) -> Arc<dyn ReplicaConnector<Timestamp>> + Send + Sync>;

fn marker(id: u64) -> ReplicaResponse<Timestamp> {
    ReplicaResponse::StatusUpdate(StatusUpdate {
        id: GlobalId::System(id),
        status: Status::Running,
        timestamp_ms: 0,
        error: None,
        hints: vec![],
        replica_id: None,
    })
}

fn is_marker(r: &InstanceResponse<Timestamp>, id: u64, replica: ReplicaId) -> bool {
    matches!(r, InstanceResponse::Status(s) if s.id == GlobalId::System(id) && s.replica_id == Some(replica))
}

/// An instance with `n` connected fake replicas r1..=rn.
pub(crate) async fn setup(
    factory: &Factory,
    n: u64,
    epoch: u64,
) -> (Instance<Timestamp>, Vec<Arc<FakeReplica>>) {
    let mut instance = Instance::new(InstanceId(1), epoch, fast_backoff());
    let mut fakes = Vec::new();
    for r in 1..=n {
        let fake = FakeReplica::new();
        instance
            .add_replica(ReplicaId(r), factory(Arc::clone(&fake)))
            .unwrap();
        fakes.push(fake);
    }
    for fake in &fakes {
        wait_until("replicas connect", || fake.connections().len() == 1).await;
    }
    (instance, fakes)
}

/// Waits until every fake has received `count` commands on its latest connection.
async fn wait_for_commands(fakes: &[Arc<FakeReplica>], count: usize) {
    for fake in fakes {
        wait_until("commands arrive", || {
            fake.connections().last().is_some_and(|c| c.len() >= count)
        })
        .await;
    }
}

/// Uppers merge to the maximum reported and never regress.
pub(crate) async fn upper_merging(factory: Factory, n: u64) {
    let (mut instance, fakes) = setup(&factory, n, 1).await;
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    wait_for_commands(&fakes, 2).await;
    let upper = |t| ReplicaResponse::FrontierUppers(vec![(GlobalId::User(1), frontier(Some(t)))]);
    let mut expected = 0;
    for (i, fake) in fakes.iter().enumerate() {
        // Replica i reports 10 + 5i, then a regressed 3, then a marker.
        let t = 10 + 5 * i as u64;
        assert!(fake.respond(upper(t)));
        assert!(fake.respond(upper(3)));
        assert!(fake.respond(marker(i as u64)));
        let seen = recv_until(&mut instance, |r| {
            is_marker(r, i as u64, ReplicaId(i as u64 + 1))
        })
        .await;
        let merged: Vec<_> = seen
            .iter()
            .flat_map(|r| r.merged_uppers().unwrap_or_default())
            .map(|(_, upper)| upper.clone())
            .collect();
        assert_eq!(merged, vec![frontier(Some(t))], "replica {i}");
        expected = t;
    }
    assert_eq!(
        instance.upper(GlobalId::User(1)),
        Some(&frontier(Some(expected)))
    );
    // A lower report from the first replica changes nothing.
    assert!(fakes[0].respond(upper(4)));
    assert!(fakes[0].respond(marker(99)));
    let seen = recv_until(&mut instance, |r| is_marker(r, 99, ReplicaId(1))).await;
    assert!(
        !seen.iter().any(|r| r.merged_uppers().is_some()),
        "{seen:?}"
    );
    if n > 1 {
        // A report that advances the first replica's own upper, but not beyond the
        // merged one, is that replica's alone.
        assert!(fakes[0].respond(upper(11)));
        assert!(fakes[0].respond(marker(100)));
        let seen = recv_until(&mut instance, |r| is_marker(r, 100, ReplicaId(1))).await;
        assert!(
            seen.contains(&InstanceResponse::ReplicaFrontierUppers {
                replica: ReplicaId(1),
                uppers: vec![(GlobalId::User(1), frontier(Some(11)))],
            }),
            "{seen:?}"
        );
        assert!(
            !seen.iter().any(|r| r.merged_uppers().is_some()),
            "{seen:?}"
        );
    }
}

/// One `FrontierUppers` report moves several collections at once: the instance answers
/// with one batch of what advanced, leaving out ids it does not run and reports that
/// do not advance.
pub(crate) async fn batched_uppers(factory: Factory) {
    let (mut instance, fakes) = setup(&factory, 1, 1).await;
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[3])));
    wait_for_commands(&fakes, 2).await;
    let report = |uppers: &[(u64, u64)]| {
        let uppers = uppers
            .iter()
            .map(|(id, t)| (GlobalId::User(*id), frontier(Some(*t))))
            .collect();
        ReplicaResponse::FrontierUppers(uppers)
    };
    let batch = |uppers: &[(u64, u64)]| -> Vec<_> {
        uppers
            .iter()
            .map(|(id, t)| (GlobalId::User(*id), frontier(Some(*t))))
            .collect()
    };
    // Id 9 is not run here.
    assert!(fakes[0].respond(report(&[(1, 5), (2, 6), (9, 4), (3, 7)])));
    assert!(fakes[0].respond(marker(1)));
    let seen = recv_until(&mut instance, |r| is_marker(r, 1, ReplicaId(1))).await;
    // The one replica's uppers are the instance's: one shared list answers for both.
    let first = batch(&[(1, 5), (2, 6), (3, 7)]);
    assert!(
        seen.contains(&InstanceResponse::SharedFrontierUppers {
            replica: ReplicaId(1),
            uppers: first,
        }),
        "{seen:?}"
    );
    // Id 1 regresses and id 3 repeats: only id 2 advanced.
    assert!(fakes[0].respond(report(&[(1, 2), (2, 8), (3, 7)])));
    assert!(fakes[0].respond(marker(2)));
    let seen = recv_until(&mut instance, |r| is_marker(r, 2, ReplicaId(1))).await;
    assert!(
        seen.contains(&InstanceResponse::SharedFrontierUppers {
            replica: ReplicaId(1),
            uppers: batch(&[(2, 8)]),
        }),
        "{seen:?}"
    );
    assert_eq!(instance.upper(GlobalId::User(1)), Some(&frontier(Some(5))));
    assert_eq!(instance.upper(GlobalId::User(9)), None);
}

/// DroppedId is final only once every replica that ran the object confirmed.
pub(crate) async fn dropped_id_completion(factory: Factory, n: u64) {
    let (mut instance, fakes) = setup(&factory, n, 1).await;
    for fake in &fakes {
        fake.auto_drop.store(false, Ordering::SeqCst);
    }
    instance.send(StorageCommand::RunSink(sink(7, 1, 0)));
    instance.send(compact(7, None));
    // Only the sink host ran the sink, so only its confirmation counts.
    wait_for_commands(&fakes[..1], 3).await;
    assert!(fakes[0].respond(ReplicaResponse::DroppedId(GlobalId::User(7))));
    recv_until(&mut instance, |r| {
        *r == InstanceResponse::DroppedId(GlobalId::User(7))
    })
    .await;

    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    instance.send(compact(1, None));
    instance.send(compact(2, None));
    wait_for_commands(&fakes, 4).await;
    for (i, fake) in fakes.iter().enumerate() {
        let replica = ReplicaId(i as u64 + 1);
        if i + 1 < fakes.len() {
            assert!(fake.respond(ReplicaResponse::DroppedId(GlobalId::User(1))));
            assert!(fake.respond(marker(i as u64)));
            let seen = recv_until(&mut instance, |r| is_marker(r, i as u64, replica)).await;
            assert!(
                !seen
                    .iter()
                    .any(|r| matches!(r, InstanceResponse::DroppedId(_))),
                "{seen:?}"
            );
        } else {
            assert!(fake.respond(ReplicaResponse::DroppedId(GlobalId::User(1))));
            recv_until(&mut instance, |r| {
                *r == InstanceResponse::DroppedId(GlobalId::User(1))
            })
            .await;
        }
    }
    // Nobody confirms the remap collection but the first replica; dropping the rest
    // of the replicas completes it.
    assert!(fakes[0].respond(ReplicaResponse::DroppedId(GlobalId::User(2))));
    for r in 2..=n {
        instance.drop_replica(ReplicaId(r)).unwrap();
    }
    recv_until(&mut instance, |r| {
        *r == InstanceResponse::DroppedId(GlobalId::User(2))
    })
    .await;
}

/// A crashed replica reconnects with a new nonce and receives the reduced history.
pub(crate) async fn reconnect_replays_history(factory: Factory, n: u64) {
    let (mut instance, fakes) = setup(&factory, n, 3).await;
    instance.send(config("a", "1"));
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    instance.send(StorageCommand::RunSink(sink(5, 1, 0)));
    instance.send(compact(1, Some(4)));
    instance.send(compact(5, Some(6)));
    instance.send(config("a", "2"));
    instance.send(StorageCommand::InitializationComplete);
    instance.send(StorageCommand::AllowWrites);
    let last = fakes.len() - 1;
    wait_for_commands(&fakes[last..], if last == 0 { 9 } else { 7 }).await;
    let first_hello = fakes[last].connections()[0][0].clone();

    fakes[last].crash();
    wait_until("the replica reconnects", || {
        fakes[last]
            .connections()
            .get(1)
            .is_some_and(|c| c.contains(&StorageCommand::AllowWrites))
    })
    .await;
    let replay = fakes[last].connections()[1].clone();
    let StorageCommand::Hello { nonce, epoch } = replay[0] else {
        panic!("no hello: {replay:?}")
    };
    let StorageCommand::Hello {
        nonce: first_nonce, ..
    } = first_hello
    else {
        panic!()
    };
    assert_eq!(epoch, 3);
    assert_ne!(nonce, first_nonce);
    let mut absorbed = sink(5, 1, 0);
    absorbed.description.as_of = frontier(Some(6));
    let mut expected = vec![
        config("a", "2"),
        StorageCommand::RunIngestion(ingestion(1, 2, &[])),
    ];
    if last == 0 {
        expected.push(StorageCommand::RunSink(absorbed));
    }
    expected.extend([
        compact(1, Some(4)),
        StorageCommand::InitializationComplete,
        StorageCommand::AllowWrites,
    ]);
    assert_eq!(replay[1..].to_vec(), expected);

    // Commands sent after the reconnect arrive once, after the replay.
    instance.send(compact(1, Some(8)));
    wait_until("live commands flow", || {
        fakes[last].connections()[1].contains(&compact(1, Some(8)))
    })
    .await;
    assert_eq!(
        fakes[last].connections()[1]
            .iter()
            .filter(|c| **c == compact(1, Some(8)))
            .count(),
        1
    );
}

/// Sinks run on the lowest replica only and move when it is dropped.
pub(crate) async fn sink_failover(factory: Factory) {
    let (mut instance, fakes) = setup(&factory, 3, 1).await;
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[])));
    instance.send(StorageCommand::RunSink(sink(5, 1, 0)));
    instance.send(compact(5, Some(2)));
    wait_for_commands(&fakes[..1], 4).await;
    wait_for_commands(&fakes[1..], 3).await;
    let has_sink = |fake: &FakeReplica| {
        fake.connections()[0]
            .iter()
            .any(|c| matches!(c, StorageCommand::RunSink(_)))
    };
    assert!(has_sink(&fakes[0]));
    assert!(!has_sink(&fakes[1]) && !has_sink(&fakes[2]));
    assert_eq!(instance.sink_host(), Some(ReplicaId(1)));

    instance.drop_replica(ReplicaId(1)).unwrap();
    assert_eq!(instance.sink_host(), Some(ReplicaId(2)));
    wait_until("the sink moves to r2", || has_sink(&fakes[1])).await;
    let moved = fakes[1].connections()[0]
        .iter()
        .find(|c| matches!(c, StorageCommand::RunSink(_)))
        .cloned();
    let mut absorbed = sink(5, 1, 0);
    absorbed.description.as_of = frontier(Some(2));
    assert_eq!(moved, Some(StorageCommand::RunSink(absorbed)));
    instance.send(StorageCommand::RunSink(sink(6, 1, 0)));
    wait_until("new sinks go to r2", || {
        fakes[1].connections()[0].contains(&StorageCommand::RunSink(sink(6, 1, 0)))
    })
    .await;
    assert!(!has_sink(&fakes[2]));
}

/// Responses carry the replica id.
pub(crate) async fn responses_are_tagged(factory: Factory) {
    let (mut instance, fakes) = setup(&factory, 2, 1).await;
    assert!(fakes[1].respond(ReplicaResponse::StatisticsUpdates {
        sources: vec![],
        sinks: vec![]
    }));
    assert!(fakes[1].respond(marker(1)));
    let seen = recv_until(&mut instance, |r| is_marker(r, 1, ReplicaId(2))).await;
    assert!(seen.contains(&InstanceResponse::Statistics {
        replica: ReplicaId(2),
        sources: vec![],
        sinks: vec![]
    }));
}

/// A `FrontierUppers` report that arrives after an id's drop is final does not bring the id
/// back: no upper is tracked or emitted for it.
pub(crate) async fn late_upper_after_drop(factory: Factory) {
    let (mut instance, fakes) = setup(&factory, 1, 1).await;
    instance.send(StorageCommand::RunIngestion(ingestion(1, 2, &[3])));
    for id in 1..=3 {
        instance.send(compact(id, None));
    }
    let mut dropped = 0;
    recv_until(&mut instance, |r| {
        dropped += usize::from(matches!(r, InstanceResponse::DroppedId(_)));
        dropped == 3
    })
    .await;
    assert!(fakes[0].respond(ReplicaResponse::FrontierUppers(vec![(
        GlobalId::User(3),
        frontier(Some(7))
    )])));
    assert!(fakes[0].respond(marker(5)));
    let seen = recv_until(&mut instance, |r| is_marker(r, 5, ReplicaId(1))).await;
    assert!(
        !seen
            .iter()
            .any(|r| r.merged_uppers().is_some() || r.replica_uppers().is_some()),
        "{seen:?}"
    );
    assert_eq!(instance.upper(GlobalId::User(3)), None);
}
