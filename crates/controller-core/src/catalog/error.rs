//! [`CatalogError`]: every failure of the durable catalog, typed, and how it maps onto
//! [`StorageError`].

use std::sync::Arc;

use strata_controller_api::{Certainty, ShardId, StorageError};
use strata_persist_backend::PersistError;

/// A failure of [`DurableCatalog`](super::DurableCatalog) or its transactions.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A newer controller claimed the catalog: its epoch is `current`, ours is `ours`.
    /// Determinate: nothing was written.
    #[error("catalog fenced by epoch {current}, ours is {ours}")]
    Fenced {
        /// The epoch of this catalog instance.
        ours: u64,
        /// The newer epoch found in the metadata shard.
        current: u64,
    },
    /// A row of the metadata shard does not decode, or contradicts another row.
    /// Determinate: nothing was written.
    #[error("corrupt catalog row in metadata shard {shard}: {row}: {reason}")]
    CorruptRow {
        /// The metadata shard.
        shard: ShardId,
        /// The row, rendered.
        row: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The transaction's changes contradict a commit made since it began (the same id
    /// mapped to another shard, a shard reused, another txns shard). Determinate:
    /// nothing was written.
    #[error("catalog commit conflicts with a concurrent commit on {shard}: {reason}")]
    Conflict {
        /// The metadata shard.
        shard: ShardId,
        /// What conflicts.
        reason: String,
    },
    /// The metadata shard's upper is the empty frontier: it was sealed or finalized and
    /// can hold no more catalog versions.
    #[error("metadata shard {shard} is sealed (its upper is empty)")]
    Sealed {
        /// The metadata shard.
        shard: ShardId,
    },
    /// The epoch cannot grow any further.
    #[error("catalog epoch {epoch} cannot be incremented")]
    EpochOverflow {
        /// The current epoch.
        epoch: u64,
    },
    /// Other writers kept moving the metadata shard's upper. Determinate: nothing was
    /// written.
    #[error("gave up on metadata shard {shard} after {attempts} conflicting attempts")]
    Contention {
        /// The metadata shard.
        shard: ShardId,
        /// How many attempts were made.
        attempts: usize,
    },
    /// A persist operation on the metadata shard failed.
    #[error("persist error on metadata shard {shard} during {op}: {source}")]
    Persist {
        /// The metadata shard.
        shard: ShardId,
        /// What the catalog was doing.
        op: &'static str,
        /// The underlying error; its certainty is the certainty of this error.
        source: PersistError,
    },
}

/// A `Result` whose error is [`CatalogError`].
pub type Result<V, E = CatalogError> = std::result::Result<V, E>;

impl CatalogError {
    /// Whether the failed operation may still have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            CatalogError::Persist { source, .. } => source.certainty(),
            _ => Certainty::Determinate,
        }
    }

    pub(crate) fn persist(shard: ShardId, op: &'static str) -> impl FnOnce(PersistError) -> Self {
        move |source| CatalogError::Persist { shard, op, source }
    }
}

/// `Fenced` becomes [`StorageError::Fenced`], `Conflict` becomes
/// [`StorageError::InvalidUsage`]; every other error becomes
/// [`StorageError::Persist`] with this error as its source (downcast it to tell a
/// corrupt row from a storage failure) and its certainty.
impl<T> From<CatalogError> for StorageError<T> {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Fenced { ours, current } => StorageError::Fenced { ours, current },
            CatalogError::Conflict { .. } => StorageError::InvalidUsage(err.to_string()),
            other => StorageError::Persist {
                certainty: other.certainty(),
                source: Arc::new(other),
            },
        }
    }
}
