//! Tables through a real controller on the memory and file backends: accumulated
//! contents at every time, atomic two-table commits, group commit, and typed errors
//! for every bad input with the state left unchanged.

mod controller_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use controller_support::*;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, Datum, Reads, Row, StorageError,
    Tables,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_at_every_time_are_the_accumulated_contents() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let (a, b) = (id(1), id(2));
        create_tables(&env, &mut ctl, &[a, b], t(0)).await;
        let mut model: Vec<BTreeMap<Row, i64>> = vec![BTreeMap::new()];
        let mut current = BTreeMap::new();
        for ts in 1..=8u64 {
            let mut writes = vec![(row(ts as i64), 1)];
            if ts % 3 == 0 {
                writes.push((row(ts as i64 - 1), -1));
            }
            for (r, d) in &writes {
                *current.entry(r.clone()).or_insert(0) += d;
            }
            current.retain(|_, d| *d != 0);
            append(
                &mut ctl,
                ts,
                vec![(a, writes), (b, vec![(row(100 + ts as i64), 1)])],
            )
            .await;
            model.push(current.clone());
        }
        ctl.apply_pending();
        let frontiers = ctl.collection_frontiers(a).unwrap();
        assert_eq!(frontiers.upper, Antichain::from_elem(t(9)), "{}", env.url);
        for (ts, expected) in model.iter().enumerate() {
            let got = as_map(ctl.snapshot(a, t(ts as u64)).await.unwrap());
            assert_eq!(&got, expected, "{} at {ts}", env.url);
            let b_rows = ctl.snapshot(b, t(ts as u64)).await.unwrap();
            assert_eq!(b_rows.len(), ts, "{}", env.url);
        }
        assert_eq!(as_map(ctl.snapshot_latest(a).await.unwrap()), model[8]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_sees_half_of_a_two_table_commit() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let (a, b) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[a, b], t(0)).await;
    let ctl = Arc::new(tokio::sync::Mutex::new(ctl));
    let writer = {
        let ctl = Arc::clone(&ctl);
        tokio::spawn(async move {
            for ts in 1..=40u64 {
                let write = {
                    let mut ctl = ctl.lock().await;
                    let r = row(ts as i64);
                    ctl.append_table(
                        t(ts),
                        t(ts + 1),
                        vec![(a, vec![(r.clone(), 1)]), (b, vec![(r, 1)])],
                    )
                    .unwrap()
                };
                write.await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads < 5 {
        let (fa, fb) = {
            let mut ctl = ctl.lock().await;
            ctl.apply_pending();
            let upper = ctl.collection_frontiers(a).unwrap().upper;
            let as_of = upper.as_option().unwrap().step_back_or_zero();
            (ctl.snapshot(a, as_of), ctl.snapshot(b, as_of))
        };
        let (ra, rb) = (fa.await.unwrap(), fb.await.unwrap());
        assert_eq!(as_map(ra), as_map(rb));
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads >= 5);
}

trait StepBack {
    fn step_back_or_zero(&self) -> strata_controller_api::Timestamp;
}

impl StepBack for strata_controller_api::Timestamp {
    fn step_back_or_zero(&self) -> strata_controller_api::Timestamp {
        use strata_controller_api::StorageTimestamp;
        self.step_back().unwrap_or(*self)
    }
}

/// Concurrent callers at one timestamp share one commit: one CAS of the txns shard.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_appends_at_one_time_commit_together() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let ids: Vec<_> = (1..=4).map(id).collect();
    create_tables(&env, &mut ctl, &ids, t(0)).await;
    let txns = ctl.txns_shard();
    let before = ctl.persist_client().inspect(txns).await.unwrap()["seqno"]
        .as_u64()
        .unwrap();
    let mut futures = Vec::new();
    for caller in 0..32i64 {
        let table = ids[(caller % 4) as usize];
        futures.push(
            ctl.append_table(t(1), t(2), vec![(table, vec![(row(caller), 1)])])
                .unwrap(),
        );
    }
    for result in futures::future::join_all(futures).await {
        result.unwrap();
    }
    let after = ctl.persist_client().inspect(txns).await.unwrap()["seqno"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        1,
        "32 callers at one time should cost one CAS"
    );
    let mut total = 0;
    for table in &ids {
        total += ctl.snapshot(*table, t(1)).await.unwrap().len();
    }
    assert_eq!(total, 32);
}

/// `table_write_ts` gives every caller that asks before the next commit starts the same
/// time, after the last commit started, so they all share the next commit.
#[tokio::test(flavor = "current_thread")]
async fn table_write_ts_joins_the_next_group_commit() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let ids: Vec<_> = (1..=4).map(id).collect();
    create_tables(&env, &mut ctl, &ids, t(0)).await;
    let upper = ctl.collection_frontiers(ids[0]).unwrap().upper;
    let start = ctl.table_write_ts().unwrap();
    assert_eq!(
        Some(&start),
        upper.as_option(),
        "nothing committed yet: the upper"
    );
    let (s1, s2) = (start.as_millis() + 1, start.as_millis() + 2);
    ctl.append_table(start, t(s1), vec![(ids[0], vec![(row(0), 1)])])
        .unwrap()
        .await
        .unwrap();
    let txns = ctl.txns_shard();
    let before = ctl.persist_client().inspect(txns).await.unwrap()["seqno"]
        .as_u64()
        .unwrap();
    let mut next = Vec::new();
    for caller in 1..=31i64 {
        let ts = ctl.table_write_ts().unwrap();
        assert_eq!(
            ts,
            t(s1),
            "every caller before the next commit gets one time"
        );
        let table = ids[(caller % 4) as usize];
        next.push(
            ctl.append_table(ts, t(s2), vec![(table, vec![(row(caller), 1)])])
                .unwrap(),
        );
    }
    for result in futures::future::join_all(next).await {
        result.unwrap();
    }
    let after = ctl.persist_client().inspect(txns).await.unwrap()["seqno"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 1, "the 31 callers share one commit");
    assert_eq!(ctl.table_write_ts(), Some(t(s2)));
    let mut total = 0;
    for table in &ids {
        total += ctl.snapshot(*table, t(s1)).await.unwrap().len();
    }
    assert_eq!(total, 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_typed_errors_and_change_nothing() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let (a, b, hook) = (id(1), id(2), id(3));
        create_tables(&env, &mut ctl, &[a, b], t(0)).await;
        env.prepare(&ctl, &[hook], &[]).await;
        let webhook = CollectionDescription::for_source(desc(), DataSource::Webhook);
        ctl.create_collections(&env.metadata(), None, vec![(hook, webhook)])
            .await
            .unwrap();
        append(&mut ctl, 1, vec![(a, vec![(row(1), 1)])]).await;
        ctl.apply_pending();
        let state = |ctl: &Controller| ctl.collections_frontiers(vec![a, b]).unwrap();
        let frontiers = state(&ctl);
        let contents = as_map(ctl.snapshot(a, t(1)).await.unwrap());

        let good = || vec![(a, vec![(row(7), 1)])];
        let bad_row = Row::pack(&[Datum::String("x".into())]);
        let cases: Vec<(&str, Result<_, StorageError<_>>)> = vec![
            (
                "unknown id",
                ctl.append_table(t(2), t(3), vec![(id(99), vec![(row(1), 1)])])
                    .map(|_| ()),
            ),
            (
                "write_ts == advance_to",
                ctl.append_table(t(2), t(2), good()).map(|_| ()),
            ),
            (
                "write_ts > advance_to",
                ctl.append_table(t(3), t(2), good()).map(|_| ()),
            ),
            (
                "wrong row",
                ctl.append_table(t(2), t(3), vec![(a, vec![(bad_row.clone(), 1)])])
                    .map(|_| ()),
            ),
            (
                "one bad table of two",
                ctl.append_table(
                    t(2),
                    t(3),
                    vec![(b, vec![(row(5), 1)]), (a, vec![(bad_row, 1)])],
                )
                .map(|_| ()),
            ),
            (
                "not a table",
                ctl.append_table(t(2), t(3), vec![(hook, vec![(row(1), 1)])])
                    .map(|_| ()),
            ),
            (
                "before the upper",
                ctl.append_table(t(0), t(1), good()).map(|_| ()),
            ),
        ];
        let expect = |name: &str, error: &StorageError<_>| match name {
            "unknown id" => matches!(error, StorageError::IdentifierMissing(i) if *i == id(99)),
            "write_ts == advance_to" | "write_ts > advance_to" => {
                matches!(error, StorageError::InvalidAdvance { .. })
            }
            "wrong row" | "one bad table of two" => {
                matches!(error, StorageError::InvalidRow { id: i, .. } if *i == a)
            }
            "not a table" => matches!(error, StorageError::IdentifierInvalid(i) if *i == hook),
            "before the upper" => matches!(error, StorageError::UpdateBeforeUpper { .. }),
            _ => false,
        };
        for (name, result) in cases {
            let error = result.err().unwrap_or_else(|| panic!("{name} should fail"));
            assert!(expect(name, &error), "{name}: {error:?}");
        }
        // Creating: a reused id with another description, and a duplicate in one call.
        let other = CollectionDescription::for_source(desc(), DataSource::Other);
        let reused = ctl
            .create_collections(&env.metadata(), Some(t(5)), vec![(a, other)])
            .await;
        assert!(matches!(reused, Err(StorageError::CollectionIdReused(i)) if i == a));
        let twice = vec![
            (id(4), CollectionDescription::table(desc())),
            (id(4), CollectionDescription::table(desc())),
        ];
        let duplicate = ctl
            .create_collections(&env.metadata(), Some(t(5)), twice)
            .await;
        assert!(matches!(duplicate, Err(StorageError::DuplicateId(i)) if i == id(4)));
        assert!(ctl.check_exists(id(4)).is_err());
        // The same description again is a no-op.
        ctl.create_collections(
            &env.metadata(),
            Some(t(5)),
            vec![(a, CollectionDescription::table(desc()))],
        )
        .await
        .unwrap();
        // Reads of unknown ids and drops of unknown ids.
        assert!(matches!(
            ctl.snapshot(id(99), t(1)).await,
            Err(StorageError::IdentifierMissing(_))
        ));
        assert!(matches!(
            ctl.drop_tables(vec![hook], t(5)).await,
            Err(StorageError::IdentifierInvalid(_))
        ));

        ctl.apply_pending();
        assert_eq!(state(&ctl), frontiers, "{}", env.url);
        assert_eq!(as_map(ctl.snapshot(a, t(1)).await.unwrap()), contents);
        assert!(ctl.snapshot(b, t(1)).await.unwrap().is_empty());
        // And the table still takes good writes.
        append(&mut ctl, 2, good()).await;
        assert_eq!(ctl.snapshot(a, t(2)).await.unwrap().len(), 2);
    }
}

type Controller = strata_controller_core::Controller<strata_controller_api::Timestamp>;

/// Committed table writes reach the data shard without any read: the background
/// applier links them (before it, nothing applied a commit until a snapshot did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_reach_the_data_shard_without_a_read() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let a = id(1);
        create_tables(&env, &mut ctl, &[a], t(0)).await;
        let shard = ctl.collection_metadata(a).unwrap().data_shard;
        for ts in 1..=5u64 {
            append(&mut ctl, ts, vec![(a, vec![(row(ts as i64), 1)])]).await;
        }
        let client = ctl.persist_client().clone();
        let mut watcher = client
            .open_writer::<strata_controller_api::Timestamp>(shard, desc())
            .await
            .unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(20),
            watcher.wait_for_upper_past(&Antichain::from_elem(t(5))),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: the applier did not apply the commits", env.url))
        .unwrap();
        let mut reader = client
            .open_leased_reader::<strata_controller_api::Timestamp>(shard, desc())
            .await
            .unwrap();
        let rows = reader.snapshot(&t(5)).await.unwrap();
        assert_eq!(
            rows.len(),
            5,
            "{}: every committed row is in the data shard",
            env.url
        );
    }
}

