//! Dropping tables through a real controller: the shards are finalized and GC leaves
//! no parts; a read hold delays finalization; a drop recorded in the catalog is
//! finished by the next controller.

#![cfg(test)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{Collections, Reads, ShardId, StorageTxn, Tables, Timestamp};
use strata_persist_backend::PersistClient;
use strata_testkit::faults::OpClass;

/// Enough rows that a commit is written as a part, not inlined in the state.
fn many_rows(base: i64) -> Vec<(strata_controller_api::Row, i64)> {
    (0..300).map(|i| (row(base + i), 1)).collect()
}

async fn finalized(client: &PersistClient, shard: ShardId) -> bool {
    let state = client.inspect(shard).await.unwrap();
    state["tombstone"].as_bool().unwrap_or(false)
        && client.list_part_keys(shard).await.unwrap().is_empty()
        && client.referenced_part_keys(shard).await.unwrap().is_empty()
}

async fn wait_finalized(env: &Env, client: &PersistClient, shard: ShardId) {
    for _ in 0..1000 {
        let unfinalized = env.catalog.begin::<Timestamp>().get_unfinalized_shards();
        if !unfinalized.contains(&shard) && finalized(client, shard).await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{shard} was not finalized on {}", env.url);
}

/// Appends `r` to `table` at its current upper, retrying if the upper moved meanwhile.
async fn append_at_upper(
    ctl: &mut strata_controller_core::Controller<Timestamp>,
    table: strata_controller_api::GlobalId,
    r: strata_controller_api::Row,
) {
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
            Ok(()) => return,
            Err(strata_controller_api::StorageError::UpdateBeforeUpper { .. }) => continue,
            Err(error) => panic!("{error:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tables_are_finalized_and_leave_no_parts() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let (a, b) = (id(1), id(2));
        create_tables(&env, &mut ctl, &[a, b], t(0)).await;
        for ts in 1..=3u64 {
            append(
                &mut ctl,
                ts,
                vec![
                    (a, many_rows(ts as i64 * 1000)),
                    (b, many_rows(ts as i64 * 1000)),
                ],
            )
            .await;
        }
        // Reading applies the commits, so the data shard holds batches.
        assert_eq!(ctl.snapshot(a, t(3)).await.unwrap().len(), 900);
        let shard_a = ctl.collection_metadata(a).unwrap().data_shard;
        let client = ctl.persist_client().clone();
        assert!(
            !client
                .referenced_part_keys(shard_a)
                .await
                .unwrap()
                .is_empty(),
            "expected parts on {}",
            env.url
        );

        env.prepare(&ctl, &[], &[a]).await;
        assert!(
            env.catalog
                .begin::<Timestamp>()
                .get_unfinalized_shards()
                .contains(&shard_a)
        );
        ctl.drop_tables(vec![a], t(4)).await.unwrap();
        assert!(ctl.check_exists(a).is_err());
        assert!(
            ctl.append_table(t(5), t(6), vec![(a, vec![(row(1), 1)])])
                .is_err()
        );
        wait_finalized(&env, &client, shard_a).await;
        // The other table is untouched and still writable.
        append(&mut ctl, 5, vec![(b, vec![(row(-1), 1)])]).await;
        assert_eq!(ctl.snapshot(b, t(5)).await.unwrap().len(), 901);
    }
}

/// While the hold remains, a gate refuses any delete of the dropped shard's objects
/// (finalization deletes its parts). A later table write completing is the sign that
/// the storage task, which runs commands in order, has handled the drop; the paused
/// clock is then driven past several finalization retries.
#[tokio::test(start_paused = true)]
async fn a_read_hold_delays_finalization() {
    let (env, location) = gated_env().await;
    let mut ctl = env.controller(false).await;
    let (a, b) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[a, b], t(0)).await;
    append(&mut ctl, 1, vec![(a, many_rows(0))]).await;
    // Reading applies the commit, so the data shard holds its part.
    assert_eq!(ctl.snapshot(a, t(1)).await.unwrap().len(), 300);
    let shard = ctl.collection_metadata(a).unwrap().data_shard;
    let client = ctl.persist_client().clone();
    // Its own objects, and the txns batches linked into it.
    let (own, linked) = (format!("shards/{shard}/"), format!("/parts/{shard}/"));
    location.gate.deny_where(move |class, key| {
        let key = key.as_ref();
        class == OpClass::Delete && (key.starts_with(&own) || key.contains(&linked))
    });
    let hold = ctl.acquire_read_holds(vec![a]).unwrap();
    env.prepare(&ctl, &[], &[a]).await;
    ctl.drop_tables(vec![a], t(2)).await.unwrap();
    ctl.apply_pending();
    // The storage task handles commands in order: once this write is acknowledged, a
    // finalization the drop asked for has run (and been refused by the gate).
    append_at_upper(&mut ctl, b, row(1)).await;
    drive_clock(std::time::Duration::from_secs(5)).await;
    location
        .gate
        .assert_nothing_refused("to the dropped shard while a read hold remains");
    assert!(
        !finalized(&client, shard).await,
        "finalized while a read hold remains"
    );
    assert!(
        env.catalog
            .begin::<Timestamp>()
            .get_unfinalized_shards()
            .contains(&shard)
    );
    location.gate.allow();
    drop(hold);
    ctl.apply_pending();
    wait_finalized(&env, &client, shard).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_controller_finishes_a_recorded_drop() {
    for env in backends() {
        let a = id(1);
        let shard = {
            let mut ctl = env.controller(false).await;
            create_tables(&env, &mut ctl, &[a], t(0)).await;
            append(&mut ctl, 1, vec![(a, many_rows(0))]).await;
            let shard = ctl.collection_metadata(a).unwrap().data_shard;
            // The host records the drop, then the controller goes away before dropping.
            env.prepare(&ctl, &[], &[a]).await;
            shard
        };
        let ctl = env.controller(false).await;
        wait_finalized(&env, ctl.persist_client(), shard).await;
    }
}
