//! # strata-testkit
//!
//! Test support for teams building on Strata.
//!
//! **Owns** today:
//! - [`model`]: reference models of Strata's semantics (frontiers and read holds) for
//!   property tests;
//! - [`linearizability`]: a Wing–Gong checker for compare-and-set histories;
//! - [`faults`]: [`faults::FaultyObjectStore`], a seeded fault-injecting decorator for any
//!   `ObjectStore` (errors, latency, indeterminate writes, unavailability windows);
//! - [`strategies`]: proptest strategies for timestamps, frontiers, read policies, ids,
//!   schemas and rows;
//! - [`init_test_tracing`].
//!
//! Still to come with its issue: the `Harness` builder, the faulty transport, the
//! re-exported conformance suites and the `sim` feature's simulations.
//!
//! **Must never depend on**: `strata-cli`. The models and checkers must not use the
//! code they check: they depend on `strata-controller-api` only, so controller-core's
//! tests can use them as a dev-dependency even once the harness depends on
//! controller-core.
//!
//! **Invariants**: models and checkers are deterministic, share no code with the
//! implementation they are compared against, and never panic on any input.

pub mod faults;
pub mod harness;
pub mod linearizability;
pub mod model;
pub mod strategies;
pub mod tracing;

pub use self::tracing::init_test_tracing;
