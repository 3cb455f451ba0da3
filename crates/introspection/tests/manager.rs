//! The CollectionManager against real shards, on the memory and file backends.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use strata_controller_api::StorageWriteOp;
use strata_controller_api::{Antichain, GlobalId, Row, StorageError, StorageTimestamp, Timestamp};
use strata_introspection::CollectionKind;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$name(true).await
            }
        }
    )*};
}

both_backends!(
    differential_converges_to_desired_state,
    concurrent_upper_moves_neither_lose_nor_duplicate,
    monotonic_appender_appends_through_the_manager,
    registering_with_a_desired_state_writes_it_in_one_step,
);

async fn registering_with_a_desired_state_writes_it_in_one_step(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(1), shard(1));
    let stale = [(text_row("u1", "old"), 1), (text_row("u2", "keep"), 1)];
    seed(&b, s, mapping_desc(), &stale).await;
    let seeded = upper(&b, s).await;

    // Ticks are rare, so the first write after start-up is the reconciliation.
    let cfg = strata_introspection::ManagerConfig {
        tick_interval: Duration::from_secs(3600),
        ..fast_config()
    };
    let m = manager(false, cfg);
    let desired = [(text_row("u2", "keep"), 1), (text_row("u3", "new"), 1)];
    let write = writer(&b, s, mapping_desc()).await;
    let reg = strata_introspection::Registration::new(
        id,
        b.client.clone(),
        write,
        CollectionKind::Differential,
    );
    m.register_with_desired(reg, desired.to_vec()).unwrap();
    let mut watched = m.watch_upper(id).unwrap();
    // The first write moves the upper past the seed (it may have happened already).
    let first = watched.wait_for(|u| *u != seeded).await.unwrap().clone();
    // At the first write's time the shard already holds exactly the desired state:
    // the stale rows were never retracted without the desired ones being written.
    let as_of = first.as_option().unwrap().step_back().unwrap();
    let mut r = b
        .client
        .open_leased_reader::<Timestamp>(s, mapping_desc())
        .await
        .unwrap();
    let mut at_first = BTreeMap::new();
    for (data, _, diff) in r.snapshot(&as_of).await.unwrap() {
        *at_first.entry(data.unwrap()).or_insert(0) += diff;
    }
    at_first.retain(|_, d: &mut i64| *d != 0);
    assert_eq!(at_first, map(&desired));
    m.sync(id).await.unwrap();
    assert_eq!(*watched.borrow(), upper(&b, s).await);

    // Append-only collections have no desired state.
    let (other, other_shard) = (GlobalId::System(2), shard(2));
    let write = writer(&b, other_shard, mapping_desc()).await;
    let kind = CollectionKind::AppendOnly {
        history: None,
        dedup_status: false,
    };
    let reg = strata_introspection::Registration::new(other, b.client.clone(), write, kind);
    assert!(matches!(
        m.register_with_desired(reg, Vec::new()),
        Err(StorageError::IdentifierInvalid(_))
    ));
    // The watch closes with the collection.
    m.unregister(id).await.unwrap();
    let closed = async { while watched.changed().await.is_ok() {} };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .unwrap();
}

