//! # strata-replica
//!
//! The replica runtime: the process that runs the ingestion and sink dataflows the
//! controller schedules, on timely workers, and writes their output to persist shards.
//!
//! **Owns**:
//! - the command handler [`Replica`]: epochs, replay and [`reconcile`], the write gate
//!   (`AllowWrites`), `AllowCompaction`, configuration; responses leave through a
//!   [`ResponseSink`] (the "command in / response out" seam);
//! - the timely runtime (`W` workers, optionally several processes via
//!   [`ClusterConfig`]), ingestion dataflows ([`ingest`]) and sink dataflows ([`sink`]);
//! - the connector API ([`connector`]: [`connector::SourceConnector`],
//!   [`connector::SourceReader`] and the [`connector::ConnectorRegistry`] a replica is
//!   given at start-up), with the deterministic load generators ([`generator`]) as its
//!   built-ins, and remap bindings ([`remap`]);
//! - the shard seam ([`shard`]: [`shard::ShardWriter`], [`shard::ShardReader`],
//!   [`shard::ShardSince`]) with an in-memory backend and a fault-injecting decorator;
//! - `tracing` spans with the collection id, shard and epoch on the command handler,
//!   every dataflow operator and every persist call (docs/OPERATIONS.md, "Following an
//!   ingestion in the logs"); the crate never installs a subscriber.
//!
//! **Features** (additive): `persist` adds [`shard::persist::PersistShards`], the seam
//! over `strata-persist-backend`, and the object-store (Parquet) sink; `server` adds
//! `server::ReplicaServer`, which plugs the handler into instance-client's
//! `ReplicaHandler` so its `local` and `grpc` transports can serve it.
//!
//! **Must never depend on**: `strata-controller-core`, `strata-testkit`, `strata-cli`.
//!
//! **Invariants**:
//! - a source's reader re-reads the same updates for the same offsets, so a restarted
//!   source that resumes at an offset reproduces exactly what a clean run would have
//!   written (a generator's output at offset `n` depends only on its configuration and
//!   `n`);
//! - a binding is minted in the remap shard before its data is written, and the data of
//!   a round is written with one `compare_and_append` per data shard, so every offset
//!   lands exactly once whatever crashes or races happen;
//! - nothing is written to a shard before `AllowWrites`;
//! - the upper reported for a collection only advances, per connection;
//! - nothing the controller sends reaches a panic: an object the replica cannot run is
//!   reported `Stalled` and everything else keeps running.

pub mod connector;
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
mod trace;

pub use context::{Clock, FaultHook, FaultPoint, ReplicaObserver, ResponseSink, system_clock};
pub use replica::{DEFAULT_MAX_TICKS_PER_ROUND, Replica, ReplicaConfig, ReplicaError};
pub use runtime::ClusterConfig;
