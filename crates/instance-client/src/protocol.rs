//! The Rust side of the replica protocol: [`StorageCommand`]s the controller sends and
//! [`StorageResponse`]s a replica sends back.
//!
//! These are the types every other module and crate uses. The wire form lives in
//! [`crate::proto`]; [`crate::convert`] maps between the two and validates every field
//! that comes from the wire.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{
    Antichain, CollectionMetadata, ExportDescription, GlobalId, IngestionDescription, ReplicaId,
};

/// A command from the controller to a replica.
///
/// A connection starts with [`StorageCommand::Hello`]; the replica obeys only the highest
/// epoch it has seen. After the history is replayed the controller sends
/// [`StorageCommand::InitializationComplete`], after which the replica may drop whatever it
/// runs that the replay did not mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageCommand<T> {
    /// The first command on every connection.
    Hello {
        /// A random value that identifies this connection attempt.
        nonce: u64,
        /// The controller's epoch: a replica refuses lower epochs than it has seen.
        epoch: u64,
    },
    /// The replay of the history is complete.
    InitializationComplete,
    /// The controller left read-only mode: replicas may write to shards.
    AllowWrites,
    /// New configuration values, merged into those already sent.
    UpdateConfiguration(StorageParameters),
    /// Run (or update) an ingestion.
    RunIngestion(RunIngestionCommand<T>),
    /// Run (or update) a sink.
    RunSink(RunSinkCommand<T>),
    /// The replica may compact `id` up to `frontier`; `[]` means `id` is dropped.
    AllowCompaction {
        /// The collection or sink.
        id: GlobalId,
        /// The new read frontier.
        frontier: Antichain<T>,
    },
}

impl<T> StorageCommand<T> {
    /// A short name of the variant, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageCommand::Hello { .. } => "hello",
            StorageCommand::InitializationComplete => "initialization-complete",
            StorageCommand::AllowWrites => "allow-writes",
            StorageCommand::UpdateConfiguration(_) => "update-configuration",
            StorageCommand::RunIngestion(_) => "run-ingestion",
            StorageCommand::RunSink(_) => "run-sink",
            StorageCommand::AllowCompaction { .. } => "allow-compaction",
        }
    }
}

/// Configuration values for replicas, as string key/value pairs.
///
/// Merging is last-writer-wins per key: [`StorageParameters::update`] overwrites the
/// keys it is given and keeps the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageParameters {
    /// The values, by key.
    pub params: BTreeMap<String, String>,
}

impl StorageParameters {
    /// Merges `other` into `self`; `other`'s values win.
    pub fn update(&mut self, other: StorageParameters) {
        self.params.extend(other.params);
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

/// Run an ingestion: its description and where each of its collections lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIngestionCommand<T> {
    /// The ingestion's id (its primary collection).
    pub id: GlobalId,
    /// What to ingest and into which collections.
    pub description: IngestionDescription<T>,
    /// Metadata of every export in `description.source_exports`, and optionally of the
    /// remap collection.
    pub storage_metadata: BTreeMap<GlobalId, CollectionMetadata>,
}

impl<T> RunIngestionCommand<T> {
    /// Every collection the ingestion writes: its own id, its exports and its remap
    /// collection. The ingestion is gone once all of them are compacted to `[]`.
    pub fn collection_ids(&self) -> BTreeSet<GlobalId> {
        let mut ids: BTreeSet<GlobalId> = self.description.source_exports.keys().copied().collect();
        ids.insert(self.id);
        ids.insert(self.description.remap_collection_id);
        ids
    }
}

/// Run a sink: its description and where the collection it reads lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSinkCommand<T> {
    /// The sink's id.
    pub id: GlobalId,
    /// What to export and where.
    pub description: ExportDescription<T>,
    /// Metadata of `description.from`.
    pub from_metadata: CollectionMetadata,
}

/// A response from a replica to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageResponse<T> {
    /// The replica's write frontier of a collection advanced.
    FrontierUpper {
        /// The collection.
        id: GlobalId,
        /// The new upper.
        upper: Antichain<T>,
    },
    /// The replica dropped every resource of an object compacted to `[]`.
    DroppedId(GlobalId),
    /// Current statistics values (not deltas) of sources and sinks.
    StatisticsUpdates {
        /// Per-source statistics.
        sources: Vec<SourceStatisticsUpdate>,
        /// Per-sink statistics.
        sinks: Vec<SinkStatisticsUpdate>,
    },
    /// A source or sink changed status.
    StatusUpdate(StatusUpdate),
}

impl<T> StorageResponse<T> {
    /// A short name of the variant, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageResponse::FrontierUpper { .. } => "frontier-upper",
            StorageResponse::DroppedId(_) => "dropped-id",
            StorageResponse::StatisticsUpdates { .. } => "statistics-updates",
            StorageResponse::StatusUpdate(_) => "status-update",
        }
    }
}

/// The health of a source or sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Starting up; no data yet.
    Starting,
    /// Running normally.
    Running,
    /// Not running because no replica runs it.
    Paused,
    /// Running but unable to make progress; `error` says why.
    Stalled,
    /// Dropped for good.
    Dropped,
}

impl Status {
    /// The status as lower-case text, as introspection records it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stalled => "stalled",
            Status::Dropped => "dropped",
        }
    }
}

/// A status change of a source or sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The source or sink.
    pub id: GlobalId,
    /// The new status.
    pub status: Status,
    /// Wall-clock milliseconds since the Unix epoch when the status changed.
    pub timestamp_ms: u64,
    /// The error that caused a stall, if any.
    pub error: Option<String>,
    /// Hints for the operator.
    pub hints: Vec<String>,
    /// The replica that reported it. An [`crate::Instance`] sets this on every update it
    /// forwards; `None` for statuses it synthesises.
    pub replica: Option<ReplicaId>,
}

/// Current values of a source's counters on one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatisticsUpdate {
    /// The source collection.
    pub id: GlobalId,
    /// Messages read from upstream.
    pub messages_received: u64,
    /// Bytes read from upstream.
    pub bytes_received: u64,
    /// Updates staged for a write.
    pub updates_staged: u64,
    /// Updates committed to the shard.
    pub updates_committed: u64,
    /// Whether the initial snapshot is committed.
    pub snapshot_committed: bool,
    /// The latest upstream offset known, if the source knows one.
    pub offset_known: Option<u64>,
    /// The latest upstream offset committed, if any.
    pub offset_committed: Option<u64>,
}

/// Current values of a sink's counters on one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatisticsUpdate {
    /// The sink.
    pub id: GlobalId,
    /// Messages staged for a write.
    pub messages_staged: u64,
    /// Messages committed to the sink's destination.
    pub messages_committed: u64,
    /// Bytes staged for a write.
    pub bytes_staged: u64,
    /// Bytes committed to the sink's destination.
    pub bytes_committed: u64,
}
