//! [`Tables`]: writing tables through the txns shard.

use async_trait::async_trait;

use crate::controller::values::{AppendFuture, MonotonicAppender, TableWrite};
use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::row::RelationDesc;
use crate::timestamp::StorageTimestamp;

/// Writes to tables and append-only collections.
///
/// # Contract
///
/// - [`Tables::append_table`] commits all its writes atomically at `write_ts`, with one
///   compare-and-append on the txns shard, and advances every table's upper to
///   `advance_to`. `write_ts < advance_to` is required whenever a write is non-empty,
///   otherwise it fails with [`StorageError::InvalidAdvance`]. Rows must match the
///   table's description ([`StorageError::InvalidRow`]).
/// - Validation errors are returned immediately and nothing is written; durability
///   errors come through the returned [`AppendFuture`].
/// - In read-only mode every write fails with [`StorageError::ReadOnly`], except writes
///   to migrated collections. A table may be dropped while read-only: the drop is
///   recorded at once, and the table leaves the txns shard (which the writable
///   controller owns until then) and its shard is finalized once writes are allowed.
/// - [`Tables::drop_tables`] is durable when it returns: the catalog no longer maps the
///   ids and lists their shards as unfinalized, so a controller that starts after a
///   crash finalizes them and the ids stay gone. Re-creating a dropped id later gets a
///   fresh, empty shard.
/// - A dropped table accepts no further writes; reads at times before the drop's `ts`
///   stay valid while read holds allow them. Its shard is finalized once the last hold
///   is released; until then, creating the id again fails with
///   [`StorageError::CollectionIdReused`].
#[async_trait]
pub trait Tables<T: StorageTimestamp>: Send + Sync {
    /// Writes rows to tables at `write_ts` and advances their uppers to `advance_to`.
    /// The future resolves when the write is durable.
    fn append_table(
        &mut self,
        write_ts: T,
        advance_to: T,
        commands: TableWrite,
    ) -> Result<AppendFuture<T>, StorageError<T>>;

    /// An appender for an append-only collection (a webhook or an append-only
    /// introspection collection). Fails with [`StorageError::IdentifierInvalid`] for
    /// other kinds of collection.
    fn monotonic_appender(&self, id: GlobalId) -> Result<MonotonicAppender<T>, StorageError<T>>;

    /// Changes a table's schema, as `ALTER TABLE … ADD COLUMN` needs: writes with the
    /// old schema stop at `forget_ts`, and writes with `new_desc` start at
    /// `register_ts`. `new_desc` may only add nullable columns at the end (see
    /// [`check_evolution`](crate::check_evolution)); rows written before read back
    /// with NULL in them, and persist readers of the old schema keep working. After a
    /// restart the host passes `new_desc`.
    ///
    /// # Errors
    ///
    /// [`StorageError::IncompatibleAlter`] for any other change, before anything is
    /// changed; [`StorageError::InvalidUsage`] unless `forget_ts < register_ts`;
    /// [`StorageError::ReadOnly`] while read-only.
    async fn alter_table_desc(
        &mut self,
        table_id: GlobalId,
        new_desc: RelationDesc,
        forget_ts: T,
        register_ts: T,
    ) -> Result<(), StorageError<T>>;

    /// Drops tables at `ts`: their uppers close after `ts`. A table fed by a source (an
    /// ingestion export) is dropped like the subsource it is. Returns once the drop is
    /// recorded durably (see the contract). Fails with
    /// [`StorageError::IdentifierInvalid`] if an id is neither, and with the catalog's
    /// error if the drop could not be recorded; on a validation error nothing was
    /// dropped.
    async fn drop_tables(&mut self, ids: Vec<GlobalId>, ts: T) -> Result<(), StorageError<T>>;
}
