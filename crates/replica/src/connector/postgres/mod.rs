//! The Postgres CDC source (feature `postgres`): a publication and a logical
//! replication slot on an upstream Postgres, one output per published table.
//!
//! Registered as [`KIND`] with the settings `url` (a `postgres://` URL), `publication`
//! and `slot`. Outputs are named `schema.table` ([`SourceOutput::Named`]); the primary
//! output is empty.
//!
//! # Offsets and exactly-once
//!
//! An offset is an LSN. The initial snapshot of every table is at offset 0, read in
//! the snapshot the slot exported when it was created, so it is consistent with the
//! slot's consistent point `C`; the reader's frontier is then `C`. Each replicated
//! transaction is at the offset where its commit record starts (all its changes at one
//! offset, so at one time), and the frontier moves to the commit record's end once the
//! commit arrives (and to the server's sent position on a keepalive between
//! transactions): a later transaction's commit record starts at or after both. The
//! slot's confirmed flush position is moved only by [`SourceReader::durable`], so it
//! never passes what the data shards hold; a reader re-opened at offset `o > 0`
//! restarts replication at `o`, where Postgres skips exactly the transactions whose
//! commit starts before `o`. A reader opened at 0 has nothing durable behind it, so it
//! drops and re-creates the slot for a fresh snapshot.
//!
//! # Errors
//!
//! A lost connection is retried with backoff, the status `Stalled` with the reason
//! meanwhile. Definite errors cease the source with the reason: a `TRUNCATE` or a
//! schema change of a published table, a dropped slot or publication, or a table
//! without `REPLICA IDENTITY FULL` (updates and deletes then lack the old row).

pub mod pgoutput;
mod snapshot;
pub use snapshot::select_all;
mod stream;
pub mod types;

use std::sync::Arc;

use futures::FutureExt;
use strata_controller_api::{ConnectorConfig, Datum, ProbeFuture, RelationDesc, Row, SourceOutput};

use super::{
    ConnectorError, Offset, Pacing, ReaderShare, SourceConnector, SourceReader, SourceWaker,
};

/// The registered kind of the Postgres source.
pub const KIND: &str = "postgres";

/// How long a SQL connection may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A published table: its name, its columns' names, type OIDs and nullability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table's schema.
    pub schema: String,
    /// The table's name.
    pub name: String,
    /// `(name, type oid, not null)` per column, in order.
    pub columns: Vec<(String, u32, bool)>,
}

impl Table {
    /// The output the table's rows go to: `schema.table`.
    pub fn output(&self) -> SourceOutput {
        SourceOutput::Named(format!("{}.{}", self.schema, self.name))
    }

    /// The table's schema as a relation.
    pub fn desc(&self) -> RelationDesc {
        let mut builder = RelationDesc::builder();
        for (name, oid, not_null) in &self.columns {
            if let Some(scalar) = types::scalar_type(*oid) {
                builder = builder.with_column(name.as_str(), scalar.nullable(!*not_null));
            }
        }
        builder.finish()
    }

    /// The row of column values `values`, as the source maps them.
    pub fn row(&self, values: &[pgoutput::TupleValue]) -> Result<Row, String> {
        if values.len() != self.columns.len() {
            return Err(format!(
                "a row of {}.{} has {} columns, the table {}",
                self.schema,
                self.name,
                values.len(),
                self.columns.len()
            ));
        }
        let mut datums = Vec::with_capacity(values.len());
        for ((name, oid, _), value) in self.columns.iter().zip(values) {
            let datum = match value {
                pgoutput::TupleValue::Null => Datum::Null,
                pgoutput::TupleValue::Unchanged => {
                    return Err(format!("column {name} of {} was not sent", self.name));
                }
                pgoutput::TupleValue::Text(text) => {
                    let scalar = types::scalar_type(*oid)
                        .ok_or_else(|| format!("column {name} has unsupported type oid {oid}"))?;
                    types::datum(scalar, text).map_err(|e| format!("column {name}: {e}"))?
                }
            };
            datums.push(datum);
        }
        Ok(Row::pack(&datums))
    }

