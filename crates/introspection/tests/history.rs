//! Status-history de-duplication and truncation, at start-up and on the interval.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use strata_controller_api::{
    Datum, GlobalId, IntrospectionType, ReplicaId, Row, Status, StatusUpdate, StorageParameters,
};
use strata_introspection::schema::desc;
use strata_introspection::status::{status_from_row, status_row};
use strata_introspection::{CollectionKind, HistoryPolicy, ManagerConfig};

fn status(id: u64, replica: Option<u64>, at: u64, s: Status, error: Option<&str>) -> StatusUpdate {
    StatusUpdate {
        id: GlobalId::User(id),
        replica_id: replica.map(ReplicaId),
        status: s,
        timestamp_ms: at,
        error: error.map(str::to_owned),
        hints: Vec::new(),
    }
}

fn status_kind(keep: usize) -> CollectionKind {
    let params = StorageParameters {
        status_history_retain_per_id: Some(keep),
        ..Default::default()
    };
    CollectionKind::for_introspection(IntrospectionType::SourceStatusHistory, &params)
}

type Key = (GlobalId, Option<ReplicaId>);

fn per_key(rows: &BTreeMap<Row, i64>) -> BTreeMap<Key, Vec<(u64, Row)>> {
    let mut out: BTreeMap<Key, Vec<(u64, Row)>> = BTreeMap::new();
    for (row, diff) in rows {
        let u = status_from_row(row).unwrap();
        for _ in 0..*diff {
            out.entry((u.id, u.replica_id))
                .or_default()
                .push((u.timestamp_ms, row.clone()));
        }
    }
    out
}

/// The model: per key, the `keep` greatest `(occurred_at, row)`.
fn newest(rows: &BTreeMap<Row, i64>, keep: usize) -> BTreeMap<Key, Vec<(u64, Row)>> {
    per_key(rows)
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| b.cmp(a));
            v.truncate(keep);
            (k, v)
        })
        .collect()
}

fn sorted(mut m: BTreeMap<Key, Vec<(u64, Row)>>) -> BTreeMap<Key, Vec<(u64, Row)>> {
    m.values_mut().for_each(|v| v.sort_by(|a, b| b.cmp(a)));
    m
}

async fn truncation_at_start_up_keeps_exactly_the_newest_n(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(20), shard(20));
    let d = desc(IntrospectionType::SourceStatusHistory);
    let mut history = Vec::new();
    // (u1, r1): five rows, three of them at the same millisecond.
    for (at, st) in [
        (1, Status::Starting),
        (2, Status::Running),
        (3, Status::Paused),
        (3, Status::Stalled),
        (3, Status::Dropped),
    ] {
        history.push((status_row(&status(1, Some(1), at, st, None)), 1));
    }
    // (u1, no replica): three rows, all at one time; one of them twice.
    history.push((status_row(&status(1, None, 7, Status::Starting, None)), 2));
    history.push((
        status_row(&status(1, None, 7, Status::Stalled, Some("boom"))),
        1,
    ));
    // (u2, r1): fewer rows than kept.
    history.push((status_row(&status(2, Some(1), 4, Status::Running, None)), 1));
    seed(&b, s, d.clone(), &history).await;
    let before = contents(&b, s, d.clone()).await;

    let keep = 2;
    let m = manager(false, fast_config());
    register(&m, &b, id, s, d.clone(), status_kind(keep)).await;
    // Any answer from the task comes after its start-up truncation.
    m.sync(id).await.unwrap();
    let after = contents(&b, s, d.clone()).await;
    assert_eq!(sorted(per_key(&after)), newest(&before, keep));
    assert!(per_key(&after).values().all(|v| v.len() <= keep));
    assert_eq!(
        per_key(&after)[&(GlobalId::User(1), Some(ReplicaId(1)))].len(),
        2
    );
    assert_eq!(per_key(&after)[&(GlobalId::User(1), None)].len(), 2);

    // The deduper was seeded from the history: repeating the newest status of a key
    // writes nothing; a new one is written.
    let newest_u1r1 =
        status_from_row(&newest(&before, 1)[&(GlobalId::User(1), Some(ReplicaId(1)))][0].1)
            .unwrap();
    m.append_status(id, vec![newest_u1r1.clone()])
        .await
        .unwrap();
    assert_eq!(contents(&b, s, d.clone()).await, after);
    let fresh = status(2, Some(1), 9, Status::Stalled, Some("disk full"));
    m.append_status(id, vec![fresh.clone(), fresh.clone()])
        .await
        .unwrap();
    let mut expected = after.clone();
    expected.insert(status_row(&fresh), 1);
    assert_eq!(contents(&b, s, d).await, expected);
}

/// Truncation also runs on its interval: rows appended after start-up are truncated
/// without anyone asking.
async fn truncation_runs_on_the_interval(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(21), shard(21));
    let d = desc(IntrospectionType::SinkStatusHistory);
    let cfg = ManagerConfig {
        truncation_interval: Duration::from_millis(50),
        ..fast_config()
    };
    let m = manager(false, cfg);
    register(&m, &b, id, s, d.clone(), status_kind(1)).await;
    let updates = vec![
        status(5, Some(1), 10, Status::Starting, None),
        status(5, Some(1), 11, Status::Running, None),
        status(5, Some(1), 12, Status::Stalled, Some("e")),
        status(6, None, 12, Status::Running, None),
    ];
    m.append_status(id, updates).await.unwrap();
    let converged = eventually(|| async {
        let rows = contents(&b, s, d.clone()).await;
        rows.len() == 2 && rows.values().all(|d| *d == 1)
    })
    .await;
    assert!(
        converged,
        "interval truncation did not run: {:?}",
        contents(&b, s, d.clone()).await
    );
    let rows = contents(&b, s, d).await;
    let kept: Vec<Status> = rows
        .keys()
        .map(|r| status_from_row(r).unwrap().status)
        .collect();
    assert!(
        kept.contains(&Status::Stalled) && kept.contains(&Status::Running),
        "{kept:?}"
    );
}

