//! The replica's seam to durable shards.
//!
//! The replica needs four things from persist: the upper of a shard, a
//! `compare_and_append` that either appends or reports the current upper, a consolidated
//! snapshot, and a listen step (every update from a frontier up to the current upper).
//! Plus `downgrade_since` for `AllowCompaction`. [`Shards`] bundles them. The traits are
//! synchronous because timely operators are: an adapter over an async persist client
//! blocks on its own runtime.
//!
//! Backends: [`memory::MemShards`] (always built) and [`faults::Faulty`], a decorator
//! that injects determinate and indeterminate failures for crash tests.

pub mod faults;
pub mod memory;
#[cfg(feature = "persist")]
pub mod persist;

use strata_controller_api::{Antichain, Certainty, RelationDesc, Row, ShardId, Timestamp};

/// One update of a collection: `(row, time, diff)`.
pub type Update = (Row, Timestamp, i64);

/// A `compare_and_append` whose expected upper did not match the shard's upper: the
/// vocabulary's one type, as persist returns it.
pub use strata_controller_api::UpperMismatch;

/// A failure of a shard operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// The backend failed. `certainty` says whether the operation may have happened.
    #[error("shard {shard} unavailable ({certainty:?}): {reason}")]
    Unavailable {
        /// The shard.
        shard: ShardId,
        /// What went wrong.
        reason: String,
        /// Whether the operation may have taken effect.
        certainty: Certainty,
    },
    /// The caller broke the operation's contract (for example an update outside
    /// `[expected_upper, new_upper)`). Determinate: nothing happened.
    #[error("invalid use of shard {shard}: {reason}")]
    InvalidUsage {
        /// The shard.
        shard: ShardId,
        /// What was wrong.
        reason: String,
    },
    /// A read at a time the shard has already compacted. Determinate.
    #[error("read of shard {shard} at {as_of} is before its since {since:?}")]
    ReadBeforeSince {
        /// The shard.
        shard: ShardId,
        /// The requested time.
        as_of: Timestamp,
        /// The shard's since.
        since: Antichain<Timestamp>,
    },
}

impl ShardError {
    /// Whether the failed operation may have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            ShardError::Unavailable { certainty, .. } => *certainty,
            ShardError::InvalidUsage { .. } | ShardError::ReadBeforeSince { .. } => {
                Certainty::Determinate
            }
        }
    }
}

/// Writes to shards.
///
/// # Contract
///
/// - `compare_and_append` is atomic: either every update is appended and the upper
///   becomes `new_upper`, or nothing changes.
/// - It returns `Ok(Err(UpperMismatch))` exactly when the shard's upper differs from
///   `expected_upper`; nothing was written then.
/// - Every update's time must be beyond `expected_upper` and not beyond `new_upper`,
///   and `new_upper` must be beyond `expected_upper`.
/// - The upper of a shard never regresses. A shard that was never written has upper
///   `[Timestamp::minimum()]`.
pub trait ShardWriter: Send + Sync {
    /// Tells the backend the schema of `shard` before the replica reads or writes it.
    /// Backends that do not need schemas ignore it.
    fn register_schema(&self, shard: ShardId, desc: &RelationDesc) {
        let _ = (shard, desc);
    }

    /// The shard's current upper.
    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError>;

    /// Lets background work that writes started (compaction, GC) finish, within a
    /// bound, and gives up every lease. The replica calls it once its workers have
    /// stopped, so that an exit leaves nothing half written. Backends without
    /// background work ignore it.
    fn close(&self) {}

    /// Appends `updates` if the shard's upper is `expected_upper`, and advances it to
    /// `new_upper`.
    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError>;
}

/// Reads shards.
///
/// # Contract
///
/// - `snapshot(as_of)` returns `Ok(None)` while `as_of` is not before the upper (the
///   caller waits), and otherwise the consolidated contents at `as_of`, every time
///   advanced to `as_of`.
/// - `listen_from(lower)` returns every update at a time `t` with `lower <= t < upper`
///   and the `upper` it read at; repeated calls with the returned upper as the next
///   `lower` see every update exactly once.
pub trait ShardReader: Send + Sync {
    /// The consolidated contents at `as_of`, or `None` if `as_of` is not yet readable.
    fn snapshot(&self, shard: ShardId, as_of: Timestamp)
    -> Result<Option<Vec<Update>>, ShardError>;

    /// Every update from `lower` up to the current upper, and that upper.
    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError>;
}

/// Holds back compaction of shards.
///
/// # Contract
///
/// `downgrade_since` never moves a since backwards: a frontier not beyond the current
/// since is a no-op.
///
/// `release` gives up every handle this process holds on the shard (expiring leased
/// readers and writers), so none of them holds the shard's since back any longer; the
/// replica calls it once a collection is dropped, before it reports `DroppedId`. It is
/// best effort and idempotent: a later use reopens handles. Backends that hold no
/// handles (the memory backend, the fault decorator over it) keep the no-op default.
pub trait ShardSince: Send + Sync {
    /// Allows the shard to compact up to `since`.
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError>;

    /// Releases every handle held on `shard`; a no-op by default.
    fn release(&self, shard: ShardId) {
        let _ = shard;
    }
}

/// Everything the replica needs from persist.
pub trait Shards: ShardWriter + ShardReader + ShardSince {}

impl<S: ShardWriter + ShardReader + ShardSince> Shards for S {}

/// Sums the diffs of equal rows and drops rows that net to zero, sorted by row.
pub fn consolidate_rows(updates: impl IntoIterator<Item = (Row, i64)>) -> Vec<(Row, i64)> {
    let mut acc = std::collections::BTreeMap::new();
    for (row, diff) in updates {
        *acc.entry(row).or_insert(0i64) += diff;
    }
    acc.into_iter().filter(|(_, diff)| *diff != 0).collect()
}

/// The single time of a total-order frontier, or `None` for the empty frontier.
pub fn frontier_time(frontier: &Antichain<Timestamp>) -> Option<Timestamp> {
    frontier.elements().first().copied()
}

impl<S: ShardWriter + ?Sized> ShardWriter for std::sync::Arc<S> {
    fn register_schema(&self, shard: ShardId, desc: &RelationDesc) {
        (**self).register_schema(shard, desc);
    }

    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError> {
        (**self).upper(shard)
    }

    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError> {
        (**self).compare_and_append(shard, updates, expected_upper, new_upper)
    }
}

impl<S: ShardReader + ?Sized> ShardReader for std::sync::Arc<S> {
    fn snapshot(
        &self,
        shard: ShardId,
        as_of: Timestamp,
    ) -> Result<Option<Vec<Update>>, ShardError> {
        (**self).snapshot(shard, as_of)
    }

    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError> {
        (**self).listen_from(shard, lower)
    }
}

impl<S: ShardSince + ?Sized> ShardSince for std::sync::Arc<S> {
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError> {
        (**self).downgrade_since(shard, since)
    }

    fn release(&self, shard: ShardId) {
        (**self).release(shard);
    }
}
