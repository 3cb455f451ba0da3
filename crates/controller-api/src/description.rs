//! Descriptions of what the controller manages: collections, their data sources,
//! ingestions and exports (sinks).
//!
//! These are plain values. The controller validates them when they are created; a
//! replica validates them again before it runs them, since they cross the network.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use timely::progress::Antichain;

use crate::ids::{GlobalId, InstanceId, ShardId};
use crate::row::RelationDesc;

/// Everything the controller needs to know to create and maintain a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionDescription<T> {
    /// The schema of the collection's rows.
    pub desc: RelationDesc,
    /// Where the collection's updates come from.
    pub data_source: DataSource<T>,
    /// An initial since, if the caller wants to hold the collection back further than
    /// its shard's since.
    pub since: Option<Antichain<T>>,
    /// The collection that records this one's status history, if any.
    pub status_collection_id: Option<GlobalId>,
    /// A name for people, such as the host's name of the table. The controller writes
    /// it into the collection's shard, where `strata inspect` and `strata top` show it;
    /// nothing else reads it.
    #[serde(default)]
    pub name: Option<String>,
}

impl<T> CollectionDescription<T> {
    /// A table with the given schema.
    pub fn table(desc: RelationDesc) -> Self {
        CollectionDescription {
            desc,
            data_source: DataSource::Table,
            since: None,
            status_collection_id: None,
            name: None,
        }
    }

    /// A collection of the given kind with the given schema.
    pub fn for_source(desc: RelationDesc, data_source: DataSource<T>) -> Self {
        CollectionDescription {
            desc,
            data_source,
            since: None,
            status_collection_id: None,
            name: None,
        }
    }

    /// The same description, named `name` for people (see [`Self::name`]).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The name the controller writes into the collection's shard: the description's,
    /// else an introspection collection's conventional name.
    pub fn display_name(&self) -> Option<String> {
        match (&self.name, &self.data_source) {
            (Some(name), _) => Some(name.clone()),
            (None, DataSource::Introspection(kind)) => Some(kind.name().to_owned()),
            (None, _) => None,
        }
    }

    /// Whether the collection is a table written through the txns shard.
    pub fn is_table(&self) -> bool {
        matches!(self.data_source, DataSource::Table)
    }
}

/// Where a collection's updates come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataSource<T> {
    /// A source ingestion, run on an instance's replicas. The collection is the
    /// ingestion's primary output.
    Ingestion(IngestionDescription<T>),
    /// An output of an ingestion (a subsource), filled by that ingestion's dataflow.
    IngestionExport {
        /// The ingestion that fills this collection.
        ingestion_id: GlobalId,
        /// Which of the ingestion's outputs this collection receives.
        output: SourceOutput,
    },
    /// A table, written by the controller through the txns shard.
    Table,
    /// An append-only collection written through a monotonic appender.
    Webhook,
    /// A system collection the controller itself maintains.
    Introspection(IntrospectionType),
    /// The remap (progress) collection of an ingestion: bindings of source offsets to
    /// timestamps, written by the ingestion's dataflow.
    Progress,
    /// A collection the controller only tracks; something else writes it.
    Other,
}

impl<T> DataSource<T> {
    /// A short name of the variant, for errors and introspection.
    pub fn kind(&self) -> &'static str {
        match self {
            DataSource::Ingestion(_) => "ingestion",
            DataSource::IngestionExport { .. } => "ingestion-export",
            DataSource::Table => "table",
            DataSource::Webhook => "webhook",
            DataSource::Introspection(_) => "introspection",
            DataSource::Progress => "progress",
            DataSource::Other => "other",
        }
    }
}

/// The system collections the controller writes about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IntrospectionType {
    /// `(object_id, shard_id)` for every collection.
    ShardMapping,
    /// `(object_id, read_frontier, upper)` for every collection.
    Frontiers,
    /// `(object_id, replica_id, upper)` for every collection on every replica.
    ReplicaFrontiers,
    /// Per-replica source statistics.
    SourceStatistics,
    /// Per-replica sink statistics.
    SinkStatistics,
    /// Source status changes over time.
    SourceStatusHistory,
    /// Sink status changes over time.
    SinkStatusHistory,
    /// Replica resource metrics over time.
    ReplicaMetricsHistory,
    /// The storage objects each compute object depends on (written by the coordinator).
    ComputeDependencies,
    /// Per-operator hydration of compute objects on replicas (coordinator).
    ComputeOperatorHydrationStatus,
    /// Refresh times of materialized views (coordinator).
    ComputeMaterializedViewRefreshes,
    /// Error counts of compute exports on replicas (coordinator).
    ComputeErrorCounts,
    /// How long compute objects took to hydrate on replicas (coordinator).
    ComputeHydrationTimes,
    /// Prepared statements, for statement logging (coordinator, append-only).
    PreparedStatementHistory,
    /// Statement executions, for statement logging (coordinator, append-only).
    StatementExecutionHistory,
    /// Sessions, for statement logging (coordinator, append-only).
    SessionHistory,
    /// Lifecycle events of statements (coordinator, append-only).
    StatementLifecycleHistory,
    /// The text of logged statements by hash (coordinator, append-only).
    SqlText,
    /// Status changes of private-link connections over time (coordinator, append-only).
    PrivatelinkConnectionStatusHistory,
}