/// Truncation retries when another writer moves the upper between its read and its
/// write, and still ends with exactly N per key.
async fn truncation_tolerates_a_moving_upper(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(22), shard(22));
    let d = desc(IntrospectionType::SourceStatusHistory);
    let history: Vec<(Row, i64)> = (0..20)
        .map(|i| {
            (
                status_row(&status(
                    9,
                    Some(1),
                    i,
                    Status::Running,
                    Some(&i.to_string()),
                )),
                1,
            )
        })
        .collect();
    seed(&b, s, d.clone(), &history).await;
    let append_only = CollectionKind::AppendOnly {
        history: Some(HistoryPolicy::status_history(3)),
        dedup_status: false,
    };
    let m = manager(false, fast_config());
    // A competitor keeps ticking the upper while the manager starts and truncates.
    let client = b.client.clone();
    let dd = d.clone();
    let competitor = tokio::spawn(async move {
        let mut w = client
            .open_writer::<strata_controller_api::Timestamp>(s, dd)
            .await
            .unwrap();
        for _ in 0..50 {
            let upper = *w.fetch_recent_upper().await.unwrap().as_option().unwrap();
            let next = strata_controller_api::Antichain::from_elem(
                strata_controller_api::Timestamp::new(upper.as_millis() + 1),
            );
            let _ = w.append(&[], next).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    register(&m, &b, id, s, d.clone(), append_only).await;
    m.truncate_now(id).await.unwrap();
    competitor.await.unwrap();
    m.truncate_now(id).await.unwrap();
    let rows = contents(&b, s, d).await;
    let expected: BTreeMap<Row, i64> = history[17..].iter().cloned().collect();
    assert_eq!(rows, expected);
}

async fn metrics_history_keeps_its_retention_window(file: bool) {
    let b = backend(file).await;
    let (id, s) = (GlobalId::System(23), shard(23));
    let d = desc(IntrospectionType::ReplicaMetricsHistory);
    let now = 10_000_000u64;
    let row = |at: u64| {
        Row::pack(&[
            Datum::TimestampMillis(at),
            Datum::String("r1".into()),
            Datum::UInt64(0),
            Datum::UInt64(5),
            Datum::Null,
            Datum::Null,
        ])
    };
    seed(
        &b,
        s,
        d.clone(),
        &[(row(now - 5_000), 1), (row(now - 500), 1)],
    )
    .await;
    let cfg = ManagerConfig {
        now: std::sync::Arc::new(move || now),
        ..fast_config()
    };
    let params = StorageParameters {
        metrics_history_retention: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let kind = CollectionKind::for_introspection(IntrospectionType::ReplicaMetricsHistory, &params);
    let m = manager(false, cfg);
    register(&m, &b, id, s, d.clone(), kind).await;
    m.sync(id).await.unwrap();
    assert_eq!(
        contents(&b, s, d.clone()).await,
        map(&[(row(now - 500), 1)])
    );
    m.append(id, vec![(row(now), 1)]).await.unwrap();
    assert_eq!(
        contents(&b, s, d).await,
        map(&[(row(now - 500), 1), (row(now), 1)])
    );
}

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
    truncation_at_start_up_keeps_exactly_the_newest_n,
    truncation_runs_on_the_interval,
    truncation_tolerates_a_moving_upper,
    metrics_history_keeps_its_retention_window,
);

/// In read-only mode history is read (the deduper is seeded) but not truncated; once
/// writes are allowed the truncation runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_defers_truncation_until_writes_are_allowed() {
    let b = backend(false).await;
    let (id, s) = (GlobalId::System(24), shard(24));
    let d = desc(IntrospectionType::SourceStatusHistory);
    let old = status(1, Some(1), 1, Status::Starting, None);
    let new = status(1, Some(1), 2, Status::Running, None);
    seed(
        &b,
        s,
        d.clone(),
        &[(status_row(&old), 1), (status_row(&new), 1)],
    )
    .await;
    let before = (upper(&b, s).await, contents(&b, s, d.clone()).await);

    let m = manager(true, fast_config());
    register(&m, &b, id, s, d.clone(), status_kind(1)).await;
    assert!(matches!(
        m.append_status(id, vec![new.clone()]).await,
        Err(strata_controller_api::StorageError::ReadOnly)
    ));
    assert!(matches!(m.truncate_now(id).await, Ok(())));
    assert_eq!(
        (upper(&b, s).await, contents(&b, s, d.clone()).await),
        before
    );

    m.allow_writes();
    m.sync(id).await.unwrap();
    assert_eq!(
        contents(&b, s, d.clone()).await,
        map(&[(status_row(&new), 1)])
    );
    // The seeded deduper suppresses a repeat of the last status.
    m.append_status(id, vec![new.clone()]).await.unwrap();
    assert_eq!(contents(&b, s, d).await, map(&[(status_row(&new), 1)]));
}
