//! Errors: every failure of this crate, typed, and whether a retry is safe.

use strata_controller_api::{Certainty, RowMismatch, ShardId};

/// A failure of the object store underneath consensus or blob.
///
/// **Determinate** means the operation certainly did not happen; **Indeterminate** means
/// it may have happened, so a retry must be idempotent (every write here is).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalError {
    /// The operation certainly did not take effect.
    #[error("determinate storage error during {op}: {message}")]
    Determinate {
        /// What was being done.
        op: &'static str,
        /// The underlying error, rendered.
        message: String,
    },
    /// The operation may have taken effect.
    #[error("indeterminate storage error during {op}: {message}")]
    Indeterminate {
        /// What was being done.
        op: &'static str,
        /// The underlying error, rendered.
        message: String,
    },
}

impl ExternalError {
    /// Whether the operation may have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            ExternalError::Determinate { .. } => Certainty::Determinate,
            ExternalError::Indeterminate { .. } => Certainty::Indeterminate,
        }
    }

    pub(crate) fn determinate(op: &'static str, err: impl std::fmt::Display) -> Self {
        ExternalError::Determinate {
            op,
            message: err.to_string(),
        }
    }

    pub(crate) fn indeterminate(op: &'static str, err: impl std::fmt::Display) -> Self {
        ExternalError::Indeterminate {
            op,
            message: err.to_string(),
        }
    }
}

/// A location URL that cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// The text is not a URL.
    #[error("malformed location url {url:?}: {reason}")]
    Malformed {
        /// The text given.
        url: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The scheme is not `mem`, `file` or `s3`.
    #[error("unknown location scheme {scheme:?} in {url:?}")]
    UnknownScheme {
        /// The scheme found.
        scheme: String,
        /// The URL given.
        url: String,
    },
    /// The scheme is known but its cargo feature is not enabled.
    #[error("location scheme {scheme:?} needs the {feature:?} cargo feature")]
    FeatureDisabled {
        /// The scheme.
        scheme: String,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// The bucket (or directory) does not exist or cannot be reached.
    #[error("location {url:?} is not reachable: {reason}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The location's format marker names a consensus this store does not use.
    #[error(
        "location {url:?} holds shards in the {found:?} consensus format, but this store uses \
         {expected:?}; open it with the store it was written with, or use a new location"
    )]
    Format {
        /// The URL given.
        url: String,
        /// The format the marker names.
        found: String,
        /// The format this store uses.
        expected: String,
    },
}

/// Bytes read from storage that do not decode: a corrupt state object or part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A shard state (or consensus envelope) that does not decode.
    #[error("corrupt state object {key}: {reason}")]
    State {
        /// The object key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A Parquet part that does not decode or does not match the relation.
    #[error("corrupt part {key}: {reason}")]
    Part {
        /// The object key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// Every error a persist handle or client returns.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The location could not be parsed or opened.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// Object storage failed.
    #[error(transparent)]
    External(#[from] ExternalError),
    /// Stored bytes are corrupt.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The shard was finalized; it accepts no more operations.
    #[error("shard {shard} is finalized (tombstone)")]
    Tombstoned {
        /// The shard.
        shard: ShardId,
    },
    /// `expected_upper` is not less than or equal to `new_upper`.
    #[error("invalid upper on {shard}: expected_upper {expected:?} is beyond new_upper {new:?}")]
    InvalidUppers {
        /// The shard.
        shard: ShardId,
        /// The expected upper, rendered.
        expected: String,
        /// The new upper, rendered.
        new: String,
    },
    /// An update's time lies outside `[lower, upper)` of its batch.
    #[error("update on {shard} at {time} is outside the batch bounds [{lower}, {upper})")]
    UpdateOutOfBounds {
        /// The shard.
        shard: ShardId,
        /// The update's time, rendered.
        time: String,
        /// The batch lower, rendered.
        lower: String,
        /// The batch upper, rendered.
        upper: String,
    },
    /// A new version of the shard's relation that cannot replace the current one.
    #[error("the schema of {shard} cannot change so: {reason}")]
    IncompatibleSchema {
        /// The shard.
        shard: ShardId,
        /// Why.
        reason: strata_controller_api::IncompatibleSchema,
    },
    /// A row that does not match the shard's relation description.
    #[error("row for {shard} does not match its description: {mismatch}")]
    InvalidRow {
        /// The shard.
        shard: ShardId,
        /// What is wrong with the row.
        mismatch: RowMismatch,
    },
    /// A read at a time the shard has already compacted past.
    #[error("read of {shard} at {as_of} is before its since {since}")]
    ReadBeforeSince {
        /// The shard.
        shard: ShardId,
        /// The requested as_of, rendered.
        as_of: String,
        /// The since, rendered.
        since: String,
    },
    /// The handle's lease expired and its registration was removed.
    #[error("{kind} {id} of shard {shard} has expired")]
    LeaseExpired {
        /// The shard.
        shard: ShardId,
        /// `reader` or `writer`.
        kind: &'static str,
        /// The handle id.
        id: String,
    },
    /// `finalize` needs `since = upper = []`.
    #[error(
        "shard {shard} cannot be finalized: since {since} and upper {upper} must both be empty"
    )]
    NotFinalizable {
        /// The shard.
        shard: ShardId,
        /// The since, rendered.
        since: String,
        /// The upper, rendered.
        upper: String,
    },
    /// A batch written for one shard linked into another, or otherwise misused.
    #[error("invalid usage: {0}")]
    InvalidUsage(String),
    /// The shard was never written: an operation that needs its state found none
    /// (opening a handle creates it; inspecting does not).
    #[error("shard {shard} is not initialized")]
    NotInitialized {
        /// The shard.
        shard: ShardId,
    },
    /// The writer is fenced: the shard's critical reader `reader` no longer holds the
    /// opaque this writer was told to expect, so a newer owner has taken over. Nothing
    /// was written.
    #[error(
        "writes to {shard} are fenced: critical reader {reader} holds opaque {current}, this writer expects {expected}"
    )]
    Fenced {
        /// The shard.
        shard: ShardId,
        /// The critical reader whose opaque fences writes.
        reader: String,
        /// The opaque this writer expects.
        expected: u64,
        /// The opaque the critical reader holds (0 if it is not registered).
        current: u64,
    },
    /// Too many conflicting writers; the operation did not happen.
    #[error("gave up on {shard} after {attempts} conflicting attempts")]
    Contention {
        /// The shard.
        shard: ShardId,
        /// How many attempts were made.
        attempts: usize,
    },
}

impl PersistError {
    /// Whether the failed operation may still have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            PersistError::External(e) => e.certainty(),
            _ => Certainty::Determinate,
        }
    }
}

/// A `Result` whose error is [`PersistError`].
pub type Result<T, E = PersistError> = std::result::Result<T, E>;
