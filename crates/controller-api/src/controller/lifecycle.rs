//! [`Lifecycle`]: the controller's modes, configuration and event loop.

use async_trait::async_trait;

use crate::controller::parameters::StorageParameters;
use crate::controller::values::StorageResponse;
use crate::error::StorageError;
use crate::timestamp::StorageTimestamp;

/// Starting up, switching to writable, configuration, and the event loop.
///
/// # Contract
///
/// - A controller starts read-only: it tracks collections and serves reads but writes
///   nothing except migrated collections. [`Lifecycle::allow_writes`] makes it writable
///   (once; later calls are no-ops) and starts the ingestions, exports and introspection
///   writes it deferred.
/// - [`Lifecycle::initialization_complete`] tells the controller and its replicas that
///   bootstrap has created every collection, so replicas may drop what the new
///   controller did not re-create.
/// - The event loop is `loop { ready().await; process(..)? }`. [`Lifecycle::ready`] is
///   cancel-safe: dropping its future loses nothing, so it can sit in a `select!`.
///   [`Lifecycle::process`] never blocks; it handles what `ready` found.
/// - Parameters are merged with [`StorageParameters::update`] and forwarded to every
///   replica, including replicas that connect later.
#[async_trait]
pub trait Lifecycle<T: StorageTimestamp>: Send + Sync {
    /// Marks the end of bootstrap.
    fn initialization_complete(&mut self);

    /// Leaves read-only mode. `register_ts` is the time at which tables created in
    /// read-only mode become writable; it is required if there are any.
    async fn allow_writes(&mut self, register_ts: Option<T>) -> Result<(), StorageError<T>>;

    /// Whether the controller is read-only.
    fn is_read_only(&self) -> bool;

    /// Merges `params` into the configuration and sends it to every replica.
    fn update_parameters(&mut self, params: StorageParameters);

    /// The current, merged configuration.
    fn parameters(&self) -> &StorageParameters;

    /// Waits until there is something for [`Lifecycle::process`] to do. Cancel-safe.
    async fn ready(&mut self);

    /// Handles what [`Lifecycle::ready`] found: frontier reports, dropped ids, status,
    /// statistics, pending compaction. Returns what the caller may want to know.
    fn process(&mut self) -> Result<Option<StorageResponse<T>>, StorageError<T>>;
}
