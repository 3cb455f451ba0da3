//! [`TxnsError`]: every failure of the txns shard, typed.

use strata_controller_api::ShardId;

use crate::error::PersistError;

/// An error of a [`TxnsHandle`](super::TxnsHandle) operation.
///
/// A commit timestamp that is not beyond the txns upper is not an error but an
/// [`UpperMismatch`](crate::UpperMismatch) in the `Ok` value, as for
/// `compare_and_append`. Persist failures keep their Determinate/Indeterminate
/// classification: see [`TxnsError::certainty`].
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TxnsError {
    /// A persist operation on the txns shard or a data shard failed.
    #[error(transparent)]
    Persist(#[from] PersistError),
    /// The data shard is not registered (or was forgotten) with the txns shard.
    #[error("{op} of data shard {shard}: it is not registered with txns shard {txns}")]
    NotRegistered {
        /// The txns shard.
        txns: ShardId,
        /// The data shard.
        shard: ShardId,
        /// What was attempted: `write`, `read` or `forget`.
        op: &'static str,
    },
    /// The relation description given does not match the one the shard has.
    #[error("schema mismatch for {shard}: it has {existing}, the caller gave {given}")]
    SchemaMismatch {
        /// The shard (a data shard, or the txns shard itself).
        shard: ShardId,
        /// The description the shard has, as JSON.
        existing: String,
        /// The description given, as JSON.
        given: String,
    },
    /// A data shard cannot be registered at a time before its physical upper.
    #[error(
        "data shard {shard} cannot be registered at {register_ts}: its upper is already {upper}"
    )]
    DataUpperBeyondRegister {
        /// The data shard.
        shard: ShardId,
        /// The requested registration time, rendered.
        register_ts: String,
        /// The data shard's upper, rendered.
        upper: String,
    },
    /// A read that was asked not to wait, at a time the txns upper has not passed.
    #[error("read of {shard} at {as_of} is not yet possible: the txns upper is {upper}")]
    NotYetReadable {
        /// The data shard.
        shard: ShardId,
        /// The requested as_of, rendered.
        as_of: String,
        /// The txns upper, rendered.
        upper: String,
    },
    /// The txns shard holds rows this version cannot interpret.
    #[error("txns shard {txns} is corrupt: {reason}")]
    Corrupt {
        /// The txns shard.
        txns: ShardId,
        /// What was wrong.
        reason: String,
    },
    /// A request that breaks a documented rule (for example a time at the maximum).
    #[error("invalid txns usage: {0}")]
    InvalidUsage(String),
}

impl TxnsError {
    /// Whether the failed operation may still have taken effect.
    pub fn certainty(&self) -> strata_controller_api::Certainty {
        match self {
            TxnsError::Persist(e) => e.certainty(),
            _ => strata_controller_api::Certainty::Determinate,
        }
    }
}

/// A `Result` whose error is [`TxnsError`].
pub type TxnsResult<T, E = TxnsError> = std::result::Result<T, E>;
