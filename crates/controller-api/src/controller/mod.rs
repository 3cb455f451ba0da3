//! The controller surface, split into small cohesive traits joined by the supertrait
//! [`StorageController`], plus the durable catalog seam [`StorageTxn`] and the values
//! these traits exchange.
//!
//! | trait | what it covers |
//! |---|---|
//! | [`Collections`] | create for bootstrap, alter, drop, metadata, frontiers, `check_exists` |
//! | [`Tables`] | `append_table`, `monotonic_appender`, `alter_table_desc`, `drop_tables` |
//! | [`Exports`] | create, alter, alter connections, drop sinks |
//! | [`Instances`] | create/drop instance, connect/drop replica |
//! | [`Reads`] | snapshots, stats, `set_read_policy`, `acquire_read_holds`, real-time recency |
//! | [`Lifecycle`] | `initialization_complete`, `allow_writes`, `update_parameters`, `ready`, `process` |
//! | [`Introspection`] | record frontiers, append introspection updates, `inspect_persist_state` |
//! | [`StorageTxn`] | the durable catalog: id → shard mapping, txns shard, epoch |
//!
//! Every trait is generic over the timestamp `T` and dyn-compatible, so a host may hold
//! a `Box<dyn StorageController<T>>`. Callers that need only part of the surface take the
//! narrower trait.

mod collections;
mod exports;
mod instances;
mod introspection;
mod lifecycle;
mod parameters;
mod reads;
mod storage_txn;
mod tables;
mod values;
mod write_op;

pub use collections::Collections;
pub use exports::Exports;
pub use instances::Instances;
pub use introspection::Introspection;
pub use lifecycle::Lifecycle;
pub use parameters::StorageParameters;
pub use reads::Reads;
pub use storage_txn::{
    BufferedTxn, CatalogContents, CatalogStore, MemoryCatalog, MemoryStorageTxn, StorageMetadata,
    StorageTxn, insert_collection_metadata_checked, prepare_initialization,
    write_txns_shard_checked,
};
pub use tables::Tables;
pub use values::{
    AppendFn, AppendFuture, CollectionFrontiers, MonotonicAppender, ReplicaConfig, ReplicaLocation,
    RtrFuture, SnapshotCursor, SnapshotFuture, SnapshotPartStats, SnapshotPartsStats,
    SnapshotStats, Status, StatusUpdate, StorageResponse, TableWrite,
};
pub use write_op::StorageWriteOp;

use crate::timestamp::StorageTimestamp;

/// The whole controller surface: everything `strata-controller-core`'s `Controller`
/// implements.
///
/// It has no methods of its own; every type that implements all the parts implements it
/// automatically.
///
/// # Contract
///
/// The contracts of the parts, plus:
/// - one controller owns a set of collections; two controllers with the same catalog are
///   fenced by [`StorageTxn::epoch`], and the older one fails with
///   [`StorageError::Fenced`](crate::StorageError::Fenced) instead of writing;
/// - no method panics on input from callers, replicas or storage.
pub trait StorageController<T: StorageTimestamp>:
    Collections<T> + Tables<T> + Exports<T> + Instances<T> + Reads<T> + Lifecycle<T> + Introspection<T>
{
}

impl<T, C> StorageController<T> for C
where
    T: StorageTimestamp,
    C: Collections<T>
        + Tables<T>
        + Exports<T>
        + Instances<T>
        + Reads<T>
        + Lifecycle<T>
        + Introspection<T>
        + ?Sized,
{
}

#[cfg(test)]
mod tests;
