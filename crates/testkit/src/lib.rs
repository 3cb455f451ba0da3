//! # strata-testkit
//!
//! Test support for teams building on Strata.
//!
//! **Owns** today: [`model`], reference models of Strata's semantics (frontiers and
//! read holds) for property tests, and [`linearizability`], a Wing–Gong checker for
//! compare-and-set histories. The rest of what DESIGN.md lists for this crate (the
//! `Harness` builder, fault injection, conformance suites, proptest strategies and
//! simulations) is to come.
//!
//! **Must never depend on**: `strata-controller-core`. The models must stay
//! independent of the code they check, and controller-core's tests depend on this crate.
//!
//! **Invariants**: a model is deterministic and shares no code with the implementation
//! it is compared against.

pub mod faults;
pub mod linearizability;
pub mod model;
pub mod strategies;
pub mod tracing;

pub use self::tracing::init_test_tracing;