impl IntrospectionType {
    /// The collection's conventional name, such as `shard_mapping`: the name the
    /// controller gives its shard when the description names none.
    pub fn name(self) -> &'static str {
        match self {
            IntrospectionType::ShardMapping => "shard_mapping",
            IntrospectionType::Frontiers => "frontiers",
            IntrospectionType::ReplicaFrontiers => "replica_frontiers",
            IntrospectionType::SourceStatistics => "source_statistics",
            IntrospectionType::SinkStatistics => "sink_statistics",
            IntrospectionType::SourceStatusHistory => "source_status_history",
            IntrospectionType::SinkStatusHistory => "sink_status_history",
            IntrospectionType::ReplicaMetricsHistory => "replica_metrics_history",
            IntrospectionType::ComputeDependencies => "compute_dependencies",
            IntrospectionType::ComputeOperatorHydrationStatus => {
                "compute_operator_hydration_status"
            }
            IntrospectionType::ComputeMaterializedViewRefreshes => {
                "compute_materialized_view_refreshes"
            }
            IntrospectionType::ComputeErrorCounts => "compute_error_counts",
            IntrospectionType::ComputeHydrationTimes => "compute_hydration_times",
            IntrospectionType::PreparedStatementHistory => "prepared_statement_history",
            IntrospectionType::StatementExecutionHistory => "statement_execution_history",
            IntrospectionType::SessionHistory => "session_history",
            IntrospectionType::StatementLifecycleHistory => "statement_lifecycle_history",
            IntrospectionType::SqlText => "sql_text",
            IntrospectionType::PrivatelinkConnectionStatusHistory => {
                "privatelink_connection_status_history"
            }
        }
    }

    /// Every introspection type, in a fixed order: the controller's own first (as in
    /// [`IntrospectionType::CONTROLLER`]), then those a coordinator writes.
    pub const ALL: [IntrospectionType; 19] = [
        IntrospectionType::ShardMapping,
        IntrospectionType::Frontiers,
        IntrospectionType::ReplicaFrontiers,
        IntrospectionType::SourceStatistics,
        IntrospectionType::SinkStatistics,
        IntrospectionType::SourceStatusHistory,
        IntrospectionType::SinkStatusHistory,
        IntrospectionType::ReplicaMetricsHistory,
        IntrospectionType::ComputeDependencies,
        IntrospectionType::ComputeOperatorHydrationStatus,
        IntrospectionType::ComputeMaterializedViewRefreshes,
        IntrospectionType::ComputeErrorCounts,
        IntrospectionType::ComputeHydrationTimes,
        IntrospectionType::PreparedStatementHistory,
        IntrospectionType::StatementExecutionHistory,
        IntrospectionType::SessionHistory,
        IntrospectionType::StatementLifecycleHistory,
        IntrospectionType::SqlText,
        IntrospectionType::PrivatelinkConnectionStatusHistory,
    ];

    /// The types whose contents the controller produces itself (the rest a
    /// coordinator writes through the controller): the first 8 of
    /// [`IntrospectionType::ALL`].
    pub const CONTROLLER: [IntrospectionType; 8] = {
        let mut kinds = [IntrospectionType::ShardMapping; 8];
        let mut i = 0;
        while i < kinds.len() {
            kinds[i] = IntrospectionType::ALL[i];
            i += 1;
        }
        kinds
    };

    /// Whether the controller produces the collection's contents itself.
    pub fn is_controller_written(self) -> bool {
        IntrospectionType::CONTROLLER.contains(&self)
    }

    /// Whether the collection keeps a desired state that is reconciled against its
    /// shard (differential), as opposed to blind appends (append-only).
    pub fn is_differential(&self) -> bool {
        matches!(
            self,
            IntrospectionType::ShardMapping
                | IntrospectionType::Frontiers
                | IntrospectionType::ReplicaFrontiers
                | IntrospectionType::SourceStatistics
                | IntrospectionType::SinkStatistics
                | IntrospectionType::ComputeDependencies
                | IntrospectionType::ComputeOperatorHydrationStatus
                | IntrospectionType::ComputeMaterializedViewRefreshes
                | IntrospectionType::ComputeErrorCounts
                | IntrospectionType::ComputeHydrationTimes
        )
    }
}

/// Which output of an ingestion a collection receives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SourceOutput {
    /// The ingestion's primary output.
    Primary,
    /// A named output, such as `auctions` or `bids` of the auction generator.
    Named(String),
}

