//! # strata-replica
//!
//! The replica runtime: the process that runs the ingestion and sink dataflows the
//! controller schedules, on timely workers, and writes their output to persist shards.
//!
//! **Owns**: the deterministic load generators ([`generator`]); later the timely runtime,
//! remap-shard bindings, sinks and the protocol handler that plugs into
//! `strata-instance-client`'s server half.
//!
//! **Must never depend on**: `strata-controller-core`, `strata-testkit`, `strata-cli`.
//!
//! **Invariants**: a generator's output at offset `n` depends only on its configuration
//! and `n`, so a restarted source that resumes at an offset reproduces exactly what a
//! clean run would have written.

pub mod generator;
