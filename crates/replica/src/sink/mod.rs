//! Sinks: read a collection from `as_of` (snapshot, then listen) and write it out with
//! exactly-once progress, through a [`crate::connector::SinkConnector`].
//!
//! A sink runs as a one-operator timely dataflow whose operator only worker 0 keeps
//! alive (`dataflow`); it owns reading and progress, and the connector's
//! [`SinkWriter`](crate::connector::SinkWriter) owns the destination. Built-in
//! destinations: [`file::FileSinkConnector`] (NDJSON of `(row, time, diff)` with a
//! progress marker) and, with the `persist` feature,
//! [`object_store::ObjectStoreSinkConnector`] (Parquet files per time range under a
//! prefix).
//!
//! A sink reports its upper (in `FrontierUppers`, for the sink's id) as its destination
//! durably advances: the controller holds the sink's input one step behind it, so a
//! sink that reports nothing would pin its input's since.

pub(crate) mod dataflow;
pub mod file;
#[cfg(feature = "persist")]
pub mod object_store;

use std::path::PathBuf;
use std::sync::Arc;

use strata_controller_api::{GlobalId, RelationDesc, ShardId, Timestamp};
use strata_instance_client::RunSinkCommand;

use crate::connector::{ConnectorError, ConnectorRegistry, SinkConnector};
use crate::shard::{ShardError, frontier_time};

/// A validated sink.
#[derive(Clone)]
pub(crate) struct SinkPlan {
    pub(crate) id: GlobalId,
    pub(crate) shard: ShardId,
    pub(crate) as_of: Timestamp,
    pub(crate) with_snapshot: bool,
    pub(crate) desc: RelationDesc,
    pub(crate) connector: Arc<dyn SinkConnector>,
}

impl std::fmt::Debug for SinkPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkPlan")
            .field("id", &self.id)
            .field("shard", &self.shard)
            .field("as_of", &self.as_of)
            .field("with_snapshot", &self.with_snapshot)
            .field("connector", &self.connector.kind())
            .finish_non_exhaustive()
    }
}

/// Why a sink cannot run or stopped making progress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The sink's destination is unusable.
    #[error("bad sink path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// This replica cannot write to the destination kind.
    #[error("unsupported sink connection: {0}")]
    Unsupported(String),
    /// The sink's schema differs from the collection's.
    #[error("schema mismatch: the sink expects {expected} but {from} has {actual}")]
    SchemaMismatch {
        /// The collection.
        from: GlobalId,
        /// The sink's schema.
        expected: String,
        /// The collection's schema.
        actual: String,
    },
    /// `as_of` is the empty frontier.
    #[error("sink as_of is empty")]
    EmptyAsOf,
    /// Reading the collection failed.
    #[error("reading the collection failed: {0}")]
    Shard(#[from] ShardError),
    /// Writing the destination failed.
    #[error("writing {path:?} failed: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The progress marker does not match the output.
    #[error("sink output {path:?} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// An injected crash (tests only).
    #[error("injected crash after writing data")]
    InjectedCrash,
    /// The sink's connector is unknown, misconfigured or failed.
    #[error("{0}")]
    Connector(#[from] ConnectorError),
}

impl SinkError {
    /// A hint for the operator.
    pub fn hint(&self) -> &'static str {
        match self {
            SinkError::BadPath { .. } => {
                "point the sink at a writable file in an existing directory"
            }
            SinkError::Unsupported(_) => {
                "use a file sink, or a replica built with the persist feature"
            }
            SinkError::SchemaMismatch { .. } => {
                "recreate the sink against the collection's current schema"
            }
            SinkError::EmptyAsOf => "create the sink with a readable as_of",
            SinkError::Shard(_) | SinkError::Io { .. } | SinkError::InjectedCrash => {
                "the replica retries"
            }
            SinkError::Corrupt { .. } => {
                "remove the sink's output and its .progress file to restart it"
            }
            SinkError::Connector(
                ConnectorError::UnknownKind { .. } | ConnectorError::DuplicateKind { .. },
            ) => "register the connector with the replica, or run a replica that has it",
            SinkError::Connector(ConnectorError::InvalidConfig { .. }) => {
                "fix the sink's connector settings"
            }
            SinkError::Connector(_) => "the replica retries; check the sink's destination",
        }
    }
}

pub(crate) fn check_path(path: &str) -> Result<PathBuf, SinkError> {
    let bad = |reason: &str| SinkError::BadPath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if path.is_empty() {
        return Err(bad("the path is empty"));
    }
    let buf = PathBuf::from(path);
    if buf.is_dir() {
        return Err(bad("the path is a directory"));
    }
    let parent = buf.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent
        && !parent.is_dir()
    {
        return Err(bad("the parent directory does not exist"));
    }
    Ok(buf)
}

/// Validates a sink command into a plan, with its connector from `registry`.
pub(crate) fn plan_sink(
    cmd: &RunSinkCommand<Timestamp>,
    registry: &ConnectorRegistry,
) -> Result<SinkPlan, SinkError> {
    let desc = &cmd.description;
    let connector = registry.sink(&desc.connection)?;
    if desc.from_desc != cmd.from_metadata.relation_desc {
        return Err(SinkError::SchemaMismatch {
            from: desc.from,
            expected: format!("{:?}", desc.from_desc.names().collect::<Vec<_>>()),
            actual: format!(
                "{:?}",
                cmd.from_metadata.relation_desc.names().collect::<Vec<_>>()
            ),
        });
    }
    let as_of = frontier_time(&desc.as_of).ok_or(SinkError::EmptyAsOf)?;
    Ok(SinkPlan {
        id: cmd.id,
        shard: cmd.from_metadata.data_shard,
        as_of,
        with_snapshot: desc.with_snapshot,
        desc: cmd.from_metadata.relation_desc.clone(),
        connector,
    })
}
