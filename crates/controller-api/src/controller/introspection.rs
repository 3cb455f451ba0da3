//! [`Introspection`]: what the controller records about itself.

use async_trait::async_trait;

use crate::description::IntrospectionType;
use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::row::Row;
use crate::timestamp::StorageTimestamp;

/// Recording frontiers and other introspection data, and inspecting shard state.
///
/// # Contract
///
/// - Introspection collections are written only when the controller is writable;
///   in read-only mode these calls buffer or drop updates, and never fail for that reason.
/// - [`Introspection::record_frontiers`] makes the `Frontiers` and `ReplicaFrontiers`
///   collections match the current frontiers, retracting the rows it recorded before.
/// - [`Introspection::append_introspection_updates`] is for the append-only kinds
///   (status and metrics history); a differential kind fails with
///   [`StorageError::InvalidUsage`]. Rows must match the collection's schema
///   ([`StorageError::InvalidRow`]).
#[async_trait]
pub trait Introspection<T: StorageTimestamp>: Send + Sync {
    /// Records the current frontiers of every collection and replica.
    fn record_frontiers(&mut self);

    /// Appends updates to an append-only introspection collection.
    fn append_introspection_updates(
        &mut self,
        kind: IntrospectionType,
        updates: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>>;

    /// The persist state of the collection's data shard, as JSON, for debugging.
    async fn inspect_persist_state(
        &self,
        id: GlobalId,
    ) -> Result<serde_json::Value, StorageError<T>>;
}
