//! Read-only mode, restart and fencing through a real controller: a read-only
//! controller writes nothing to any shard (a write gate refuses and records any), a restarted controller recovers every
//! acknowledged write and its frontiers, and an older controller is fenced.

#![cfg(test)]

mod controller_support;

use std::collections::BTreeSet;

use controller_support::*;
use strata_controller_api::{
    Antichain, Collections, Lifecycle, Reads, Row, StorageError, Tables, Timestamp,
};

/// The read-only controller runs over a gate that refuses every write from the moment
/// it starts until `allow_writes`: a write at any time in between fails there and is
/// recorded, however late it comes. The clock is paused and driven ten seconds forward
/// (every timer of the controller on the way fires) before the gate opens.
#[tokio::test(start_paused = true)]
async fn read_only_writes_nothing_until_allow_writes() {
    let (env, location) = gated_env().await;
    let (a, b) = (id(1), id(2));
    {
        // An earlier controller, outside the gate: whatever it leaves behind (a dropped
        // handle expiring its lease) may land at any time without being forbidden.
        let mut first = env.controller_on(&location.ungated_url, false).await;
        create_tables(&env, &mut first, &[a], t(0)).await;
        append(&mut first, 1, vec![(a, vec![(row(1), 1)])]).await;
    }
    location.gate.deny_all();
    let mut ctl = env.controller(true).await;
    assert!(ctl.is_read_only());
    env.prepare(&ctl, &[a, b], &[]).await;
    let tables = vec![
        (
            a,
            strata_controller_api::CollectionDescription::table(desc()),
        ),
        (
            b,
            strata_controller_api::CollectionDescription::table(desc()),
        ),
    ];
    ctl.create_collections(&env.metadata(), None, tables)
        .await
        .unwrap();
    ctl.apply_pending();
    // The read-only controller sees the table's frontiers from the shard.
    assert_eq!(
        ctl.collection_frontiers(a).unwrap().upper,
        Antichain::from_elem(t(2))
    );
    let denied = ctl.append_table(t(2), t(3), vec![(a, vec![(row(2), 1)])]);
    assert!(
        matches!(denied, Err(StorageError::ReadOnly)),
        "{:?}",
        denied.err()
    );
    ctl.set_read_policy(vec![(a, strata_controller_api::ReadPolicy::step_back())])
        .unwrap();
    ctl.initialization_complete();
    ctl.process().unwrap();
    drive_clock(std::time::Duration::from_secs(10)).await;
    ctl.process().unwrap();
    location
        .gate
        .assert_nothing_refused("by a read-only controller");
    location.gate.allow();

    ctl.allow_writes(Some(t(2))).await.unwrap();
    assert!(!ctl.is_read_only());
    // Registering `b` at 2 is a commit at 2, so writes continue at 3.
    append(
        &mut ctl,
        3,
        vec![(a, vec![(row(2), 1)]), (b, vec![(row(2), 1)])],
    )
    .await;
    assert_eq!(ctl.snapshot(a, t(3)).await.unwrap().len(), 2);
    assert_eq!(ctl.snapshot(b, t(3)).await.unwrap().len(), 1);
}

