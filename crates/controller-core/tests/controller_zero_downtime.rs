//! A zero-downtime upgrade through real controllers: the new version starts read-only
//! beside the old one, with a migrated table (a fresh shard only it knows) that it
//! fills while the old one goes on writing, and then takes over. Nothing the old one
//! acknowledged is lost, nothing is written twice, and the old one is fenced.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use std::collections::{BTreeMap, BTreeSet};

use controller_support::*;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, Lifecycle, Reads, StorageError, StorageTxn,
    Tables, Timestamp,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_hands_over_with_nothing_lost_or_written_twice() {
    for env in backends() {
        let (kept, migrated) = (id(1), id(2));
        let mut old = env.controller(false).await;
        create_tables(&env, &mut old, &[kept, migrated], t(0)).await;
        append(
            &mut old,
            1,
            vec![(kept, vec![(row(1), 1)]), (migrated, vec![(row(100), 1)])],
        )
        .await;

        // The new version's catalog migration gives the migrated table a fresh shard;
        // the old shard stays the old version's (and, after the upgrade, the host's to
        // retire).
        let old_shard = old.collection_metadata(migrated).unwrap().data_shard;
        let mut txn = env.catalog.begin::<Timestamp>();
        txn.delete_collection_metadata(BTreeSet::from([migrated]));
        let fresh = strata_controller_api::ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        txn.insert_collection_metadata(BTreeMap::from([(migrated, fresh)]))
            .unwrap();
        txn.commit().await.unwrap();

        let mut new = env.controller(true).await;
        let tables = vec![
            (kept, CollectionDescription::table(desc())),
            (migrated, CollectionDescription::table(desc())),
        ];
        new.create_collections_for_bootstrap(
            &env.metadata(),
            None,
            tables,
            &BTreeSet::from([migrated]),
        )
        .await
        .unwrap();
        assert_ne!(
            new.collection_metadata(migrated).unwrap().data_shard,
            old_shard
        );

        // Read-only, only the migrated table is writable; the new version fills it.
        let denied = new.append_table(t(2), t(3), vec![(kept, vec![(row(9), 1)])]);
        assert!(matches!(denied, Err(StorageError::ReadOnly)));
        new.append_table(t(2), t(3), vec![(migrated, vec![(row(200), 1)])])
            .unwrap()
            .await
            .unwrap();

        // The old version goes on; the new one follows it, the migrated table too.
        append(&mut old, 5, vec![(kept, vec![(row(2), 1)])]).await;
        let followed = eventually(&mut new, |ctl| {
            let upper = |id| ctl.collection_frontiers(id).unwrap().upper;
            upper(kept) == Antichain::from_elem(t(6)) && upper(migrated) == upper(kept)
        })
        .await;
        assert!(followed, "on {}", env.url);
        assert_eq!(
            as_map(new.snapshot(migrated, t(5)).await.unwrap()),
            as_map(vec![(row(200), 1)])
        );
        assert_eq!(
            as_map(new.snapshot(kept, t(5)).await.unwrap()),
            as_map(vec![(row(1), 1), (row(2), 1)])
        );

        // The cut-over. The old version is fenced: its next write lands nowhere.
        new.allow_writes(Some(t(6))).await.unwrap();
        let late = match old.append_table(t(6), t(7), vec![(kept, vec![(row(66), 1)])]) {
            Ok(pending) => pending.await,
            Err(error) => Err(error),
        };
        assert!(late.is_err(), "the old version wrote after the cut-over");
        append(
            &mut new,
            7,
            vec![(kept, vec![(row(3), 1)]), (migrated, vec![(row(201), 1)])],
        )
        .await;
        let kept_rows = as_map(vec![(row(1), 1), (row(2), 1), (row(3), 1)]);
        let migrated_rows = as_map(vec![(row(200), 1), (row(201), 1)]);
        assert_eq!(as_map(new.snapshot(kept, t(7)).await.unwrap()), kept_rows);
        assert_eq!(
            as_map(new.snapshot(migrated, t(7)).await.unwrap()),
            migrated_rows
        );
        drop(new);
        drop(old);

        // A restart sees the same, each row once.
        let mut after = env.controller(false).await;
        after
            .create_collections(
                &env.metadata(),
                Some(t(8)),
                vec![
                    (kept, CollectionDescription::table(desc())),
                    (migrated, CollectionDescription::table(desc())),
                ],
            )
            .await
            .unwrap();
        after.apply_pending();
        for (id, rows) in [(kept, &kept_rows), (migrated, &migrated_rows)] {
            let read = after.snapshot(id, t(7)).await.unwrap();
            assert!(read.iter().all(|(_, diff)| *diff == 1), "{read:?}");
            assert_eq!(as_map(read), *rows, "{id} on {}", env.url);
        }
    }
}