async fn differential_converges_to_desired_state(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(1), shard(1));
    // A previous process left rows, one of them twice.
    let stale = [
        (text_row("u1", "old"), 1),
        (text_row("u2", "keep"), 1),
        (text_row("u3", "dup"), 2),
    ];
    seed(&b, s, mapping_desc(), &stale).await;

    let m = manager(false, fast_config());
    register(&m, &b, id, s, mapping_desc(), CollectionKind::Differential).await;
    let desired = [(text_row("u2", "keep"), 1), (text_row("u4", "new"), 1)];
    m.update_desired(id, StorageWriteOp::Set(desired.to_vec()))
        .unwrap();
    m.sync(id).await.unwrap();
    assert_eq!(contents(&b, s, mapping_desc()).await, map(&desired));

    // More changes, then a "restart": a second manager with another desired state
    // takes over the same shard and retracts what the first one wrote.
    m.differential_append(
        id,
        vec![(text_row("u5", "x"), 1), (text_row("u2", "keep"), -1)],
    )
    .unwrap();
    m.sync(id).await.unwrap();
    let expected = [(text_row("u4", "new"), 1), (text_row("u5", "x"), 1)];
    assert_eq!(contents(&b, s, mapping_desc()).await, map(&expected));
    m.unregister(id).await.unwrap();

    let m2 = manager(false, fast_config());
    register(&m2, &b, id, s, mapping_desc(), CollectionKind::Differential).await;
    let desired2 = [(text_row("u9", "after-restart"), 1)];
    m2.update_desired(id, StorageWriteOp::Set(desired2.to_vec()))
        .unwrap();
    m2.sync(id).await.unwrap();
    assert_eq!(contents(&b, s, mapping_desc()).await, map(&desired2));
    // Deleting by predicate retracts exactly the matching rows.
    m2.update_desired(
        id,
        StorageWriteOp::DeleteWhere(std::sync::Arc::new(|_: &Row| true)),
    )
    .unwrap();
    m2.sync(id).await.unwrap();
    assert!(contents(&b, s, mapping_desc()).await.is_empty());
}

/// Another writer that appends its own rows far ahead of the manager's clock, so the
/// manager must follow its upper; returns the rows it wrote.
fn competitor(
    b: &Backend,
    s: strata_controller_api::ShardId,
    tag: &'static str,
) -> tokio::task::JoinHandle<Vec<Row>> {
    let client = b.client.clone();
    tokio::spawn(async move {
        let mut w = client
            .open_writer::<Timestamp>(s, mapping_desc())
            .await
            .unwrap();
        let mut mine = Vec::new();
        for i in 0..40 {
            let row = text_row(tag, &i.to_string());
            // Far ahead of the manager's clock, so the manager must follow.
            let upper = *w.fetch_recent_upper().await.unwrap().as_option().unwrap();
            let t = Timestamp::new(upper.as_millis().max(1 << 42) + 1);
            let updates = vec![(Ok(row.clone()), t, 1)];
            if w.append(
                &updates,
                Antichain::from_elem(Timestamp::new(t.as_millis() + 1)),
            )
            .await
            .unwrap()
            .is_ok()
            {
                mine.push(row);
            }
            tokio::task::yield_now().await;
        }
        mine
    })
}

