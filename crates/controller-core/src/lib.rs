//! # strata-controller-core
//!
//! The storage controller: `Controller<T>` implements the controller-api traits over
//! persist-backend and instance-client. Today the crate holds its pure core; the
//! controller itself is to come.
//!
//! **Owns**: the frontier and read-hold arithmetic ([`frontiers`]).
//!
//! **Must never depend on**: anything that depends on it. The [`frontiers`] module in
//! particular does no I/O and uses no async runtime, persist or transport: it is plain
//! functions over plain data that return effects for the caller to carry out.
//!
//! **Invariants**: a collection's since never regresses and never passes an
//! outstanding read hold; its upper never regresses.

pub mod catalog;
pub mod controller;
pub mod frontiers;

pub use controller::{CatalogFn, ConnectorFactory, Controller, ControllerConfig, CONTROLLER_READER_ID};

pub use catalog::{DurableCatalog, DurableStorageTxn};
