//! A drop is durable when its call returns, for a host that opened the controller with
//! `open_durable` and so has no catalog transaction of its own: a crash right after
//! the call loses nothing, the next controller finalizes the shard, and the id stays
//! gone (re-creating it gets a fresh, empty shard). A dropped table stays readable at
//! the times a live read hold covers.

#![cfg(test)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{
    CollectionDescription, Collections, Reads, StorageError, StorageMetadata, Tables, Timestamp,
};
use strata_controller_core::catalog::{CatalogOptions, DurableCatalog};
use strata_controller_core::{Controller, ControllerConfig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open(url: &str) -> Controller<Timestamp> {
    Controller::open_durable(ControllerConfig::default(), url)
        .await
        .unwrap()
}

/// Creates table `id` the way an `open_durable` host does: no metadata of its own.
async fn create_table(ctl: &mut Controller<Timestamp>, id: strata_controller_api::GlobalId) {
    ctl.create_collections(
        &StorageMetadata::default(),
        Some(t(0)),
        vec![(id, CollectionDescription::table(desc()))],
    )
    .await
    .unwrap();
}

#[test]
fn a_drop_survives_a_crash_right_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let a = id(1);
    let rows: Vec<_> = (0..50).map(|i| (row(i), 1)).collect();

    let first = runtime();
    let shard = first.block_on(async {
        let mut ctl = open(&url).await;
        create_table(&mut ctl, a).await;
        append(&mut ctl, 1, vec![(a, rows.clone())]).await;
        let shard = ctl.collection_metadata(a).unwrap().data_shard;
        ctl.drop_tables(vec![a], t(2)).await.unwrap();
        // The process dies here: no destructor runs and every task stops at once.
        std::mem::forget(ctl);
        shard
    });
    first.shutdown_background();

    runtime().block_on(async {
        let mut ctl = open(&url).await;
        let catalog = ctl.catalog_contents();
        assert!(
            !catalog.collection_metadata.contains_key(&a),
            "the catalog still maps the dropped id: {catalog:?}"
        );
        assert!(
            catalog.unfinalized_shards.contains(&shard),
            "the dropped shard is not listed for finalization: {catalog:?}"
        );

        // Re-creating the id gets a fresh shard, and none of the dropped rows.
        create_table(&mut ctl, a).await;
        let fresh = ctl.collection_metadata(a).unwrap().data_shard;
        assert_ne!(fresh, shard);
        let ts = ctl.table_write_ts().unwrap();
        append(&mut ctl, ts.as_millis(), vec![(a, vec![(row(-1), 1)])]).await;
        assert_eq!(
            as_map(ctl.snapshot(a, ts).await.unwrap()),
            as_map(vec![(row(-1), 1)])
        );

        // The storage task finalizes the listed shard at start-up, before anything
        // sent later: once `close` has finished the queued work, it is done.
        let client = ctl.persist_client().clone();
        ctl.close().await;
        let catalog = DurableCatalog::read_latest(&client, &CatalogOptions::default())
            .await
            .unwrap();
        assert!(
            client.is_finalized(shard).await.unwrap(),
            "{shard} not finalized"
        );
        assert!(
            !catalog.unfinalized_shards.contains(&shard),
            "the finalized shard stays listed as unfinalized: {catalog:?}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_stays_readable_under_a_hold() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let a = id(1);
        create_tables(&env, &mut ctl, &[a], t(0)).await;
        ctl.set_read_policy(vec![(a, keep_all())]).unwrap();
        append(&mut ctl, 1, vec![(a, vec![(row(1), 1)])]).await;
        append(&mut ctl, 2, vec![(a, vec![(row(2), 1)])]).await;
        let shard = ctl.collection_metadata(a).unwrap().data_shard;
        let hold = ctl.acquire_read_holds(vec![a]).unwrap();
        ctl.drop_tables(vec![a], t(3)).await.unwrap();

        // Unknown to lookups and writes...
        assert!(matches!(
            ctl.collection_metadata(a),
            Err(StorageError::IdentifierMissing(_))
        ));
        assert!(
            ctl.append_table(t(3), t(4), vec![(a, vec![(row(3), 1)])])
                .is_err()
        );
        // ...and to re-creation while the hold keeps the old shard alive...
        assert!(matches!(
            ctl.create_collections(
                &StorageMetadata::default(),
                Some(t(0)),
                vec![(a, CollectionDescription::table(desc()))],
            )
            .await,
            Err(StorageError::CollectionIdReused(_))
        ));
        // ...but readable at every time before the drop that the hold covers.
        assert_eq!(
            as_map(ctl.snapshot(a, t(1)).await.unwrap()),
            as_map(vec![(row(1), 1)]),
            "{}",
            env.url
        );
        assert_eq!(
            as_map(ctl.snapshot(a, t(2)).await.unwrap()),
            as_map(vec![(row(1), 1), (row(2), 1)]),
            "{}",
            env.url
        );

        drop(hold);
        ctl.apply_pending();
        assert!(matches!(
            ctl.snapshot(a, t(2)).await,
            Err(StorageError::IdentifierMissing(_))
        ));
        // Releasing the last hold queued the finalization; `close` waits for it.
        let client = ctl.persist_client().clone();
        ctl.close().await;
        assert!(client.is_finalized(shard).await.unwrap(), "{}", env.url);
    }
}
