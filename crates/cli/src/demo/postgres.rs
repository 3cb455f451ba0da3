//! `strata demo --postgres URL`: a Postgres CDC source of a live database, beside the
//! auction source. It ingests every table of the publication `--postgres-publication`
//! (default `strata_demo`) through the slot `strata_demo`, one subsource per table,
//! and after the run reports how many rows each subsource holds.
//!
//! Ids are fixed, so a second run over the same location recovers the source: the
//! ingestion `u30`, its remap collection `u31`, and table `i` of the publication (in
//! `schema.table` order) as `u(32 + i)`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use strata_controller_api::{
    CollectionDescription, DataSource, GlobalId, IngestionDescription, Reads, RelationDesc,
    SourceConnection, SourceOutput, Timestamp,
};
use strata_replica::connector::postgres::{self, Settings};

use super::driver::Driver;
use super::plan::INSTANCE;
use super::steps::{self, Recovery};

/// The ingestion.
pub(crate) const PG_SOURCE: GlobalId = GlobalId::User(30);
/// Its remap collection.
pub(crate) const PG_PROGRESS: GlobalId = GlobalId::User(31);
/// The slot the demo's source owns.
pub(crate) const SLOT: &str = "strata_demo";

/// The demo's Postgres source: a subsource per table.
#[derive(Debug, Clone)]
pub(crate) struct PgSource {
    /// `(subsource id, schema.table)` per table.
    pub(crate) tables: Vec<(GlobalId, String)>,
}

/// Collections to create, with their descriptions.
type Collections = Vec<(GlobalId, CollectionDescription<Timestamp>)>;

/// The first subsource's id.
const FIRST_TABLE: u64 = 32;

/// The id of table `index`'s subsource.
fn subsource_id(index: usize) -> GlobalId {
    GlobalId::User(FIRST_TABLE + index as u64)
}

/// The table index of a subsource id (ids up to the sinks', which start above 1000).
pub(crate) fn table_index(id: GlobalId) -> Option<u64> {
    match id {
        GlobalId::User(n @ FIRST_TABLE..=999) => Some(n - FIRST_TABLE),
        _ => None,
    }
}

/// Reads the publication's tables (a clear error if the database cannot be reached,
/// the publication is missing or a column has an unsupported type) and describes the
/// source's collections, remap collection first.
fn plan(url: &str, publication: &str) -> anyhow::Result<(PgSource, Collections)> {
    let settings = Settings {
        url: url.to_owned(),
        publication: publication.to_owned(),
        slot: SLOT.to_owned(),
    };
    let outputs = tokio::task::block_in_place(|| postgres::outputs(&settings))
        .with_context(|| format!("cannot read publication {publication:?} at --postgres"))?;
    let mut collections = vec![
        (
            PG_PROGRESS,
            CollectionDescription::for_source(
                strata_replica::remap::remap_desc(),
                DataSource::Progress,
            )
            .with_name("pg_progress"),
        ),
        (
            PG_SOURCE,
            CollectionDescription::for_source(
                RelationDesc::empty(),
                DataSource::Ingestion(IngestionDescription {
                    connection: SourceConnection::Connector(settings.to_config()),
                    instance_id: INSTANCE,
                    remap_collection_id: PG_PROGRESS,
                    source_exports: BTreeMap::new(),
                    as_of: None,
                }),
            )
            .with_name("pg"),
        ),
    ];
    let mut tables = Vec::new();
    let named = outputs
        .into_iter()
        .filter_map(|(output, desc)| match output {
            SourceOutput::Named(name) => Some((name, desc)),
            SourceOutput::Primary => None,
        });
    for (index, (name, desc)) in named.enumerate() {
        let id = subsource_id(index);
        collections.push((
            id,
            CollectionDescription::for_source(
                desc,
                DataSource::IngestionExport {
                    ingestion_id: PG_SOURCE,
                    output: SourceOutput::Named(name.clone()),
                },
            )
            .with_name(format!("pg_{name}")),
        ));
        tables.push((id, name));
    }
    Ok((PgSource { tables }, collections))
}

/// Creates (or recovers) the source and says what it ingests.
pub(crate) async fn create(
    driver: &mut Driver,
    recovery: &mut Recovery,
    url: &str,
    publication: &str,
) -> anyhow::Result<PgSource> {
    let (source, collections) = plan(url, publication)?;
    steps::create(driver, recovery, collections).await?;
    let names: Vec<&str> = source.tables.iter().map(|(_, n)| n.as_str()).collect();
    driver.display.line(&format!(
        "  postgres source {}: publication {publication}, slot {SLOT}, {} tables: {}",
        if recovery.has(PG_SOURCE) {
            "recovered"
        } else {
            "created"
        },
        names.len(),
        names.join(", ")
    ));
    Ok(source)
}

/// How long the report waits for the source to catch up with the database.
const REPORT_RECENCY: Duration = Duration::from_secs(30);

/// After the run: how many rows each table's subsource holds at a real-time recent
/// time, by which every transaction the database had committed when the report began
/// is ingested (the controller asks the server for `pg_current_wal_lsn()`). If that
/// fails, each subsource is read at the latest time it is readable at, and the report
/// says so.
pub(crate) async fn report(driver: &mut Driver, source: &PgSource) -> anyhow::Result<()> {
    driver.ctl.apply_pending();
    let recent = match driver
        .ctl
        .real_time_recency_timestamp(BTreeSet::from([PG_SOURCE]), REPORT_RECENCY)
        .await
    {
        Ok(future) => future.await,
        Err(error) => Err(error),
    };
    let recent = match recent {
        Ok(time) => Some(time),
        Err(error) => {
            driver.display.line(&format!(
                "  postgres source: not real-time recent ({error}); each table as of its latest readable time"
            ));
            None
        }
    };
    for (id, name) in &source.tables {
        driver.ctl.apply_pending();
        let as_of = match recent {
            Some(time) => time,
            None => match driver.upper(*id) {
                0 => {
                    driver
                        .display
                        .line(&format!("  pg_{name}: nothing ingested yet"));
                    continue;
                }
                upper => Timestamp::new(upper.saturating_sub(1)),
            },
        };
        let rows = driver
            .ctl
            .snapshot(*id, as_of)
            .await
            .with_context(|| format!("cannot read pg_{name}"))?;
        let count: i64 = rows.iter().map(|(_, diff)| *diff).sum();
        driver
            .display
            .line(&format!("  pg_{name}: {count} rows as of {as_of}"));
    }
    Ok(())
}
