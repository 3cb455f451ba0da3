//! The operations a coordinator calls less often, each through the real controller:
//! `update_parameters`, `alter_export`, `alter_export_connections`, `export`,
//! `drop_sinks_unvalidated`, `drop_sources_unvalidated` and
//! `active_collection_frontiers`.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use std::collections::BTreeMap;
use std::time::Duration;

use controller_support::*;
use strata_controller_api::{
    Antichain, Collections, ExportDescription, Exports, GlobalId, InstanceId, Instances, Lifecycle,
    ReadPolicy, Reads, SinkConnection, StorageError, StorageParameters, Tables, Timestamp,
};
use strata_controller_core::Controller;

const INSTANCE: InstanceId = ingest_support::INSTANCE;

fn file_sink(from: GlobalId, path: &str) -> ExportDescription<Timestamp> {
    ingest_support::file_sink(from, std::path::Path::new(path), 0)
}

fn since_ms(ctl: &Controller<Timestamp>, id: GlobalId) -> Option<u64> {
    let since = ctl.collection_frontiers(id).unwrap().since;
    since.elements().first().map(|t| t.as_millis())
}

/// Tables `a` and `b` at upper 6, `a` readable from 5 on by its policy and `b` from 0
/// (no policy), and a sink `s` of `a` at as_of 0 on an instance without replicas (so
/// the sink stays at its as_of and holds `a` there).
async fn tables_and_a_sink(env: &Env) -> (Controller<Timestamp>, [GlobalId; 3]) {
    let mut ctl = env.controller(false).await;
    let (a, b, s) = (id(1), id(2), id(10));
    create_tables(env, &mut ctl, &[a, b], t(0)).await;
    append(
        &mut ctl,
        5,
        vec![(a, vec![(row(1), 1)]), (b, vec![(row(2), 1)])],
    )
    .await;
    ctl.create_instance(INSTANCE).unwrap();
    ctl.create_exports(vec![(s, file_sink(a, "/tmp/strata-never-written-a"))])
        .await
        .unwrap();
    let from_5 = ReadPolicy::ValidFrom(Antichain::from_elem(t(5)));
    ctl.set_read_policy(vec![(a, from_5)]).unwrap();
    ctl.apply_pending();
    (ctl, [a, b, s])
}

#[tokio::test]
async fn update_parameters_merges_and_reaches_the_collection_manager() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let configured = ctl.introspection_batch_duration();
    // An update that does not set the batch duration leaves the manager's own.
    ctl.update_parameters(StorageParameters {
        statistics_interval: Some(Duration::from_millis(250)),
        ..StorageParameters::default()
    });
    assert_eq!(ctl.introspection_batch_duration(), configured);
    ctl.update_parameters(StorageParameters {
        user_batch_duration: Some(Duration::from_millis(7)),
        ..StorageParameters::default()
    });
    assert_eq!(ctl.introspection_batch_duration(), Duration::from_millis(7));
    // Both updates are in force: a later one does not undo an earlier one.
    assert_eq!(
        ctl.parameters().statistics_interval(),
        Duration::from_millis(250)
    );
    assert_eq!(
        ctl.parameters().user_batch_duration(),
        Duration::from_millis(7)
    );
}

#[tokio::test]
async fn alter_export_moves_the_sinks_hold_to_its_new_input() {
    let env = mem_env();
    let (mut ctl, [a, b, s]) = tables_and_a_sink(&env).await;
    assert_eq!(since_ms(&ctl, a), Some(0), "the sink holds a");
    assert_eq!(since_ms(&ctl, b), Some(0));

    let b_desc = file_sink(b, "/tmp/strata-never-written-b");
    ctl.alter_export(s, b_desc.clone()).await.unwrap();
    ctl.apply_pending();
    assert_eq!(ctl.export(s).unwrap(), b_desc);
    assert_eq!(since_ms(&ctl, a), Some(5), "a is released");
    assert_eq!(since_ms(&ctl, b), Some(0), "b is held by the sink");

    // Back to a, which is no longer readable where the sink resumes: refused, and
    // nothing changes.
    let refused = ctl
        .alter_export(s, file_sink(a, "/tmp/strata-never-written-a"))
        .await;
    assert!(
        matches!(refused, Err(StorageError::ReadBeforeSince { id, .. }) if id == a),
        "{refused:?}"
    );
    // Unknown exports and inputs are typed errors that change nothing either.
    let missing = ctl.alter_export(id(99), b_desc.clone()).await;
    assert!(matches!(missing, Err(StorageError::IdentifierMissing(_))));
    let missing = ctl
        .alter_export(s, file_sink(id(98), "/tmp/strata-never-written-c"))
        .await;
    assert!(matches!(missing, Err(StorageError::IdentifierMissing(_))));
    assert_eq!(ctl.export(s).unwrap(), b_desc);
    assert_eq!(since_ms(&ctl, b), Some(0));
}

