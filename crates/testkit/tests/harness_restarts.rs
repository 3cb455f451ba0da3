//! The harness's restarts: the controller (data kept, epoch bumped, read-only start)
//! and replicas (killed and restarted while the instance keeps working).

#![cfg(test)]

use strata_controller_api::{Datum, GlobalId, Lifecycle, RelationDesc, Row, ScalarType, Timestamp};
use strata_testkit::harness::{Backend, Harness, HarnessError, assert_consolidated_eq};

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x)])
}

async fn restart_keeps_data(backend: Backend) {
    let mut harness = Harness::builder()
        .backend(backend)
        .replicas(2)
        .build()
        .await
        .unwrap();
    let table = GlobalId::User(1);
    harness.create_table(table, desc()).await.unwrap();
    let before_restart = harness.append(table, vec![(row(1), 1)]).await.unwrap();

    let mut epochs = vec![harness.controller().epoch()];
    for round in 2..4 {
        let epoch = harness.restart_controller().await.unwrap();
        assert_eq!(epoch, harness.controller().epoch());
        epochs.push(epoch);
        // Data written before the restart is still there, at its time.
        let old = harness
            .snapshot_multiset(table, before_restart)
            .await
            .unwrap();
        assert_consolidated_eq(old, vec![(row(1), 1)]);
        // And the new controller writes.
        let at = harness.append(table, vec![(row(round), 1)]).await.unwrap();
        let now = harness.snapshot_multiset(table, at).await.unwrap();
        let expected: Vec<_> = (1..=round).map(|x| (row(x), 1)).collect();
        assert_consolidated_eq(now, expected);
    }
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_controller_in_memory_keeps_data_and_bumps_the_epoch() {
    restart_keeps_data(Backend::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_controller_on_files_keeps_data_and_bumps_the_epoch() {
    restart_keeps_data(Backend::TempDir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_replicas_keep_the_instance_working() {
    let mut harness = Harness::builder()
        .replicas(2)
        .workers(2)
        .build()
        .await
        .unwrap();
    let table = GlobalId::User(1);
    harness.create_table(table, desc()).await.unwrap();

    harness.wait_for_replica(0).await.unwrap();
    harness.wait_for_replica(1).await.unwrap();
    harness.kill_replica(0).await.unwrap();
    assert!(!harness.replica_running(0));
    assert!(harness.replica_running(1));
    let at = harness.append(table, vec![(row(1), 1)]).await.unwrap();
    assert_consolidated_eq(
        harness.snapshot_multiset(table, at).await.unwrap(),
        vec![(row(1), 1)],
    );

    harness.kill_replica(1).await.unwrap();
    harness.kill_replica(1).await.unwrap();
    harness.restart_replica(0).await.unwrap();
    harness.restart_replica(1).await.unwrap();
    harness.restart_replica(1).await.unwrap();
    assert_eq!(harness.replica_starts(0), 2);
    assert_eq!(harness.replica_starts(1), 3);
    assert!(harness.replica_running(0) && harness.replica_running(1));
    // The controller reconnects to the new processes and replays its history.
    harness.wait_for_replica(0).await.unwrap();
    harness.wait_for_replica(1).await.unwrap();

    // The instance still works: writes land and the controller survives a restart
    // that reconnects both replicas.
    let at = harness.append(table, vec![(row(2), 1)]).await.unwrap();
    harness.restart_controller().await.unwrap();
    harness.wait_for_replica(0).await.unwrap();
    harness.wait_for_replica(1).await.unwrap();
    assert_consolidated_eq(
        harness.snapshot_multiset(table, at).await.unwrap(),
        vec![(row(1), 1), (row(2), 1)],
    );
    assert!(matches!(
        harness.kill_replica(2).await,
        Err(HarnessError::NoSuchReplica {
            index: 2,
            replicas: 2
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_start_writes_after_allow_writes() {
    let mut harness = Harness::builder()
        .replicas(1)
        .read_only(true)
        .build()
        .await
        .unwrap();
    let table = GlobalId::User(1);
    harness.create_table(table, desc()).await.unwrap();
    let refused = harness.append(table, vec![(row(1), 1)]).await;
    assert!(
        refused.is_err(),
        "a read-only controller appended: {refused:?}"
    );
    harness
        .controller_mut()
        .allow_writes(Some(Timestamp::new(0)))
        .await
        .unwrap();
    let at = harness.append(table, vec![(row(1), 1)]).await.unwrap();
    assert_consolidated_eq(
        harness.snapshot_multiset(table, at).await.unwrap(),
        vec![(row(1), 1)],
    );
}