    /// The quoted `schema.table`, for SQL.
    fn quoted(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The settings of a Postgres source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A `postgres://` URL of the upstream database.
    pub url: String,
    /// The publication whose tables the source ingests.
    pub publication: String,
    /// The logical replication slot the source owns.
    pub slot: String,
}

impl Settings {
    /// The settings of `config`; every one is required and no other is allowed.
    pub fn from_config(config: &ConnectorConfig) -> Result<Settings, ConnectorError> {
        let [url, publication, slot] =
            super::builtin::exact_settings(config, ["url", "publication", "slot"])?;
        if let Some(name) = [("url", url), ("publication", publication), ("slot", slot)]
            .iter()
            .find_map(|(name, value)| value.is_empty().then_some(name))
        {
            return Err(invalid(format!("the {name:?} setting is empty")));
        }
        if !slot
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(invalid(format!(
                "slot name {slot:?} may hold only lower-case letters, digits and underscores"
            )));
        }
        Ok(Settings {
            url: url.to_owned(),
            publication: publication.to_owned(),
            slot: slot.to_owned(),
        })
    }

    /// The configuration of these settings.
    pub fn to_config(&self) -> ConnectorConfig {
        ConnectorConfig::new(KIND)
            .with("url", self.url.as_str())
            .with("publication", self.publication.as_str())
            .with("slot", self.slot.as_str())
    }
}

/// The Postgres source: its settings and the published tables, read when it was built.
#[derive(Debug)]
pub struct PostgresConnector {
    settings: Settings,
    tables: Vec<Table>,
}

impl PostgresConnector {
    /// Reads the publication's tables from the upstream and checks that the source
    /// supports them. Blocks (on a thread of its own) while it asks the upstream.
    pub fn connect(settings: Settings) -> Result<PostgresConnector, ConnectorError> {
        let tables = describe(&settings)?;
        Ok(PostgresConnector { settings, tables })
    }

    /// The published tables.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }
}

/// Every output of the Postgres source of `settings` with its schema, primary (empty)
/// first: what a host passes to `create_collections`. Asks the upstream.
pub fn outputs(settings: &Settings) -> Result<Vec<(SourceOutput, RelationDesc)>, ConnectorError> {
    Ok(PostgresConnector::connect(settings.clone())?.outputs())
}

impl SourceConnector for PostgresConnector {
    fn kind(&self) -> &str {
        KIND
    }

    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        std::iter::once((SourceOutput::Primary, RelationDesc::empty()))
            .chain(self.tables.iter().map(|t| (t.output(), t.desc())))
            .collect()
    }

    /// A round at most every 5 ms, binding everything received: the reader wakes the
    /// leader when a transaction arrives, so a commit waits at most that long, and under
    /// load each round carries all that arrived meanwhile.
    fn pacing(&self) -> Pacing {
        Pacing {
            tick_interval: std::time::Duration::from_millis(5),
            offsets_per_tick: None,
        }
    }

    fn open(
        &self,
        resume: Offset,
        _share: ReaderShare,
        waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(stream::PostgresReader::start(
            self.settings.clone(),
            self.tables.clone(),
            resume,
            waker,
            Vec::new(),
        )?))
    }

    /// Backfills tables added to a running source, as Materialize does: a temporary
    /// slot exports a snapshot at its consistent point `C`, whose rows are handed out
    /// at `resume` together with the *rewinds*, the negated changes of those tables
    /// that the stream replays from `resume` up to `C` (they are in the snapshot and
    /// arrive again at their own offsets). The frontier waits at `resume` until the
    /// stream has passed `C`. So the tables hold at `resume` what they held just before
    /// it, whatever `C` a re-opened reader gets.
    fn open_with_backfill(
        &self,
        resume: Offset,
        _share: ReaderShare,
        waker: SourceWaker,
        backfill: &[SourceOutput],
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        // The primary output is always empty: nothing to fill.
        let tables: Vec<SourceOutput> = backfill
            .iter()
            .filter(|output| **output != SourceOutput::Primary)
            .cloned()
            .collect();
        if let Some(unknown) = tables
            .iter()
            .find(|output| !self.tables.iter().any(|t| t.output() == **output))
        {
            return Err(invalid(format!(
                "{unknown:?} is not a table of publication {:?}",
                self.settings.publication
            )));
        }
        Ok(Box::new(stream::PostgresReader::start(
            self.settings.clone(),
            self.tables.clone(),
            resume,
            waker,
            tables,
        )?))
    }
}

/// The registry's factory for [`KIND`] (registered by default with the `postgres`
/// feature).
pub(super) fn factory(
    config: &ConnectorConfig,
) -> Result<Arc<dyn SourceConnector>, ConnectorError> {
    let settings = Settings::from_config(config)?;
    Ok(Arc::new(PostgresConnector::connect(settings)?))
}

