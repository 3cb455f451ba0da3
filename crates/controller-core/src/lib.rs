//! # strata-controller-core
//!
//! The storage controller: [`Controller<T>`] implements the controller-api traits over
//! persist-backend and instance-client.
//!
//! **Owns**: the controller ([`controller`]: one registry of collections, the storage
//! task with group commit, bootstrap, reads, drops and finalization, read-only mode
//! and epoch fencing), the frontier and read-hold arithmetic ([`frontiers`]), and the
//! durable catalog ([`catalog`]). Introspection collections (created with
//! `DataSource::Introspection(kind)`) are kept written by a `strata-introspection`
//! `CollectionManager`: shard mapping, frontiers and replica frontiers as differential
//! collections, status histories from replica statuses, and statistics scraped from
//! replica reports.
//!
//! **Must never depend on**: anything that depends on it. The [`frontiers`] module in
//! particular does no I/O and uses no async runtime, persist or transport: it is plain
//! functions over plain data that return effects for the caller to carry out.
//!
//! **Invariants**: a collection's since never regresses and never passes an
//! outstanding read hold; its upper never regresses; the registry is the only store of
//! collection state; an older controller epoch is fenced and writes nothing.

pub mod catalog;
pub mod controller;
#[cfg(feature = "replica")]
pub mod embed;
pub mod frontiers;

pub use controller::{
    CONTROLLER_READER_ID, CatalogFn, ConnectorFactory, Controller, ControllerConfig,
    WAITING_FOR_INITIALIZATION,
};

pub use catalog::{DurableCatalog, DurableStorageTxn};

/// The controller-api vocabulary (traits, ids, rows, descriptions, errors), so that an
/// embedding crate depends on `strata-controller-core` alone.
pub use strata_controller_api as api;
/// The replica transport (connectors, handlers, wire types).
pub use strata_instance_client as instance;
/// Persist: locations, shards and their handles (for inspection and tests).
pub use strata_persist_backend as persist;
/// The replica runtime, with the `replica` feature.
#[cfg(feature = "replica")]
pub use strata_replica as replica;
