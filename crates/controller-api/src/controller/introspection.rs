//! [`Introspection`]: what the controller records about itself.

use async_trait::async_trait;

use crate::controller::write_op::StorageWriteOp;
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
///   (status and metrics history, statement logging); a differential kind fails with
///   [`StorageError::InvalidUsage`]. Rows must match the collection's schema
///   ([`StorageError::InvalidRow`]).
/// - [`Introspection::update_introspection_collection`] is for the differential kinds
///   a coordinator writes (the `Compute*` kinds): the controller keeps their desired
///   contents, also while read-only, and its collection manager brings every
///   collection of the kind to them once writable, retracting whatever else the shard
///   holds. A controller starts with empty desired contents, so after a restart the
///   coordinator writes them again. The controller's own kinds, and append-only kinds,
///   fail with [`StorageError::InvalidUsage`]; rows must match the schema.
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

    /// Changes the desired contents of every collection of a differential kind that a
    /// coordinator writes (see the contract).
    fn update_introspection_collection(
        &mut self,
        kind: IntrospectionType,
        op: StorageWriteOp,
    ) -> Result<(), StorageError<T>>;

    /// The persist state of the collection's data shard, as JSON, for debugging.
    async fn inspect_persist_state(
        &self,
        id: GlobalId,
    ) -> Result<serde_json::Value, StorageError<T>>;
}
