//! # strata-replica
//!
//! The replica runtime: the process that runs the ingestion and sink dataflows the
//! controller schedules, on timely workers, and writes their output to persist shards.
//!
//! **Owns**: the deterministic load generators ([`generator`]), remap bindings
//! ([`remap`]), reconciliation of a replayed history ([`reconcile`]), the shard seam
//! ([`shard`]) and its in-memory backend.
//!
//! **Must never depend on**: `strata-controller-core`, `strata-testkit`, `strata-cli`.
//!
//! **Invariants**:
//! - a generator's output at offset `n` depends only on its configuration and `n`, so a
//!   restarted source that resumes at an offset reproduces exactly what a clean run
//!   would have written;
//! - a binding is minted in the remap shard before its data is written, and the data of
//!   a round is written with one `compare_and_append` per data shard, so every offset
//!   lands exactly once whatever crashes or races happen.

mod context;
pub mod generator;
pub mod ingest;
pub mod reconcile;
pub mod remap;
mod replica;
mod runtime;
#[cfg(feature = "server")]
pub mod server;
pub mod shard;
pub mod sink;

pub use context::{Clock, FaultHook, FaultPoint, ResponseSink, system_clock};
pub use replica::{Replica, ReplicaConfig, ReplicaError};
pub use runtime::ClusterConfig;
