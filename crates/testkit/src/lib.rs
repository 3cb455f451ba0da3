//! # strata-testkit
//!
//! Test support for teams building on Strata.
//!
//! **Owns** today:
//! - [`harness`]: [`harness::Harness`], a builder for a real controller (durable
//!   catalog) and N in-process replicas of W workers over the `local` transport, on a
//!   memory, temporary-directory or S3 (feature `s3`) location, with a controllable
//!   clock and read-only start; helpers `wait_for_upper`, `wait_until`,
//!   `wait_for_replica`, `snapshot_multiset`, `append`, `restart_controller`,
//!   `kill_replica`, `restart_replica`, and [`harness::assert_consolidated_eq`];
//! - [`model`]: reference models of Strata's semantics (frontiers and read holds) for
//!   property tests;
//! - [`linearizability`]: a Wing–Gong checker for compare-and-set histories;
//! - [`faults`]: [`faults::FaultyObjectStore`], a seeded fault-injecting decorator for any
//!   `ObjectStore` (errors, latency, indeterminate writes, unavailability windows);
//! - [`strategies`]: proptest strategies for timestamps, frontiers, read policies, ids,
//!   schemas and rows;
//! - [`init_test_tracing`].
//!
//! Still to come with its issue: the faulty transport, the re-exported conformance
//! suites and the `sim` feature's simulations.
//!
//! **Must never depend on**: `strata-cli`. Only [`harness`] uses `strata-controller-core`
//! and `strata-replica`; the models, checkers and strategies must not use the code they
//! check: they depend on `strata-controller-api` only, so controller-core's tests can
//! use them as a dev-dependency (cargo allows that cycle through a dev-dependency).
//!
//! **Invariants**: models and checkers are deterministic, share no code with the
//! implementation they are compared against, and never panic on any input. The
//! harness never installs a tracing subscriber, owns everything it starts (its
//! location is unique per harness, and a temporary directory lives as long as it), and
//! its waits always end: they fail after a timeout with what they waited for and what
//! they last saw.

pub mod faults;
pub mod harness;
pub mod linearizability;
pub mod model;
pub mod strategies;
pub mod tracing;

pub use self::tracing::init_test_tracing;