/// A source ingestion: a connection, the instance it runs on, its outputs and its remap
/// collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestionDescription<T> {
    /// What to ingest.
    pub connection: SourceConnection,
    /// The instance whose replicas run the ingestion.
    pub instance_id: InstanceId,
    /// The collection that binds source offsets to timestamps.
    pub remap_collection_id: GlobalId,
    /// The collections the ingestion writes, and which output each receives. The
    /// controller adds the ingestion's own id with [`SourceOutput::Primary`].
    pub source_exports: BTreeMap<GlobalId, SourceOutput>,
    /// The ingestion may not produce data at times before this frontier.
    pub as_of: Option<Antichain<T>>,
}

/// A load generator's kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LoadGenerator {
    /// One row per offset: offset `n` inserts the row `(n + 1)`, so a tick of
    /// `offsets_per_tick` offsets inserts that many rows.
    Counter {
        /// Stop after this many ticks (`max_ticks × offsets_per_tick` offsets), if set.
        /// A finished counter's upper stays at the time of its last round: the source
        /// has no more data, but it is not closed, so reads at later times wait.
        max_ticks: Option<u64>,
    },
    /// Auctions with bids: a primary output plus `auctions` and `bids` subsources.
    Auction,
    /// Updates and retractions over a bounded key space.
    KeyValue {
        /// The number of distinct keys.
        keys: u64,
    },
}

/// What an ingestion reads from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceConnection {
    /// A deterministic load generator: offset `n` always produces the same data.
    LoadGenerator {
        /// Which generator.
        generator: LoadGenerator,
        /// Milliseconds between ticks.
        tick_interval_ms: u64,
        /// Offsets produced per tick.
        offsets_per_tick: u64,
        /// Seed of the generator's pseudo-random choices.
        seed: u64,
    },
    /// A connector that the replica's connector registry knows by
    /// [`ConnectorConfig::kind`]: a built-in or one an embedding program registered.
    Connector(ConnectorConfig),
}

impl SourceConnection {
    /// Whether the controller can answer real-time recency for the source from its
    /// collections alone: true for a load generator, which is its own upstream. A
    /// registered connector's upstream frontier comes from the
    /// [`UpstreamProbe`](crate::UpstreamProbe) registered for its kind, if any.
    pub fn supports_real_time_recency(&self) -> bool {
        matches!(self, SourceConnection::LoadGenerator { .. })
    }
}

/// The configuration of a registered connector: its kind, the name under which a
/// replica's registry knows it, and its settings, which only the connector interprets.
///
/// The controller and the wire protocol carry it as it is, so a connector added by an
/// embedding program needs no change to either.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{ConnectorConfig, SourceConnection};
/// let config = ConnectorConfig::new("my-queue")
///     .with("topic", "orders")
///     .with("start", "0");
/// assert_eq!(config.setting("topic"), Some("orders"));
/// let connection = SourceConnection::Connector(config);
/// assert!(!connection.supports_real_time_recency());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnectorConfig {
    /// The connector's registered name.
    pub kind: String,
    /// Settings, by name.
    pub settings: BTreeMap<String, String>,
}

impl ConnectorConfig {
    /// A connector of `kind` with no settings.
    pub fn new(kind: impl Into<String>) -> Self {
        ConnectorConfig {
            kind: kind.into(),
            settings: BTreeMap::new(),
        }
    }

    /// The same configuration with `name` set to `value`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    /// The value of setting `name`, if set.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).map(String::as_str)
    }
}

/// A sink: where an export writes its `from` collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SinkConnection {
    /// Newline-delimited JSON of `(row, time, diff)` appended to a local file.
    File {
        /// The output file's path.
        path: String,
    },
    /// Parquet files under an object-store prefix, one per time range.
    ObjectStore {
        /// A persist-style location URL (`mem://`, `file://`, `s3://`).
        url: String,
        /// The key prefix under which files are written.
        prefix: String,
    },
    /// A connector that the replica's connector registry knows by
    /// [`ConnectorConfig::kind`]: a built-in or one an embedding program registered.
    Connector(ConnectorConfig),
}

/// An export (a sink) of a collection to the outside world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDescription<T> {
    /// The collection the sink reads.
    pub from: GlobalId,
    /// The schema of `from`, as the sink expects it.
    pub from_desc: RelationDesc,
    /// Where the sink writes.
    pub connection: SinkConnection,
    /// The sink reads `from` starting here.
    pub as_of: Antichain<T>,
    /// Whether the sink first writes a snapshot of `from` at `as_of`.
    pub with_snapshot: bool,
    /// The instance whose replicas run the sink.
    pub instance_id: InstanceId,
}

/// Where a collection's data lives: what a replica needs to read or write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionMetadata {
    /// The persist location URL.
    pub persist_location: String,
    /// The shard that holds the collection's updates.
    pub data_shard: ShardId,
    /// The shard of the collection's remap collection, for ingestion outputs.
    pub remap_shard: Option<ShardId>,
    /// The txns shard, for tables.
    pub txns_shard: Option<ShardId>,
    /// The collection's schema.
    pub relation_desc: RelationDesc,
}
