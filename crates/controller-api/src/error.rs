//! [`StorageError`]: every failure a controller caller can act on, typed; and
//! [`UpperMismatch`], the expected outcome of a compare-and-append that lost a race.

use std::sync::Arc;

use timely::progress::Antichain;

use crate::ids::{GlobalId, InstanceId, ReplicaId};
use crate::row::RowMismatch;
use crate::timestamp::Timestamp;

/// A boxed error from a lower layer, cheap to clone so that one result can be handed
/// to many waiters.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Whether an operation that failed may still have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Certainty {
    /// It certainly did not happen; a retry is safe.
    Determinate,
    /// It may have happened; a retry must be idempotent or check first.
    Indeterminate,
}

/// A compare-and-append whose expected upper was not the shard's upper; nothing was
/// written. Not a failure of the store: the caller lost a race and may retry from
/// `current`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upper mismatch: the shard's upper is {current:?}")]
pub struct UpperMismatch<T = Timestamp> {
    /// The shard's upper when the append was refused.
    pub current: Antichain<T>,
}

/// The controller's error type.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError<T = Timestamp> {
    /// No collection, export or object with this id exists.
    #[error("collection identifier is not present: {0}")]
    IdentifierMissing(GlobalId),
    /// The id exists but is of the wrong kind for the operation.
    #[error("collection identifier is invalid for this operation: {0}")]
    IdentifierInvalid(GlobalId),
    /// The id is already in use with a different description.
    #[error("collection identifier reused with a different description: {0}")]
    CollectionIdReused(GlobalId),
    /// The sink id is already in use with a different description.
    #[error("sink identifier reused with a different description: {0}")]
    SinkIdReused(GlobalId),
    /// The same id appears more than once in one call.
    #[error("collection identifier appears more than once: {0}")]
    DuplicateId(GlobalId),
    /// A write at or beyond the collection's upper.
    #[error("append at or beyond the upper of {0}")]
    UpdateBeyondUpper(GlobalId),
    /// A table write whose `advance_to` is not after its `write_ts`: the upper would not
    /// move past the write.
    #[error(
        "append_table needs write_ts < advance_to, got write_ts {write_ts:?} and advance_to {advance_to:?}"
    )]
    InvalidAdvance {
        /// The time of the write.
        write_ts: T,
        /// The upper the write asked for.
        advance_to: T,
    },
    /// A write whose time is before the collection's upper: it can never be applied.
    #[error("append to {id} at {write_ts:?} is before its upper {upper:?}")]
    UpdateBeforeUpper {
        /// The collection.
        id: GlobalId,
        /// The time of the write.
        write_ts: T,
        /// The collection's current upper.
        upper: Antichain<T>,
    },
    /// A read, hold or since at a time the collection has already compacted past.
    #[error("read of {id} before its since {since:?}")]
    ReadBeforeSince {
        /// The collection.
        id: GlobalId,
        /// The collection's since.
        since: Antichain<T>,
    },
    /// A row that does not match the collection's schema.
    #[error("row for {id} does not match its description: {mismatch}")]
    InvalidRow {
        /// The collection.
        id: GlobalId,
        /// What is wrong with the row.
        mismatch: RowMismatch,
    },
    /// The controller is in read-only mode.
    #[error("the controller is in read-only mode")]
    ReadOnly,
    /// No instance with this id exists.
    #[error("instance does not exist: {0}")]
    InstanceMissing(InstanceId),
    /// An instance with this id already exists.
    #[error("instance already exists: {0}")]
    InstanceExists(InstanceId),
    /// A replica with this id is already connected to the instance.
    #[error("replica {replica} already exists on instance {instance}")]
    ReplicaExists {
        /// The instance.
        instance: InstanceId,
        /// The replica.
        replica: ReplicaId,
    },
    /// No replica with this id exists on the instance.
    #[error("replica {replica} does not exist on instance {instance}")]
    ReplicaMissing {
        /// The instance.
        instance: InstanceId,
        /// The replica.
        replica: ReplicaId,
    },
    /// A newer controller, with a higher epoch, has taken over.
    #[error("fenced by a controller with epoch {current}, ours is {ours}")]
    Fenced {
        /// This controller's epoch.
        ours: u64,
        /// The epoch that fenced it.
        current: u64,
    },
    /// Real-time recency could not learn the upstream frontier in time.
    #[error("real-time recency timed out for {0}")]
    RtrTimeout(GlobalId),
    /// Real-time recency asked an ingestion's upstream how far it has got, and the
    /// upstream probe failed.
    #[error("real-time recency could not ask the upstream of {id}: {reason}")]
    RtrUpstream {
        /// The ingestion.
        id: GlobalId,
        /// Why the probe failed.
        reason: String,
    },
    /// The controller or the collection is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// An alter that the object cannot take in place (for an ingestion: a new
    /// description that changes its kind or its outputs).
    #[error("{id} cannot be altered this way: {reason}")]
    IncompatibleAlter {
        /// The object.
        id: GlobalId,
        /// What the alter would change that it may not.
        reason: String,
    },
    /// The call breaks the API's rules in a way no other variant names.
    #[error("invalid usage: {0}")]
    InvalidUsage(String),
    /// A persist operation failed.
    #[error("persist error ({certainty:?}): {source}")]
    Persist {
        /// Whether the operation may have happened.
        certainty: Certainty,
        /// The underlying error.
        source: SharedError,
    },
    /// Talking to a replica failed.
    #[error("transport error: {source}")]
    Transport {
        /// The underlying error.
        source: SharedError,
    },
}

/// A `Result` whose error is [`StorageError`].
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl<T> StorageError<T> {
    /// Wraps a persist-layer error.
    pub fn persist(
        certainty: Certainty,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StorageError::Persist {
            certainty,
            source: Arc::new(source),
        }
    }

    /// Wraps a transport-layer error.
    pub fn transport(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StorageError::Transport {
            source: Arc::new(source),
        }
    }

    /// Whether the failed operation may have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            StorageError::Persist { certainty, .. } => *certainty,
            StorageError::Transport { .. } => Certainty::Indeterminate,
            _ => Certainty::Determinate,
        }
    }
}
