//! # strata-persist-backend
//!
//! Durable shards on object storage, in the spirit of Materialize persist, on one
//! `object_store` abstraction: `mem://name` (always built), `file:///path` (feature
//! `file`, default, fsynced) and `s3://bucket/prefix` (feature `s3`).
//!
//! **Owns**: the shard format (consensus log of prost-encoded states, Parquet parts),
//! the shard state machine, the write/read/since handles, compaction, GC, finalization,
//! inspection, and a public conformance suite ([`conformance`]).
//!
//! **Must never depend on**: any Strata crate but `strata-controller-api`; a tracing
//! subscriber; a specific async runtime beyond tokio's primitives.
//!
//! **Invariants**:
//! - every state change is a pure command (the private `cmds` module) committed by a
//!   compare-and-set of the next seqno ([`consensus`]); a shard's history is
//!   linearizable;
//! - an acknowledged append is durable and appears exactly once, even across
//!   indeterminate storage errors; a commit whose outcome is unknown stays in doubt
//!   until a later state's ring of commit tokens settles it, and is never reported as
//!   a conflict;
//! - a shard's upper and since never regress;
//! - a part is deleted only when no state a live reader may still read references it;
//! - the cost of an append is bounded by the state size, which compaction, lease
//!   pruning, the inline cap and GC keep independent of the shard's history;
//! - input from callers or storage never panics: every failure is a [`PersistError`].
//!
//! Layout (every key is built and parsed by the private `paths` module):
//! `strata-format` (the consensus format marker), `shards/{shard}/head` (the
//! register's head: an object on memory and S3, a file under `head.lock` on local
//! files), `shards/{shard}/parts/{writer}/{uuid}` (Parquet parts),
//! `txns/{txns}/parts/{shard}/{uuid}` (txns batches not yet applied). Locations written
//! in the older log format keep `shards/{shard}/state/{seqno:020}` (versions),
//! `shards/{shard}/boundary/{seqno:020}` and `shards/{shard}/fence/{slot:020}` (see
//! [`consensus::log`]).

mod batch;
mod blob;
mod client;
mod cmds;
mod columns;
pub mod config;
pub mod conformance;
pub mod consensus;
mod consolidate;
mod critical;
pub mod error;
pub mod inspect;
mod lease;
pub mod location;
mod machine;
pub mod maintenance;
pub mod part;
mod part_fetch;
mod part_write;
mod paths;
mod read;
#[cfg(feature = "s3")]
mod s3_errors;
mod staging;
mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod txns;
mod update;
mod write;

pub use batch::Batch;
pub use client::PersistClient;
pub use config::PersistConfig;
pub use critical::{OpaqueMismatch, SinceHandle};
pub use error::{CodecError, ExternalError, LocationError, PersistError, Result};
pub use inspect::{BatchInspect, PartInspect, ShardInspect};
pub use location::Location;
pub use maintenance::GcReport;
pub use read::{Listen, ListenEvent, ReadHandle, SnapshotCursor};
pub use update::{CodedUpdate, SourceData, Update, frontier_code, frontier_of, time_code, time_of};
pub use write::{UpperMismatch, WriteFence, WriteHandle};