/// Another writer keeps moving the upper (with rows of its own) while the manager writes.
async fn concurrent_upper_moves_neither_lose_nor_duplicate(file: bool) {
    let b = backend(file).await;
    let (diff_id, diff_shard) = (GlobalId::System(2), shard(2));
    let (app_id, app_shard) = (GlobalId::System(3), shard(3));
    let m = manager(false, fast_config());
    register(
        &m,
        &b,
        diff_id,
        diff_shard,
        mapping_desc(),
        CollectionKind::Differential,
    )
    .await;
    let append_only = CollectionKind::AppendOnly {
        history: None,
        dedup_status: false,
    };
    register(&m, &b, app_id, app_shard, mapping_desc(), append_only).await;

    let (c1, c2) = (
        competitor(&b, diff_shard, "other-d"),
        competitor(&b, app_shard, "other-a"),
    );

    let mut appends = Vec::new();
    for i in 0..30 {
        m.differential_append(diff_id, vec![(text_row("mine-d", &i.to_string()), 1)])
            .unwrap();
        appends.push(m.append(app_id, vec![(text_row("mine-a", &i.to_string()), 1)]));
        if i % 5 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for a in appends {
        a.await.unwrap();
    }
    let (theirs_d, theirs_a) = (c1.await.unwrap(), c2.await.unwrap());
    m.sync(diff_id).await.unwrap();

    // The competitor's rows are not in the desired state, so the differential
    // collection retracts them: exactly the desired rows remain, each once.
    let desired: BTreeMap<Row, i64> = (0..30)
        .map(|i| (text_row("mine-d", &i.to_string()), 1))
        .collect();
    assert!(!theirs_d.is_empty());
    assert_eq!(contents(&b, diff_shard, mapping_desc()).await, desired);

    // Append-only: every row of both writers exactly once.
    let mut expected: BTreeMap<Row, i64> = (0..30)
        .map(|i| (text_row("mine-a", &i.to_string()), 1))
        .collect();
    expected.extend(theirs_a.into_iter().map(|r| (r, 1)));
    assert_eq!(contents(&b, app_shard, mapping_desc()).await, expected);
}

/// A read-only manager over a gate that refuses every write until `allow_writes`: a
/// write of its tasks at any time in between fails there and is recorded. The clock is
/// paused, so the ticks in between are driven explicitly (memory only: the gate sees a
/// local directory's part writes but not its consensus).
#[tokio::test(start_paused = true)]
async fn read_only_writes_nothing_until_allowed() {
    let (b, bare, gate) = gated_backend().await;
    let (diff_id, diff_shard) = (GlobalId::System(4), shard(4));
    let (app_id, app_shard) = (GlobalId::System(5), shard(5));
    let stale = [(text_row("stale", "row"), 1)];
    // An earlier process, outside the gate: its dropped writer expires its lease late.
    seed(&bare, diff_shard, mapping_desc(), &stale).await;
    seed(&bare, app_shard, mapping_desc(), &stale).await;
    let cfg = fast_config();
    let tick = cfg.tick_interval;
    let m = manager(true, cfg);
    // Opening a writer registers it (a write), so the handles are opened first.
    let diff_write = writer(&b, diff_shard, mapping_desc()).await;
    let app_write = writer(&b, app_shard, mapping_desc()).await;
    gate.deny_all();
    let registration = |id, write, kind| {
        strata_introspection::Registration::new(id, b.client.clone(), write, kind)
    };
    m.register(registration(
        diff_id,
        diff_write,
        CollectionKind::Differential,
    ))
    .unwrap();
    let append_only = CollectionKind::AppendOnly {
        history: None,
        dedup_status: false,
    };
    m.register(registration(app_id, app_write, append_only))
        .unwrap();

    let desired = [(text_row("u1", "s1"), 1)];
    m.update_desired(diff_id, StorageWriteOp::Set(desired.to_vec()))
        .unwrap();
    let row = text_row("appended", "x");
    assert!(matches!(
        m.append(app_id, vec![(row.clone(), 1)]).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(
        m.blind_write(app_id, vec![(row.clone(), 1)]),
        Err(StorageError::ReadOnly)
    ));
    let appender = m.monotonic_appender(app_id).unwrap();
    assert!(matches!(
        appender.append(vec![(row.clone(), 1)]).await,
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(m.sync(diff_id).await, Err(StorageError::ReadOnly)));

    // Five ticks and the batch timer: the paused clock moves only once every task is
    // idle, so each timer's work is done before the next fires.
    drive_clock(tick * 5).await;
    // A command after the ticks: each task has been around its loop since.
    assert!(matches!(m.sync(diff_id).await, Err(StorageError::ReadOnly)));
    assert!(matches!(m.sync(app_id).await, Err(StorageError::ReadOnly)));
    gate.assert_nothing_refused("by a read-only manager");
    assert_eq!(
        contents(&bare, diff_shard, mapping_desc()).await,
        map(&stale)
    );
    assert_eq!(
        contents(&bare, app_shard, mapping_desc()).await,
        map(&stale)
    );
    gate.allow();
    // Reading is allowed (outside the gate's window: a snapshot registers a leased
    // reader, which writes the shard's state).
    assert_eq!(m.snapshot_latest(diff_id).await.unwrap(), stale.to_vec());

    m.allow_writes();
    assert!(!m.is_read_only());
    m.sync(diff_id).await.unwrap();
    assert_eq!(
        contents(&b, diff_shard, mapping_desc()).await,
        map(&desired)
    );
    appender.append(vec![(row.clone(), 1)]).await.unwrap();
    let mut expected = map(&stale);
    expected.insert(row, 1);
    assert_eq!(contents(&b, app_shard, mapping_desc()).await, expected);
}

/// Moves tokio's paused clock forward by `by`, firing every timer on the way in order;
/// returns once the clock got there (an explicit clock, not a wait: no real time passes).
async fn drive_clock(by: Duration) {
    let until = tokio::time::Instant::now() + by;
    while tokio::time::Instant::now() < until {
        tokio::time::advance(Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
    }
}

async fn monotonic_appender_appends_through_the_manager(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::User(6), shard(6));
    let m = manager(false, fast_config());
    let append_only = CollectionKind::AppendOnly {
        history: None,
        dedup_status: false,
    };
    register(&m, &b, id, s, mapping_desc(), append_only).await;
    let appender = m.monotonic_appender(id).unwrap();
    assert_eq!(appender.id(), id);
    let (a, c) = (text_row("a", "1"), text_row("c", "3"));
    assert!(matches!(
        appender.append(vec![(a.clone(), -1)]).await,
        Err(StorageError::InvalidUsage(_))
    ));
    let bad = Row::pack(&[strata_controller_api::Datum::Int64(1)]);
    assert!(matches!(
        appender.append(vec![(bad, 1)]).await,
        Err(StorageError::InvalidRow { .. })
    ));
    appender.append(vec![(a.clone(), 1)]).await.unwrap();
    appender.clone().append(vec![(c.clone(), 2)]).await.unwrap();
    assert_eq!(
        contents(&b, s, mapping_desc()).await,
        map(&[(a, 1), (c, 2)])
    );
    // A differential collection hands out no appender.
    register(
        &m,
        &b,
        GlobalId::User(7),
        shard(7),
        mapping_desc(),
        CollectionKind::Differential,
    )
    .await;
    assert!(matches!(
        m.monotonic_appender(GlobalId::User(7)),
        Err(StorageError::IdentifierInvalid(_))
    ));
    assert!(matches!(
        m.monotonic_appender(GlobalId::User(8)),
        Err(StorageError::IdentifierMissing(_))
    ));
    m.unregister(id).await.unwrap();
    assert!(matches!(
        appender.append(vec![(text_row("z", "z"), 1)]).await,
        Err(StorageError::IdentifierMissing(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upper_ticks_forward_without_writes() {
    let b = backend(false).await;
    let (id, s) = (GlobalId::System(9), shard(9));
    let m = manager(false, fast_config());
    register(&m, &b, id, s, mapping_desc(), CollectionKind::Differential).await;
    let first = upper(&b, s).await;
    let moved = eventually(|| async { upper(&b, s).await.as_option() > first.as_option() }).await;
    assert!(moved, "the upper stayed at {first:?}");
}

/// A force-writable (migrated) collection is written even in read-only mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_writable_collections_write_in_read_only_mode() {
    let b = backend(false).await;
    let (id, s) = (GlobalId::System(10), shard(10));
    let m = manager(true, fast_config());
    let write = writer(&b, s, mapping_desc()).await;
    let mut reg = strata_introspection::Registration::new(
        id,
        b.client.clone(),
        write,
        CollectionKind::Differential,
    );
    reg.force_writable = true;
    m.register(reg).unwrap();
    let desired = [(text_row("migrated", "yes"), 1)];
    m.update_desired(id, StorageWriteOp::Set(desired.to_vec()))
        .unwrap();
    m.sync(id).await.unwrap();
    assert!(m.is_read_only());
    assert_eq!(contents(&b, s, mapping_desc()).await, map(&desired));
    assert!(matches!(
        m.register(strata_introspection::Registration::new(
            id,
            b.client.clone(),
            writer(&b, s, mapping_desc()).await,
            CollectionKind::Differential,
        )),
        Err(StorageError::CollectionIdReused(_))
    ));
}
