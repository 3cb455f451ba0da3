//! # strata-testkit
//!
//! Test support for teams building on Strata.
//!
//! **Owns**:
//! - [`harness`]: [`harness::Harness`], a builder for a real controller (durable
//!   catalog) and N in-process replicas of W workers over the `local` transport, on a
//!   memory, temporary-directory or S3 (feature `s3`) location, with a controllable
//!   clock, read-only start, and optional store and transport faults; helpers
//!   `wait_for_upper`, `wait_until`, `wait_for_replica`, `snapshot_multiset`, `append`,
//!   `restart_controller`, `kill_replica`, `restart_replica`, an auction source
//!   ([`harness::AuctionSource`]) and [`harness::assert_consolidated_eq`];
//! - [`model`]: reference models of Strata's semantics (frontiers and read holds) for
//!   property tests;
//! - [`linearizability`]: a Wing–Gong checker for compare-and-set histories;
//! - [`faults`]: [`faults::FaultyObjectStore`], a seeded fault-injecting decorator for any
//!   `ObjectStore` (errors, latency, indeterminate writes, unavailability windows), and
//!   [`faults::FaultyConnector`] for any replica transport (delays, drops, reordering,
//!   disconnects, refusals), and [`faults::WriteGate`], which refuses and records the
//!   writes a test forbids at the moment they are made (for "nothing is written while
//!   X" tests, instead of sleeping and looking);
//! - [`conformance`]: the persist backend suite (re-exported) and the replica transport
//!   suite, each a public `async fn` taking a factory;
//! - [`strategies`]: proptest strategies for timestamps, frontiers, read policies, ids,
//!   schemas, rows and controller command sequences;
//! - [`init_test_tracing`];
//! - `sim` (feature `sim`): a seeded turmoil simulation of a controller and replicas
//!   over the gRPC transport, with partitions, stalls, crashes and bounces, and checks
//!   that every seed converges exactly.
//!
//! **Must never depend on**: `strata-cli`. Only [`harness`], [`faults::transport`],
//! [`conformance`] and `sim` use the crates they exercise (`strata-controller-core`,
//! `strata-replica`, `strata-instance-client`, `strata-persist-backend`); the models,
//! checkers and strategies must not use the code they check: they depend on
//! `strata-controller-api` only, so controller-core's tests can use them as a
//! dev-dependency (cargo allows that cycle through a dev-dependency).
//!
//! **Invariants**: models and checkers are deterministic, share no code with the
//! implementation they are compared against, and never panic on any input. The
//! harness never installs a tracing subscriber, owns everything it starts (its
//! location is unique per harness, and a temporary directory lives as long as it), and
//! its waits always end: they fail after a timeout with what they waited for and what
//! they last saw.

pub mod conformance;
pub mod faults;
pub mod harness;
pub mod linearizability;
pub mod model;
#[cfg(feature = "sim")]
pub mod sim;
pub mod strategies;
pub mod tracing;

pub use self::tracing::init_test_tracing;
