//! [`Exports`]: sinks that write a collection to the outside world.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::description::{ExportDescription, SinkConnection};
use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::timestamp::StorageTimestamp;

/// Creating, altering and dropping exports (sinks).
///
/// # Contract
///
/// - An export holds a read hold on its `from` collection at its `as_of` (or later, as
///   it progresses), so `from` stays readable where the sink still needs it. Creating an
///   export whose `as_of` is before `from`'s since fails with
///   [`StorageError::ReadBeforeSince`].
/// - Creating is idempotent like [`Collections`](crate::Collections): an equal
///   description is a no-op, a different one fails with [`StorageError::SinkIdReused`].
/// - Exports run on their instance's replicas unless the controller is read-only; they
///   start when writes are allowed.
/// - Dropping an export releases its read hold; the replicas stop it.
#[async_trait]
pub trait Exports<T: StorageTimestamp>: Send + Sync {
    /// Creates and starts exports.
    async fn create_exports(
        &mut self,
        exports: Vec<(GlobalId, ExportDescription<T>)>,
    ) -> Result<(), StorageError<T>>;

    /// Replaces an export's description and restarts it. The new `from` must be
    /// readable at the new `as_of`.
    async fn alter_export(
        &mut self,
        id: GlobalId,
        new_description: ExportDescription<T>,
    ) -> Result<(), StorageError<T>>;

    /// Replaces the connections of exports, restarting each whose connection changed.
    async fn alter_export_connections(
        &mut self,
        exports: BTreeMap<GlobalId, SinkConnection>,
    ) -> Result<(), StorageError<T>>;

    /// Drops exports. Fails with [`StorageError::IdentifierMissing`] if any is unknown,
    /// and then drops none. An export keeps no durable state of its own in the
    /// controller (its progress lives in the sink's target), so the drop is complete
    /// when the call returns.
    fn drop_sinks(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>>;

    /// Like [`Exports::drop_sinks`], but ids that are unknown or already dropped are
    /// skipped instead of failing. Fails only with [`StorageError::Fenced`].
    fn drop_sinks_unvalidated(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>>;

    /// The description of a live export, as created or last altered.
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] if `id` is not a live export.
    fn export(&self, id: GlobalId) -> Result<ExportDescription<T>, StorageError<T>>;
}
