//! Sinks: read a collection from `as_of` (snapshot, then listen) and write it out with
//! exactly-once progress.
//!
//! A sink runs as a one-operator timely dataflow whose operator only worker 0 keeps
//! alive. Destinations: `file::FileSink` (NDJSON of `(row, time, diff)` with a progress
//! marker) and, with the `persist` feature, `object_store::ObjectStoreSink` (Parquet
//! files per time range under a prefix).
//!
//! A sink reports its upper (`FrontierUpper` for the sink's id) as its destination
//! durably advances: the controller holds the sink's input one step behind it, so a
//! sink that reports nothing would pin its input's since.

pub(crate) mod dataflow;
pub mod file;
#[cfg(feature = "persist")]
pub mod object_store;

use std::path::PathBuf;

use strata_controller_api::{GlobalId, ShardId, SinkConnection, Timestamp};
use strata_instance_client::RunSinkCommand;

use crate::shard::{ShardError, frontier_time};

/// A validated sink.
#[derive(Debug, Clone)]
pub(crate) struct SinkPlan {
    pub(crate) id: GlobalId,
    pub(crate) shard: ShardId,
    pub(crate) as_of: Timestamp,
    pub(crate) with_snapshot: bool,
    pub(crate) target: SinkTarget,
}

/// Where a sink writes.
#[derive(Debug, Clone)]
pub(crate) enum SinkTarget {
    /// NDJSON in a local file.
    File(PathBuf),
    /// Parquet files under an object-store prefix.
    #[cfg(feature = "persist")]
    Object(object_store::ObjectTarget),
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
        }
    }
}

fn check_path(path: &str) -> Result<PathBuf, SinkError> {
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

/// Validates a sink command into a plan.
pub(crate) fn plan_sink(cmd: &RunSinkCommand<Timestamp>) -> Result<SinkPlan, SinkError> {
    let desc = &cmd.description;
    let target = match &desc.connection {
        SinkConnection::File { path } => SinkTarget::File(check_path(path)?),
        SinkConnection::ObjectStore { url, prefix } => object_target(url, prefix, cmd)?,
    };
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
        target,
    })
}

#[cfg(feature = "persist")]
fn object_target(
    url: &str,
    prefix: &str,
    cmd: &RunSinkCommand<Timestamp>,
) -> Result<SinkTarget, SinkError> {
    let bad = |reason: String| SinkError::BadPath {
        path: format!("{url} {prefix}"),
        reason,
    };
    strata_persist_backend::location::LocationSpec::parse(url).map_err(|e| bad(e.to_string()))?;
    if prefix.trim_matches('/').is_empty() {
        return Err(bad("the prefix is empty".into()));
    }
    Ok(SinkTarget::Object(object_store::ObjectTarget {
        url: url.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
        desc: cmd.from_metadata.relation_desc.clone(),
    }))
}

#[cfg(not(feature = "persist"))]
fn object_target(
    url: &str,
    _prefix: &str,
    _cmd: &RunSinkCommand<Timestamp>,
) -> Result<SinkTarget, SinkError> {
    Err(SinkError::Unsupported(format!(
        "object-store sink to {url} needs the persist feature"
    )))
}