/// Runs writes on a controller: `acked` of them awaited, then one fired and not
/// awaited. Returns the acknowledged rows and the fired one.
async fn workload(
    ctl: &mut strata_controller_core::Controller<Timestamp>,
    table: strata_controller_api::GlobalId,
    next: &mut i64,
    acked: usize,
) -> (Vec<Row>, Row) {
    let mut done = Vec::new();
    for _ in 0..acked {
        let r = row(*next);
        *next += 1;
        // The previous controller's last write may land late and move the upper; a
        // host retries at the new upper.
        loop {
            ctl.apply_pending();
            let upper = *ctl
                .collection_frontiers(table)
                .unwrap()
                .upper
                .as_option()
                .unwrap();
            let write = vec![(table, vec![(r.clone(), 1)])];
            match ctl
                .append_table(upper, Timestamp::new(upper.as_millis() + 1), write)
                .unwrap()
                .await
            {
                Ok(()) => break,
                Err(StorageError::UpdateBeforeUpper { .. }) => continue,
                Err(error) => panic!("{error:?}"),
            }
        }
        done.push(r);
    }
    ctl.apply_pending();
    let upper = *ctl
        .collection_frontiers(table)
        .unwrap()
        .upper
        .as_option()
        .unwrap();
    let fired = row(*next);
    *next += 1;
    drop(ctl.append_table(
        upper,
        Timestamp::new(upper.as_millis() + 1),
        vec![(table, vec![(fired.clone(), 1)])],
    ));
    (done, fired)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_every_acknowledged_write() {
    for env in backends() {
        let table = id(1);
        let mut acked: BTreeSet<Row> = BTreeSet::new();
        let mut maybe: BTreeSet<Row> = BTreeSet::new();
        let mut next = 0;
        let mut last_upper = t(0);
        for round in 0..10 {
            let mut ctl = env.controller(false).await;
            assert_eq!(ctl.epoch(), round + 2);
            create_tables(&env, &mut ctl, &[table], last_upper).await;
            ctl.apply_pending();
            let upper = *ctl
                .collection_frontiers(table)
                .unwrap()
                .upper
                .as_option()
                .unwrap();
            assert!(
                upper >= last_upper,
                "frontiers resume: {upper} < {last_upper}"
            );
            let rows: BTreeSet<Row> = ctl
                .snapshot_latest(table)
                .await
                .unwrap()
                .into_iter()
                .map(|(r, d)| {
                    assert_eq!(d, 1);
                    r
                })
                .collect();
            assert!(
                rows.is_superset(&acked),
                "round {round} on {}: lost acknowledged writes",
                env.url
            );
            assert!(
                rows.difference(&acked).all(|r| maybe.contains(r)),
                "round {round}: phantom rows"
            );
            acked.extend(rows);
            let (done, fired) = workload(&mut ctl, table, &mut next, 3).await;
            acked.extend(done);
            maybe.insert(fired);
            ctl.apply_pending();
            last_upper = *ctl
                .collection_frontiers(table)
                .unwrap()
                .upper
                .as_option()
                .unwrap();
        }
        assert!(acked.len() >= 30);
    }
}

/// The old controller writes at its own upper after the new one has written past it:
/// it hears `Fenced`, not `UpdateBeforeUpper` (which would read as retryable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_controller_behind_the_upper_hears_fenced_first() {
    for env in backends() {
        let table = id(1);
        let mut old = env.controller(false).await;
        create_tables(&env, &mut old, &[table], t(0)).await;
        append(&mut old, 1, vec![(table, vec![(row(1), 1)])]).await;

        let mut new = env.controller(false).await;
        create_tables(&env, &mut new, &[table], t(0)).await;
        append(&mut new, 2, vec![(table, vec![(row(2), 1)])]).await;

        old.apply_pending();
        let stale = *old
            .collection_frontiers(table)
            .unwrap()
            .upper
            .as_option()
            .unwrap();
        assert_eq!(stale, t(2), "the old controller has not seen the new write");
        let write = old
            .append_table(stale, t(3), vec![(table, vec![(row(3), 1)])])
            .unwrap()
            .await;
        assert!(
            matches!(write, Err(StorageError::Fenced { ours, current }) if ours == old.epoch() && current == new.epoch()),
            "{}: {write:?}",
            env.url
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_controller_is_fenced_on_its_next_write() {
    for env in backends() {
        let table = id(1);
        let mut old = env.controller(false).await;
        create_tables(&env, &mut old, &[table], t(0)).await;
        append(&mut old, 1, vec![(table, vec![(row(1), 1)])]).await;

        let mut new = env.controller(false).await;
        assert!(new.epoch() > old.epoch());
        create_tables(&env, &mut new, &[table], t(0)).await;

        let write = old
            .append_table(t(2), t(3), vec![(table, vec![(row(2), 1)])])
            .unwrap()
            .await;
        assert!(
            matches!(write, Err(StorageError::Fenced { ours, current }) if ours == old.epoch() && current == new.epoch()),
            "{write:?}"
        );
        // Once fenced, every write fails at once.
        let again = old.append_table(t(2), t(3), vec![(table, vec![(row(2), 1)])]);
        assert!(matches!(again, Err(StorageError::Fenced { .. })));
        // The new controller writes on.
        append(&mut new, 2, vec![(table, vec![(row(3), 1)])]).await;
        assert_eq!(new.snapshot(table, t(2)).await.unwrap().len(), 2);
        // An older epoch cannot even start: a host whose catalog is still at epoch 1.
        use strata_controller_api::StorageTxn as _;
        let stale_catalog = strata_controller_api::MemoryCatalog::new();
        let mut txn = stale_catalog.begin::<Timestamp>();
        txn.write_txn_wal_shard(old.txns_shard()).unwrap();
        txn.commit().await.unwrap();
        let begin_stale: strata_controller_core::CatalogFn<Timestamp> =
            std::sync::Arc::new(move || Box::new(stale_catalog.begin::<Timestamp>()));
        let stale = strata_controller_core::Controller::<Timestamp>::new(
            Default::default(),
            begin_stale,
            &env.url,
        )
        .await;
        assert!(matches!(stale, Err(StorageError::Fenced { .. })));
    }
}

/// The default set-up: the durable catalog in the same location. Restarts recover the
/// collections from it, and every acknowledged write survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_over_the_durable_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let table = id(1);
    let mut epochs = Vec::new();
    let mut shard = None;
    for (rows, round) in (0..3u64).enumerate() {
        let mut ctl =
            strata_controller_core::Controller::<Timestamp>::open_durable(Default::default(), &url)
                .await
                .unwrap();
        epochs.push(ctl.epoch());
        let collections = vec![(
            table,
            strata_controller_api::CollectionDescription::table(desc()),
        )];
        let meta = strata_controller_api::StorageMetadata::default();
        ctl.create_collections(&meta, Some(t(0)), collections)
            .await
            .unwrap();
        ctl.apply_pending();
        assert_eq!(
            ctl.snapshot_latest(table).await.unwrap().len(),
            rows,
            "round {round}"
        );
        let upper = *ctl
            .collection_frontiers(table)
            .unwrap()
            .upper
            .as_option()
            .unwrap();
        ctl.append_table(
            upper,
            upper.step_forward_ms(),
            vec![(table, vec![(row(round as i64), 1)])],
        )
        .unwrap()
        .await
        .unwrap();
        // The shard does not change across restarts: the catalog keeps it.
        let data_shard = ctl.collection_metadata(table).unwrap().data_shard;
        assert_eq!(*shard.get_or_insert(data_shard), data_shard);
    }
    assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
}

trait StepForward {
    fn step_forward_ms(&self) -> Timestamp;
}

impl StepForward for Timestamp {
    fn step_forward_ms(&self) -> Timestamp {
        Timestamp::new(self.as_millis() + 1)
    }
}