/// A migrated introspection collection is written while read-only (its shard is the
/// new version's alone); the others wait for `allow_writes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_introspection_collection_is_written_while_read_only() {
    use strata_controller_api::{DataSource, GlobalId, IntrospectionType, StorageTimestamp};
    let env = mem_env();
    let (mapping, frontiers) = (GlobalId::System(1), GlobalId::System(2));
    let mut ctl = env.controller(true).await;
    env.prepare(&ctl, &[mapping, frontiers], &[]).await;
    let introspection = |kind| {
        CollectionDescription::for_source(
            strata_introspection::schema::desc(kind),
            DataSource::Introspection(kind),
        )
    };
    ctl.create_collections_for_bootstrap(
        &env.metadata(),
        None,
        vec![
            (mapping, introspection(IntrospectionType::ShardMapping)),
            (frontiers, introspection(IntrospectionType::Frontiers)),
        ],
        &BTreeSet::from([mapping]),
    )
    .await
    .unwrap();
    ctl.sync_introspection().await.unwrap();
    let upper = ctl.collection_frontiers(mapping).unwrap().upper;
    let as_of = upper.as_option().copied().unwrap().step_back().unwrap();
    let rows = ctl.snapshot(mapping, as_of).await.unwrap();
    assert_eq!(rows.len(), 2, "both collections are mapped: {rows:?}");
    // The other one was not written at all.
    let shard = ctl.collection_metadata(frontiers).unwrap().data_shard;
    assert!(ctl.persist_client().inspect(shard).await.is_err());
    assert!(ctl.is_read_only());
}

/// The new version drops a table while read-only: the drop is recorded at once and
/// writes nothing while read-only (a write gate refuses and records any write), the old
/// version writes the table on, and at the cut-over the table leaves the txns shard and
/// its shard is finalized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_while_read_only_is_retired_at_the_cut_over() {
    let (env, location) = gated_env().await;
    let (kept, gone) = (id(1), id(2));
    let mut old = env.controller_on(&location.ungated_url, false).await;
    create_tables(&env, &mut old, &[kept, gone], t(0)).await;
    append(&mut old, 1, vec![(gone, vec![(row(1), 1)])]).await;

    location.gate.deny_all();
    let mut new = env.controller(true).await;
    let tables = vec![
        (kept, CollectionDescription::table(desc())),
        (gone, CollectionDescription::table(desc())),
    ];
    new.create_collections(&env.metadata(), None, tables)
        .await
        .unwrap();
    let shard = new.collection_metadata(gone).unwrap().data_shard;
    env.prepare(&new, &[], &[gone]).await;
    new.drop_tables(vec![gone], t(2)).await.unwrap();
    assert!(new.check_exists(gone).is_err());
    assert!(
        !new.catalog_contents()
            .collection_metadata
            .contains_key(&gone)
    );
    // The old version does not know yet, and writes on.
    append(&mut old, 3, vec![(gone, vec![(row(2), 1)])]).await;
    location
        .gate
        .assert_nothing_refused("by a read-only controller dropping a table");
    location.gate.allow();

    new.allow_writes(Some(t(5))).await.unwrap();
    let client = new.persist_client().clone();
    ingest_support::wait_finalized(&env, &client, shard).await;
    // It left the txns shard first; the kept table is still registered.
    let txns =
        strata_persist_backend::txns::TxnsHandle::<Timestamp>::open(client, new.txns_shard())
            .await
            .unwrap();
    let registered: Vec<_> = txns.registered().into_iter().map(|(s, _)| s).collect();
    assert!(!registered.contains(&shard), "{registered:?}");
    assert!(registered.contains(&new.collection_metadata(kept).unwrap().data_shard));
    append(&mut new, 6, vec![(kept, vec![(row(3), 1)])]).await;
    assert_eq!(
        as_map(new.snapshot(kept, t(6)).await.unwrap()),
        as_map(vec![(row(3), 1)])
    );
}
