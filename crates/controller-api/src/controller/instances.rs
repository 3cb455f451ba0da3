//! [`Instances`]: sets of replicas that run ingestions and sinks.

use crate::controller::values::ReplicaConfig;
use crate::error::StorageError;
use crate::ids::{InstanceId, ReplicaId};
use crate::timestamp::StorageTimestamp;

/// Creating and dropping instances, and connecting and dropping their replicas.
///
/// # Contract
///
/// - Every command for an instance goes to all its replicas; a replica that connects or
///   reconnects first receives the instance's reduced command history.
/// - Creating an existing instance fails with [`StorageError::InstanceExists`]; any
///   other call on an unknown instance fails with [`StorageError::InstanceMissing`].
/// - Connecting a replica id that is already connected fails with
///   [`StorageError::ReplicaExists`]; dropping an unknown one fails with
///   [`StorageError::ReplicaMissing`].
/// - Connecting does not wait for the replica; a replica that cannot be reached is
///   retried with backoff, and the failure shows in status, not here.
pub trait Instances<T: StorageTimestamp>: Send + Sync {
    /// Creates an instance with no replicas.
    fn create_instance(&mut self, id: InstanceId) -> Result<(), StorageError<T>>;

    /// Drops an instance and disconnects its replicas. Objects still scheduled on it stop
    /// running until it is recreated.
    fn drop_instance(&mut self, id: InstanceId) -> Result<(), StorageError<T>>;

    /// Adds a replica to an instance.
    fn connect_replica(
        &mut self,
        instance_id: InstanceId,
        replica_id: ReplicaId,
        config: ReplicaConfig,
    ) -> Result<(), StorageError<T>>;

    /// Removes a replica from an instance.
    fn drop_replica(
        &mut self,
        instance_id: InstanceId,
        replica_id: ReplicaId,
    ) -> Result<(), StorageError<T>>;
}
