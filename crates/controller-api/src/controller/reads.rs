//! [`Reads`]: snapshots, read policies, read holds and real-time recency.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use timely::progress::Antichain;

use crate::controller::values::{
    RtrFuture, SnapshotCursor, SnapshotFuture, SnapshotPartsStats, SnapshotStats,
};
use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::read_hold::{ReadHold, ReadHoldError};
use crate::read_policy::ReadPolicy;
use crate::row::Row;
use crate::timestamp::StorageTimestamp;

/// Reading collections, and controlling how far back they stay readable.
///
/// # Contract
///
/// - A read at `as_of` needs `since <= as_of`; before the since it fails with
///   [`StorageError::ReadBeforeSince`]. At or beyond the upper it waits until the upper
///   passes `as_of`. Reads of tables first apply every txns-shard commit at or before
///   `as_of`.
/// - Results are consolidated: each row appears once, with its non-zero accumulated
///   diff.
/// - The returned futures and streams do not borrow the controller. They do not hold
///   the collection's since back; a caller that needs that acquires a [`ReadHold`] first.
/// - [`Reads::set_read_policy`] takes effect at once: the implied capability moves to
///   the join of its current value and the policy's advice for the current upper. It
///   never moves back.
/// - [`Reads::acquire_read_holds`] returns holds at each collection's current since; it
///   is all or nothing.
#[async_trait]
pub trait Reads<T: StorageTimestamp>: Send + Sync {
    /// The contents of `id` at `as_of`.
    fn snapshot(&self, id: GlobalId, as_of: T) -> SnapshotFuture<T>;

    /// The contents of `id` at the latest complete time (one before its upper). An
    /// empty collection (upper at the minimum) gives no rows; a closed collection (upper
    /// `[]`) fails with [`StorageError::InvalidUsage`].
    async fn snapshot_latest(&mut self, id: GlobalId) -> Result<Vec<(Row, i64)>, StorageError<T>>;

    /// The contents of `id` at `as_of`, streamed about one part at a time, so memory is
    /// bounded by about one part however large the collection. Each chunk is
    /// consolidated on its own; the chunks together consolidate to
    /// [`Reads::snapshot`] (a row may appear in more than one chunk, with diffs that
    /// add up). The collection stays readable at `as_of` while the cursor lives.
    async fn snapshot_cursor(
        &mut self,
        id: GlobalId,
        as_of: T,
    ) -> Result<SnapshotCursor<T>, StorageError<T>>;

    /// Statistics about the snapshot of `id` at `as_of`, from shard metadata only:
    /// [`SnapshotStats::num_updates`] is an upper bound (see there). For a table, the
    /// commits at or before `as_of` are linked into its shard first, so none is missed.
    async fn snapshot_stats(
        &self,
        id: GlobalId,
        as_of: Antichain<T>,
    ) -> Result<SnapshotStats, StorageError<T>>;

    /// The parts the snapshot of `id` at `as_of` reads, with their sizes, from shard
    /// metadata only (after the same linking as [`Reads::snapshot_stats`]).
    async fn snapshot_parts_stats(
        &self,
        id: GlobalId,
        as_of: Antichain<T>,
    ) -> Result<SnapshotPartsStats, StorageError<T>>;

    /// Sets the read policies of collections. Fails with
    /// [`StorageError::IdentifierMissing`] if any is unknown, and then sets none.
    fn set_read_policy(
        &mut self,
        policies: Vec<(GlobalId, ReadPolicy<T>)>,
    ) -> Result<(), StorageError<T>>;

    /// One read hold per id, in the order asked, each at the collection's current since.
    fn acquire_read_holds(
        &mut self,
        ids: Vec<GlobalId>,
    ) -> Result<Vec<ReadHold<T>>, ReadHoldError<T>>;

    /// A time at which every update the upstream systems of `ids` had committed when
    /// this is called is visible. Ids that are not ingestions that can answer (a load
    /// generator, or a registered connector whose kind has an
    /// [`UpstreamProbe`](crate::UpstreamProbe) in the controller) are ignored; with none
    /// left the future resolves to the minimum time. A
    /// source that cannot answer within `timeout` fails the future with
    /// [`StorageError::RtrTimeout`]; an upstream probe that fails, with
    /// [`StorageError::RtrUpstream`].
    async fn real_time_recency_timestamp(
        &mut self,
        ids: BTreeSet<GlobalId>,
        timeout: Duration,
    ) -> Result<RtrFuture<T>, StorageError<T>>;
}