/// `close` finishes what the controller accepted: a write sent but not yet awaited is
/// committed before `close` returns, and the next controller reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_finishes_accepted_writes() {
    let env = file_env();
    let mut ctl = env.controller(false).await;
    let a = id(1);
    create_tables(&env, &mut ctl, &[a], t(0)).await;
    let ts = ctl.table_write_ts().unwrap();
    let next_ts = t(ts.as_millis() + 1);
    let write = ctl
        .append_table(ts, next_ts, vec![(a, vec![(row(7), 1)])])
        .unwrap();
    ctl.close().await;
    write.await.unwrap();

    let mut next = env.controller(false).await;
    create_tables(&env, &mut next, &[a], t(0)).await;
    assert_eq!(
        as_map(next.snapshot(a, ts).await.unwrap()),
        as_map(vec![(row(7), 1)])
    );
}

/// Upper changes are reported by `process` whichever call applied them, and once per
/// table per report: table writes, and calls that apply pending changes on the way
/// (here `apply_pending`), must not swallow the tables' new upper.
#[tokio::test]
async fn table_uppers_applied_outside_process_are_still_reported_once() {
    let env = mem_env();
    // Every table moves on every commit here (`controller_table_sweep` tests the
    // default, where unwritten tables move in a periodic sweep).
    let mut ctl = env
        .controller_with(strata_controller_core::ControllerConfig {
            table_upper_sweep_interval: std::time::Duration::ZERO,
            ..strata_controller_core::ControllerConfig::default()
        })
        .await;
    let (a, b) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[a, b], t(0)).await;
    // Each write applies the previous one's upper on its way in; the last is applied
    // by `apply_pending`. No `process` call in between.
    for ts in 1..=3 {
        append(&mut ctl, ts, vec![(a, vec![(row(ts as i64), 1)])]).await;
    }
    ctl.apply_pending();
    assert_eq!(
        ctl.collection_frontiers(b).unwrap().upper,
        strata_controller_api::Antichain::from_elem(t(4))
    );
    let mut reported: Vec<(
        strata_controller_api::GlobalId,
        strata_controller_api::Antichain<strata_controller_api::Timestamp>,
    )> = Vec::new();
    let mut reports = 0;
    while let Some(response) = strata_controller_api::Lifecycle::process(&mut ctl).unwrap() {
        if let strata_controller_api::StorageResponse::FrontierUpdates(updates) = response {
            reports += 1;
            reported.extend(updates);
        }
    }
    let of = |id| {
        reported
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, upper)| upper.clone())
            .collect::<Vec<_>>()
    };
    let latest = strata_controller_api::Antichain::from_elem(t(4));
    assert_eq!(reports, 1, "{reported:?}");
    assert_eq!(of(a), vec![latest.clone()], "{reported:?}");
    assert_eq!(of(b), vec![latest], "{reported:?}");
}