/// The Postgres source's [`UpstreamProbe`](strata_controller_api::UpstreamProbe) for
/// the controller's real-time recency: the server's `pg_current_wal_lsn()`. Every
/// committed transaction's commit record starts below it, so once the remap collection
/// binds offsets up to it, every such transaction is visible. The default
/// [`ConnectorRegistry`](super::ConnectorRegistry) holds it under [`KIND`]; a host
/// gives the controller [`ConnectorRegistry::upstream_probes`](super::ConnectorRegistry::upstream_probes).
pub fn upstream_probe(config: &ConnectorConfig) -> ProbeFuture {
    let settings = Settings::from_config(config);
    async move {
        let settings = settings.map_err(|e| e.to_string())?;
        let client = sql_client(&settings.url).await.map_err(|e| e.to_string())?;
        let row = client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|e| format!("asking {} for pg_current_wal_lsn(): {e}", KIND))?;
        let text: String = row.try_get(0).map_err(|e| e.to_string())?;
        pgwire_replication::Lsn::parse(&text)
            .map(|lsn| lsn.as_u64())
            .map_err(|e| format!("pg_current_wal_lsn() answered {text:?}: {e}"))
    }
    .boxed()
}

fn upstream(reason: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Upstream {
        kind: KIND.to_owned(),
        reason: reason.to_string(),
    }
}

fn invalid(reason: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::InvalidConfig {
        kind: KIND.to_owned(),
        reason: reason.to_string(),
    }
}

/// Runs `f` on a thread of its own with a current-thread runtime, so callers may be
/// inside another runtime or none.
fn block_on_own_thread<R: Send + 'static>(
    f: impl std::future::Future<Output = Result<R, ConnectorError>> + Send + 'static,
) -> Result<R, ConnectorError> {
    std::thread::Builder::new()
        .name("postgres-describe".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(upstream)?;
            runtime.block_on(f)
        })
        .map_err(upstream)?
        .join()
        .map_err(|_| upstream("the describe thread panicked"))?
}

/// Connects a SQL session with the pinned session settings (`types::SESSION_OPTIONS`),
/// as the source's own sessions are. Call it within a tokio runtime.
pub async fn sql_client(url: &str) -> Result<tokio_postgres::Client, ConnectorError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(invalid)?;
    config.options(types::SESSION_OPTIONS);
    // Describing runs while the replica plans a command: an unreachable server must
    // not hold that up for long (the plan then retries on the reader's opens).
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(upstream)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "a Postgres SQL connection ended");
        }
    });
    Ok(client)
}

/// The publication's tables, checked.
fn describe(settings: &Settings) -> Result<Vec<Table>, ConnectorError> {
    let settings = settings.clone();
    block_on_own_thread(async move {
        let client = sql_client(&settings.url).await?;
        let publication = client
            .query(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&settings.publication],
            )
            .await
            .map_err(upstream)?;
        if publication.is_empty() {
            return Err(invalid(format!(
                "publication {:?} does not exist",
                settings.publication
            )));
        }
        let rows = client
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text, c.relreplident::text \
                 FROM pg_publication_tables p \
                 JOIN pg_namespace n ON n.nspname = p.schemaname \
                 JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename \
                 WHERE p.pubname = $1 ORDER BY 2, 3",
                &[&settings.publication],
            )
            .await
            .map_err(upstream)?;
        let mut tables = Vec::new();
        for row in rows {
            let oid: u32 = row.get(0);
            let table = Table {
                schema: row.get(1),
                name: row.get(2),
                columns: Vec::new(),
            };
            let identity: String = row.get(3);
            if identity != "f" {
                return Err(invalid(format!(
                    "table {}.{} needs REPLICA IDENTITY FULL (ALTER TABLE … REPLICA IDENTITY FULL)",
                    table.schema, table.name
                )));
            }
            let columns = client
                .query(
                    "SELECT attname::text, atttypid, attnotnull FROM pg_attribute \
                     WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    &[&oid],
                )
                .await
                .map_err(upstream)?;
            let mut table = table;
            for column in columns {
                let (name, type_oid, not_null): (String, u32, bool) =
                    (column.get(0), column.get(1), column.get(2));
                if types::scalar_type(type_oid).is_none() {
                    let type_name = client
                        .query_one("SELECT format_type($1, NULL)", &[&type_oid])
                        .await
                        .map(|r| r.get::<_, String>(0))
                        .unwrap_or_else(|_| format!("oid {type_oid}"));
                    return Err(invalid(format!(
                        "column {}.{}.{name} has type {type_name}, which the Postgres source \
                         does not support",
                        table.schema, table.name
                    )));
                }
                table.columns.push((name, type_oid, not_null));
            }
            tables.push(table);
        }
        Ok(tables)
    })
}
