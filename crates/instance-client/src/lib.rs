//! # strata-instance-client
//!
//! The controller's side of talking to storage replicas, and the server half a replica
//! plugs its command handler into.
//!
//! **Owns**:
//! - the replica protocol: `proto/strata/replica.proto`, the generated code under
//!   `src/generated/` (committed, written by `cargo xtask codegen`; xtask's
//!   `generated_code_is_fresh` test regenerates it and fails when it is stale), the Rust
//!   types in
//!   [`protocol`] and the validating conversions in [`convert`]. Wire-only types are
//!   named for the replica ([`ReplicaResponse`], [`ReplicaParameters`]); values the
//!   controller's callers see too ([`StatusUpdate`], [`Status`], [`SourceStatistics`],
//!   [`SinkStatistics`]) are `strata-controller-api`'s, re-exported here, and instance
//!   operations fail with its `StorageError`;
//! - [`CommandHistory`]: the reducible log replayed to every new or reconnecting replica;
//! - [`Instance`]: a set of replicas, with reconnection, replay, sink scheduling and
//!   response merging;
//! - transports behind the [`ReplicaConnector`] and [`ReplicaHandler`] traits: `local`
//!   (tokio channels, the default feature) and `grpc` (tonic, the `grpc` feature);
//! - behind the non-default `testing` feature, `testing`: command builders, proptest
//!   strategies, a connection-counting connector, bounded waits and `soak_factor` for
//!   tests of this and other crates (this crate's integration tests require it).
//!
//! **Must never depend on**: `strata-controller-core`, `strata-replica`, persist or any
//! other Strata crate except `strata-controller-api`.
//!
//! **Invariants**:
//! - nothing that arrives from a peer reaches a panic: malformed messages become
//!   [`ProtoError`]s and close only that connection;
//! - a [`CommandHistory`]'s length stays within `2 * live + 32` after every push, where
//!   an object (ingestion or sink) stays live until every replica has confirmed its drop
//!   (the [`Instance`] calls [`CommandHistory::forget_dropped`] when a `DroppedId` is
//!   final), weighted by its collections (see [`history`]); reduction work is amortised
//!   O(1) per push, and replaying the history is equivalent to replaying everything
//!   ever pushed;
//! - a replica obeys only the highest controller epoch it has seen;
//! - per collection, the upper an [`Instance`] reports never regresses.

pub mod convert;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod history;
pub mod instance;
#[cfg(feature = "local")]
pub mod local;
pub mod protocol;
pub mod transport;

#[cfg(all(test, feature = "local"))]
mod scenarios;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The generated prost messages of the `strata.replica` proto package.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod proto {
    include!("generated/strata.replica.rs");
}

/// The generated tonic client and server of the `strata.replica` package.
#[cfg(feature = "grpc")]
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod proto_grpc {
    include!("generated/strata.replica.grpc.rs");
}

pub use convert::ProtoError;
pub use history::CommandHistory;
pub use instance::{ConnectionObserver, Instance, InstanceResponse, UpperList};
#[cfg(feature = "local")]
pub use local::LocalConnector;
pub use protocol::{
    ReplicaParameters, ReplicaResponse, RunIngestionCommand, RunSinkCommand, StorageCommand,
};
/// The caller-facing values the protocol carries as they are.
pub use strata_controller_api::{SinkStatistics, SourceStatistics, Status, StatusUpdate};
pub use transport::{
    CommandReceiver, EpochFence, Hello, ReplicaConnection, ReplicaConnector, ReplicaHandler,
    ResponseSender, TransportError,
};
