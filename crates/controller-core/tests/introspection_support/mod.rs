//! Helpers for the introspection tests: creating introspection collections the way a
//! host does, reading them through the controller's snapshot API, and the rows the
//! controller should have written.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, Datum, GlobalId, IntrospectionType,
    Reads, Row, StorageMetadata, StorageTimestamp, Timestamp,
};
use strata_controller_core::Controller;
use strata_introspection::schema::{desc, frontier_text};

use crate::controller_support::Env;
use crate::ingest_support::consolidate;

/// The description a host gives an introspection collection of `kind`.
pub fn introspection(kind: IntrospectionType) -> CollectionDescription<Timestamp> {
    CollectionDescription::for_source(desc(kind), DataSource::Introspection(kind))
}

/// Records the collections in the catalog and creates them.
pub async fn create_introspection(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    collections: &[(GlobalId, IntrospectionType)],
) {
    let ids: Vec<GlobalId> = collections.iter().map(|(id, _)| *id).collect();
    env.prepare(ctl, &ids, &[]).await;
    let descriptions = collections
        .iter()
        .map(|(id, kind)| (*id, introspection(*kind)))
        .collect();
    ctl.create_collections(&env.metadata(), None, descriptions)
        .await
        .unwrap();
}

/// Creates introspection collections on a controller over a durable catalog (which
/// assigns the shards itself).
pub async fn create_introspection_durable(
    ctl: &mut Controller<Timestamp>,
    collections: &[(GlobalId, IntrospectionType)],
) {
    let descriptions = collections
        .iter()
        .map(|(id, kind)| (*id, introspection(*kind)))
        .collect();
    ctl.create_collections(&StorageMetadata::default(), None, descriptions)
        .await
        .unwrap();
}

/// Waits until the introspection collections hold what the controller wants, then reads
/// `id` through `snapshot` at a time its upper has passed.
pub async fn read_introspection(
    ctl: &mut Controller<Timestamp>,
    id: GlobalId,
) -> BTreeMap<Row, i64> {
    ctl.sync_introspection().await.unwrap();
    let upper = ctl.collection_frontiers(id).unwrap().upper;
    let as_of = upper.as_option().copied().unwrap().step_back().unwrap();
    consolidate(ctl.snapshot(id, as_of).await.unwrap())
}

fn text(s: String) -> Datum {
    Datum::String(s)
}

/// The `ShardMapping` rows of `ids`, with the shards the controller reports.
pub fn expected_shard_mapping(ctl: &Controller<Timestamp>, ids: &[GlobalId]) -> BTreeMap<Row, i64> {
    ids.iter()
        .map(|id| {
            let shard = ctl.collection_metadata(*id).unwrap().data_shard;
            (
                Row::pack(&[text(id.to_string()), text(shard.to_string())]),
                1,
            )
        })
        .collect()
}

/// The `Frontiers` rows of `ids`, with the frontiers the controller reports.
pub fn expected_frontiers(ctl: &Controller<Timestamp>, ids: &[GlobalId]) -> BTreeMap<Row, i64> {
    ids.iter()
        .map(|id| {
            let f = ctl.collection_frontiers(*id).unwrap();
            let row = Row::pack(&[
                text(id.to_string()),
                text(frontier_text(&f.since)),
                text(frontier_text(&f.upper)),
            ]);
            (row, 1)
        })
        .collect()
}

/// A frontier of one time.
pub fn at(ms: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(ms))
}

/// The object id (first column) of a row.
pub fn object_id(row: &Row) -> String {
    match row.unpack().first() {
        Some(Datum::String(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The object ids (first column) of a collection's rows.
pub fn object_ids(rows: &BTreeMap<Row, i64>) -> Vec<String> {
    rows.keys()
        .filter_map(|row| match row.unpack().first() {
            Some(Datum::String(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}
