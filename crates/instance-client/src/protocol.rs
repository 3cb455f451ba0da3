//! The Rust side of the replica protocol: [`StorageCommand`]s the controller sends and
//! [`ReplicaResponse`]s a replica sends back.
//!
//! These are the types every other module and crate uses. The wire form lives in
//! [`crate::proto`]; [`crate::convert`] maps between the two and validates every field
//! that comes from the wire.
//!
//! Values that mean the same to the controller's callers are `strata-controller-api`'s
//! types, used as they are: [`StatusUpdate`] (with its
//! [`Status`](strata_controller_api::Status)), [`SourceStatistics`] and
//! [`SinkStatistics`]. Only what has a shape of its own on the wire has a type here,
//! named for the replica: [`ReplicaResponse`] (one report of one replica; the
//! controller's callers see merged [`strata_controller_api::StorageResponse`]s) and
//! [`ReplicaParameters`] (string key/value pairs, the wire form of
//! [`StorageParameters`]).

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{
    Antichain, CollectionMetadata, ExportDescription, GlobalId, IngestionDescription,
    SinkStatistics, SourceStatistics, StatusUpdate, StorageParameters,
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
    UpdateConfiguration(ReplicaParameters),
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

/// Configuration values for replicas, as string key/value pairs: the wire form of
/// [`StorageParameters`].
///
/// Merging is last-writer-wins per key: [`ReplicaParameters::update`] overwrites the
/// keys it is given and keeps the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaParameters {
    /// The values, by key.
    pub params: BTreeMap<String, String>,
}

impl ReplicaParameters {
    /// Merges `other` into `self`; `other`'s values win.
    pub fn update(&mut self, other: ReplicaParameters) {
        self.params.extend(other.params);
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

impl From<&StorageParameters> for ReplicaParameters {
    /// The values replicas use, under their wire keys; durations in milliseconds. Unset
    /// values and the controller's own (status-history retention, metrics-history
    /// retention) are left out.
    fn from(params: &StorageParameters) -> Self {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.insert(key.to_owned(), value);
            }
        };
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis().to_string());
        put("statistics_interval_ms", ms(params.statistics_interval));
        put("user_batch_duration_ms", ms(params.user_batch_duration));
        put(
            "ingestion_batch_max_updates",
            params.ingestion_batch_max_updates.map(|n| n.to_string()),
        );
        put(
            "sink_batch_max_updates",
            params.sink_batch_max_updates.map(|n| n.to_string()),
        );
        ReplicaParameters { params: out }
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
pub enum ReplicaResponse<T> {
    /// The replica's write frontiers of some collections advanced: each collection's
    /// new upper. A replica reports every upper one step advanced in one response.
    FrontierUppers(Vec<(GlobalId, Antichain<T>)>),
    /// The replica dropped every resource of an object compacted to `[]`.
    DroppedId(GlobalId),
    /// Current statistics values (not deltas) of sources and sinks.
    StatisticsUpdates {
        /// Per-source statistics.
        sources: Vec<(GlobalId, SourceStatistics)>,
        /// Per-sink statistics.
        sinks: Vec<(GlobalId, SinkStatistics)>,
    },
    /// A source or sink changed status. A replica leaves `replica_id` unset; an
    /// [`crate::Instance`] sets it on every update it forwards.
    StatusUpdate(StatusUpdate),
}

impl<T> ReplicaResponse<T> {
    /// A short name of the variant, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplicaResponse::FrontierUppers(_) => "frontier-uppers",
            ReplicaResponse::DroppedId(_) => "dropped-id",
            ReplicaResponse::StatisticsUpdates { .. } => "statistics-updates",
            ReplicaResponse::StatusUpdate(_) => "status-update",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn replica_parameters_carry_what_replicas_use() {
        let params = StorageParameters {
            statistics_interval: Some(Duration::from_millis(250)),
            sink_batch_max_updates: Some(3),
            status_history_retain_per_id: Some(7),
            ..Default::default()
        };
        let wire = ReplicaParameters::from(&params);
        let expected: BTreeMap<String, String> = [
            ("sink_batch_max_updates", "3"),
            ("statistics_interval_ms", "250"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(wire.params, expected);
        assert!(ReplicaParameters::from(&StorageParameters::default()).is_empty());
    }
}
