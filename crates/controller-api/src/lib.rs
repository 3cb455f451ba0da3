//! # strata-controller-api
//!
//! The vocabulary of Strata: identifiers, timestamps, the row data model, collection,
//! ingestion and export descriptions, read policies and read holds, the typed
//! [`StorageError`], and the controller traits that `strata-controller-core` implements.
//!
//! **Owns**: value types and trait definitions that every other Strata crate shares:
//! - identifiers ([`ids`]), timestamps ([`timestamp`]), rows ([`row`]), descriptions
//!   ([`description`]), errors ([`error`], with the [`UpperMismatch`] of a
//!   compare-and-append) and replica counters ([`statistics`]);
//! - [`ReadPolicy`] ([`read_policy`]) and [`ReadHold`] ([`read_hold`]);
//! - the one retry policy, capped exponential backoff with full jitter ([`retry`]);
//! - the controller surface ([`controller`]): [`Collections`], [`Tables`], [`Exports`],
//!   [`Instances`], [`Reads`], [`Lifecycle`] and [`Introspection`], joined by
//!   [`StorageController`], and the durable catalog seam [`StorageTxn`] with the
//!   [`CatalogContents`] every catalog records and an in-memory [`MemoryCatalog`] for
//!   tests;
//! - the one seedable generator, [`rng::SplitMix64`], that every fault injector draws
//!   from.
//!
//! **Must never depend on**: any other Strata crate, an async runtime, or anything that
//! does I/O. Frontier types come from `timely::progress`, [`Lattice`] from
//! differential-dataflow. Asynchronous results are boxed `futures` types, so any
//! executor can drive them.
//!
//! **Invariants**:
//! - a [`Row`]'s bytes always decode;
//! - parsing ids and rows from outside input returns errors, never panics;
//! - a [`ReadPolicy`] is a pure function from an upper to a since;
//! - the change batches a [`ReadHold`] sends its issuer net to the holds still alive,
//!   and to zero once all are gone; a hung-up issuer is an error or ignored, never a
//!   panic.
//!
//! [`Lattice`]: differential_dataflow::lattice::Lattice

#[cfg(any(test, feature = "proptest"))]
pub mod arbitrary;
pub mod controller;
pub mod description;
pub mod error;
pub mod evolution;
pub mod ids;
pub mod read_hold;
pub mod read_policy;
pub mod recency;
pub mod retry;
pub mod rng;
pub mod row;
pub mod row_ref;
pub mod statistics;
pub mod timestamp;

pub use controller::CatalogContents;
pub use controller::{
    AppendFn, AppendFuture, BufferedTxn, CatalogStore, CollectionFrontiers, Collections, Exports,
    Instances, Introspection, Lifecycle, MemoryCatalog, MemoryStorageTxn, MonotonicAppender, Reads,
    ReplicaConfig, ReplicaLocation, RtrFuture, SnapshotCursor, SnapshotFuture, SnapshotPartStats,
    SnapshotPartsStats, SnapshotStats, Status, StatusUpdate, StorageController, StorageMetadata,
    StorageParameters, StorageResponse, StorageTxn, StorageWriteOp, TableWrite, Tables,
    insert_collection_metadata_checked, prepare_initialization, write_txns_shard_checked,
};
pub use description::{
    CollectionDescription, CollectionMetadata, ConnectorConfig, DataSource, ExportDescription,
    IngestionDescription, IntrospectionType, LoadGenerator, SinkConnection, SourceConnection,
    SourceOutput,
};
pub use error::{Certainty, Result, SharedError, StorageError, UpperMismatch};
pub use evolution::{IncompatibleSchema, check_evolution};
pub use ids::{GlobalId, IdParseError, InstanceId, ReplicaId, ShardId};
pub use read_hold::{ChangeTx, IssuerGone, ReadHold, ReadHoldError};
pub use read_policy::ReadPolicy;
pub use recency::{DuplicateProbe, ProbeFuture, UpstreamProbe, UpstreamProbes};
pub use row::{
    ColumnType, Datum, RelationDesc, RelationDescBuilder, Row, RowDecodeError, RowMismatch,
    ScalarType,
};
pub use row_ref::{DatumRef, DatumRefs, RowPacker, RowsPacker};
pub use statistics::{SinkStatistics, SourceStatistics};
pub use timestamp::{StorageTimestamp, Timestamp, frontier_advances, set_frontier};

pub use timely::progress::{
    Antichain, ChangeBatch,
    frontier::{AntichainRef, MutableAntichain},
};