#[tokio::test]
async fn alter_export_connections_replaces_connections_all_or_nothing() {
    let env = mem_env();
    let (mut ctl, [_, _, s]) = tables_and_a_sink(&env).await;
    let moved = SinkConnection::File {
        path: "/tmp/strata-never-written-moved".into(),
    };
    // One unknown id fails the whole call, before anything changes.
    let refused = ctl
        .alter_export_connections(BTreeMap::from([
            (s, moved.clone()),
            (id(99), moved.clone()),
        ]))
        .await;
    assert!(matches!(
        refused,
        Err(StorageError::IdentifierMissing(GlobalId::User(99)))
    ));
    assert_ne!(ctl.export(s).unwrap().connection, moved);

    ctl.alter_export_connections(BTreeMap::from([(s, moved.clone())]))
        .await
        .unwrap();
    assert_eq!(ctl.export(s).unwrap().connection, moved);
    // The same connection again is a no-op, not an error.
    ctl.alter_export_connections(BTreeMap::from([(s, moved.clone())]))
        .await
        .unwrap();
}

#[tokio::test]
async fn drop_sinks_unvalidated_skips_what_is_not_a_live_sink() {
    let env = mem_env();
    let (mut ctl, [a, _, s]) = tables_and_a_sink(&env).await;
    // The validated drop refuses an unknown id and drops nothing.
    assert!(matches!(
        ctl.drop_sinks(vec![s, id(99)]),
        Err(StorageError::IdentifierMissing(GlobalId::User(99)))
    ));
    assert!(ctl.export(s).is_ok());
    // The unvalidated one skips it (and a table, and a repeat) and drops the sink.
    ctl.drop_sinks_unvalidated(vec![id(99), s, a, s]).unwrap();
    assert!(matches!(
        ctl.export(s),
        Err(StorageError::IdentifierMissing(_))
    ));
    ctl.check_exists(a).unwrap();
    ctl.apply_pending();
    assert_eq!(since_ms(&ctl, a), Some(5), "the sink's hold is released");
    // Dropping it again is a no-op.
    ctl.drop_sinks_unvalidated(vec![s]).unwrap();
}

#[tokio::test]
async fn drop_sources_unvalidated_skips_unknown_ids_and_tables() {
    let env = mem_env();
    let mut ctl = env.controller(false).await;
    let (table, view) = (id(1), id(2));
    create_tables(&env, &mut ctl, &[table], t(0)).await;
    create_other(&env, &mut ctl, view).await;
    // Validated, a table is the wrong kind, and nothing is dropped.
    let refused = ctl.drop_sources(vec![view, table]).await;
    assert!(matches!(refused, Err(StorageError::IdentifierInvalid(id)) if id == table));
    ctl.check_exists(view).unwrap();

    env.prepare(&ctl, &[], &[view]).await;
    ctl.drop_sources_unvalidated(vec![id(99), table, view, view])
        .await
        .unwrap();
    assert!(ctl.check_exists(view).is_err());
    ctl.check_exists(table).unwrap();
    assert!(
        !ctl.catalog_contents()
            .collection_metadata
            .contains_key(&view)
    );
    assert!(ctl.collection_metadata(view).is_err());
}

#[tokio::test]
async fn active_collection_frontiers_lists_the_live_collections_and_exports() {
    let env = mem_env();
    let (mut ctl, [a, b, s]) = tables_and_a_sink(&env).await;
    let (extra,) = (id(3),);
    create_tables(&env, &mut ctl, &[extra], t(6)).await;
    ctl.drop_tables(vec![extra], t(7)).await.unwrap();
    ctl.apply_pending();

    let mut active = ctl.active_collection_frontiers();
    active.sort_by_key(|f| f.id);
    let ids: Vec<GlobalId> = active.iter().map(|f| f.id).collect();
    assert_eq!(ids, vec![a, b, s], "the dropped table is not active");
    // Each entry is what `collection_frontiers` says of it.
    let one_by_one = ctl.collections_frontiers(vec![a, b, s]).unwrap();
    assert_eq!(active, one_by_one);
    // Tables share the txns upper, which the writes and registrations moved past 6.
    assert_eq!(active[0].upper, active[1].upper);
    assert!(!active[0].upper.less_equal(&t(6)), "{:?}", active[0].upper);
    assert_eq!(active[2].since, Antichain::from_elem(t(0)));
}

/// A table fed by a source (an ingestion export) is dropped through `drop_tables` like
/// the subsource it is; the ingestion itself is no table.
#[tokio::test]
async fn drop_tables_drops_a_source_fed_table() {
    let env = mem_env();
    let (mut ctl, _servers) = ingest_support::controller(&env, false, None).await;
    ctl.create_instance(ingest_support::INSTANCE).unwrap();
    let source = ingest_support::Auction::new(20);
    ingest_support::create_source(&env, &mut ctl, &source, &ingest_support::connection(3, 0)).await;
    let table = id(1);
    create_tables(&env, &mut ctl, &[table], t(0)).await;

    let refused = ctl
        .drop_tables(vec![source.bids, source.ingestion], t(1))
        .await;
    assert!(
        matches!(refused, Err(StorageError::IdentifierInvalid(id)) if id == source.ingestion),
        "{refused:?}"
    );
    ctl.check_exists(source.bids).unwrap();

    env.prepare(&ctl, &[], &[source.bids, table]).await;
    ctl.drop_tables(vec![source.bids, table], t(1))
        .await
        .unwrap();
    assert!(ctl.check_exists(source.bids).is_err());
    assert!(ctl.check_exists(table).is_err());
    ctl.check_exists(source.ingestion).unwrap();
    ctl.check_exists(source.auctions).unwrap();
}
