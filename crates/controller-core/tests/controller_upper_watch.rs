//! Uppers that nothing reports to the controller: a collection written outside it
//! (`DataSource::Other`, say a materialized view of a compute layer), and, while
//! read-only, every collection the previous controller still writes. The controller
//! follows them in persist, so their frontiers move and their sinces follow the read
//! policy.

#![cfg(test)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, Lifecycle, ReadPolicy, Reads, Timestamp,
};
use strata_persist_backend::PersistClient;

fn frontier(ms: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(t(ms))
}

/// An outside writer moves an `Other` collection's shard to upper 5: the controller
/// learns it, and the since follows its policy, down to the shard's critical since.
#[tokio::test]
async fn an_other_collection_follows_its_shard_written_outside_the_controller() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let view = id(1);
        let shard = create_other(&env, &mut ctl, view).await;
        ctl.set_read_policy(vec![(view, ReadPolicy::lag_writes_by(t(1), t(1)))])
            .unwrap();

        // The compute layer: its own client of the same location.
        let mut writer = outside_writer(&env, shard).await;
        let rows = (0..5).map(|i| (row(i), 1)).collect();
        write_outside(&mut writer, rows, 0, Some(5)).await;
        let outside = PersistClient::open(&env.url).await.unwrap();

        let moved = eventually(&mut ctl, |ctl| {
            let f = ctl.collection_frontiers(view).unwrap();
            f.upper == frontier(5) && f.since == frontier(4)
        })
        .await;
        assert!(
            moved,
            "{:?} on {}",
            ctl.collection_frontiers(view).unwrap(),
            env.url
        );
        // The since reaches the shard, where it lets compaction go on: `close` returns
        // once every since change the controller accepted is done.
        ctl.close().await;
        let state = outside.inspect_shard(shard).await.unwrap();
        assert_eq!(
            state.since_code(),
            Some(4),
            "the shard's since stayed behind on {}",
            env.url
        );
    }
}

/// A read-only controller (an upgrade's new version) follows the tables the writable
/// one still writes: their upper is the txns shard's, and it keeps moving.
#[tokio::test]
async fn a_read_only_controller_follows_the_writable_one() {
    let env = mem_env();
    let table = id(1);
    let mut old = env.controller(false).await;
    create_tables(&env, &mut old, &[table], t(0)).await;
    append(&mut old, 1, vec![(table, vec![(row(1), 1)])]).await;

    let mut new = env.controller(true).await;
    new.create_collections(
        &env.metadata(),
        None,
        vec![(table, CollectionDescription::table(desc()))],
    )
    .await
    .unwrap();
    new.apply_pending();
    assert_eq!(new.collection_frontiers(table).unwrap().upper, frontier(2));

    // The old controller was not fenced by a read-only one: it goes on writing.
    append(&mut old, 10, vec![(table, vec![(row(2), 1)])]).await;
    let followed = eventually(&mut new, |ctl| {
        ctl.collection_frontiers(table).unwrap().upper == frontier(11)
    })
    .await;
    assert!(followed, "{:?}", new.collection_frontiers(table).unwrap());
    assert!(new.is_read_only());
    // What it follows it can read: the snapshot at 10 has both rows.
    let rows = new.snapshot(table, t(10)).await.unwrap();
    assert_eq!(as_map(rows), as_map(vec![(row(1), 1), (row(2), 1)]));
}
