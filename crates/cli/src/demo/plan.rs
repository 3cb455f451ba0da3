//! What the demo creates: fixed ids and names, so a second run finds the first run's
//! collections in the durable catalog and re-creates exactly them.
//!
//! - two tables, `orders` and `order_lines`, written together;
//! - the `auction` load-generator source: its ingestion (the primary output), its remap
//!   collection `auction_progress`, and the subsources `auctions` and `bids`;
//! - the introspection collections, one per [`IntrospectionType`];
//! - per run, a file sink of `auctions`, whose id carries the run's epoch.
//!
//! A subsource joins an ingestion only when the ingestion is created: a replica
//! resumes an ingestion from the lowest upper of its outputs, and the remap collection
//! no longer reaches back to time 0 once the source has run. So `bids`, dropped in the
//! first run, is not added back to the running source in later runs.

use strata_controller_api::{
    CollectionDescription, DataSource, GlobalId, InstanceId, IntrospectionType, LoadGenerator,
    RelationDesc, ScalarType, SourceConnection, SourceOutput, Timestamp,
};
use strata_controller_core::embed::LoadGeneratorSource;
use strata_replica::generator::{AUCTIONS, BIDS};

/// The demo's instance.
pub(crate) const INSTANCE: InstanceId = InstanceId(1);

pub(crate) const ORDERS: GlobalId = GlobalId::User(1);
pub(crate) const ORDER_LINES: GlobalId = GlobalId::User(2);
pub(crate) const AUCTION: GlobalId = GlobalId::User(10);
pub(crate) const AUCTION_PROGRESS: GlobalId = GlobalId::User(11);
pub(crate) const AUCTIONS_ID: GlobalId = GlobalId::User(12);
pub(crate) const BIDS_ID: GlobalId = GlobalId::User(13);

/// The tables, written together.
pub(crate) const TABLES: [GlobalId; 2] = [ORDERS, ORDER_LINES];

/// The source's collections, remap collection first.
pub(crate) const SOURCE: [GlobalId; 4] = [AUCTION_PROGRESS, AUCTION, AUCTIONS_ID, BIDS_ID];

/// The sink of run `epoch`: ids above every fixed one, never reused.
pub(crate) fn sink_id(epoch: u64) -> GlobalId {
    GlobalId::User(1000u64.saturating_add(epoch))
}

/// The id of an introspection collection.
pub(crate) fn introspection_id(kind: IntrospectionType) -> GlobalId {
    let index = IntrospectionType::CONTROLLER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(0);
    GlobalId::System(index as u64 + 1)
}

/// A person-readable name of an id the demo uses.
pub(crate) fn name(id: GlobalId) -> String {
    let fixed = match id {
        ORDERS => "orders",
        ORDER_LINES => "order_lines",
        AUCTION => "auction",
        AUCTION_PROGRESS => "auction_progress",
        AUCTIONS_ID => "auctions",
        BIDS_ID => "bids",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    if let GlobalId::System(n) = id
        && let Some(kind) = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| IntrospectionType::CONTROLLER.get(i))
    {
        return introspection_name(*kind).to_owned();
    }
    match id {
        GlobalId::User(n) if n > 1000 => format!("auctions_sink_e{}", n - 1000),
        // The `--postgres` source (see `demo::postgres`).
        super::postgres::PG_SOURCE => "pg".to_owned(),
        super::postgres::PG_PROGRESS => "pg_progress".to_owned(),
        other => super::postgres::table_index(other)
            .map_or_else(|| other.to_string(), |i| format!("pg_table_{i}")),
    }
}

/// The name of an introspection collection, after Materialize's.
pub(crate) fn introspection_name(kind: IntrospectionType) -> &'static str {
    kind.name()
}

fn orders_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("customer", ScalarType::String.nullable(false))
        .with_column("total_cents", ScalarType::Int64.nullable(false))
        .finish()
}

fn order_lines_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("order_id", ScalarType::Int64.nullable(false))
        .with_column("line", ScalarType::Int64.nullable(false))
        .with_column("item", ScalarType::String.nullable(false))
        .with_column("cents", ScalarType::Int64.nullable(false))
        .finish()
}

/// The tables' descriptions.
pub(crate) fn tables() -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    vec![
        (
            ORDERS,
            CollectionDescription::table(orders_desc()).with_name(name(ORDERS)),
        ),
        (
            ORDER_LINES,
            CollectionDescription::table(order_lines_desc()).with_name(name(ORDER_LINES)),
        ),
    ]
}

/// The auction generator's connection: ten auctions every 100 ms.
pub(crate) fn connection() -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 100,
        offsets_per_tick: 10,
        seed: 7,
    }
}

/// The source's descriptions, remap collection first. `with_bids` adds the `bids`
/// subsource (only when the ingestion is new; see the module docs).
pub(crate) fn source(
    with_bids: bool,
) -> anyhow::Result<Vec<(GlobalId, CollectionDescription<Timestamp>)>> {
    let mut source = LoadGeneratorSource::new(AUCTION, AUCTION_PROGRESS, INSTANCE, connection())
        .subsource(AUCTIONS_ID, SourceOutput::Named(AUCTIONS.into()));
    if with_bids {
        source = source.subsource(BIDS_ID, SourceOutput::Named(BIDS.into()));
    }
    let descriptions = source
        .descriptions()
        .map_err(|e| anyhow::anyhow!("the auction source's descriptions: {e}"))?;
    Ok(descriptions
        .into_iter()
        .map(|(id, d)| (id, d.with_name(name(id))))
        .collect())
}

/// The introspection collections' descriptions.
pub(crate) fn introspection() -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    IntrospectionType::CONTROLLER
        .iter()
        .map(|kind| {
            (
                introspection_id(*kind),
                CollectionDescription::for_source(
                    strata_introspection::schema::desc(*kind),
                    DataSource::Introspection(*kind),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_stable() {
        assert_eq!(name(ORDERS), "orders");
        assert_eq!(name(BIDS_ID), "bids");
        assert_eq!(name(sink_id(3)), "auctions_sink_e3");
        for kind in IntrospectionType::CONTROLLER {
            assert_eq!(name(introspection_id(kind)), introspection_name(kind));
        }
        assert_eq!(source(true).unwrap().len(), 4);
        assert_eq!(source(false).unwrap().len(), 3);
        assert_eq!(introspection().len(), IntrospectionType::CONTROLLER.len());
    }
}
