//! Conformance suites a team runs against its own implementation of a Strata seam.
//!
//! - [`persist_backend`]: persist's backend suite (re-exported from
//!   `strata-persist-backend`): consensus CAS, append/snapshot/listen, since and upper
//!   rules, leases, fencing, compaction, GC, finalization, bad input and the txns
//!   shard, against any factory of [`PersistClient`](strata_persist_backend::PersistClient)s
//!   of one location; so any `ObjectStore` can be checked through
//!   [`Location::from_store`](strata_persist_backend::Location::from_store).
//! - [`transport`]: the replica transport suite: ordering, independent connections,
//!   the epoch fence, `Hello` first, and closing in both directions, against any
//!   factory that serves a [`ReplicaHandler`](strata_instance_client::ReplicaHandler)
//!   and returns a [`ReplicaConnector`](strata_instance_client::ReplicaConnector) to it.
//!
//! Every suite function panics with a message naming the broken rule, like an
//! assertion in a test.

pub mod transport;

/// The persist backend conformance suite, from `strata-persist-backend`.
///
/// # Examples
///
/// ```
/// use futures::FutureExt;
/// use strata_persist_backend::{PersistClient, PersistConfig};
/// use strata_testkit::conformance::persist_backend;
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() {
///     let url = format!("mem://doc-{}", uuid::Uuid::new_v4().simple());
///     let factory = move || {
///         let url = url.clone();
///         async move {
///             PersistClient::open_with_config(&url, PersistConfig::for_tests())
///                 .await
///                 .expect("memory locations always open")
///         }
///         .boxed()
///     };
///     persist_backend::cas_semantics(&factory).await;
/// }
/// ```
pub mod persist_backend {
    pub use strata_persist_backend::conformance::*;
}
