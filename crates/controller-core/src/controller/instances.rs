//! [`Instances`]: instances and their replicas, reached through instance-client. Each
//! instance carries the controller's epoch, which its replicas see in `Hello`, so a
//! newer controller fences this one on the replicas too.

use std::sync::Arc;

use strata_controller_api::{
    InstanceId, Instances, ReplicaConfig, ReplicaId, StorageError, StorageTimestamp,
};
use strata_instance_client::{Instance, ReplicaParameters, StorageCommand};

use super::Controller;

impl<T: StorageTimestamp> Instances<T> for Controller<T> {
    fn create_instance(&mut self, id: InstanceId) -> Result<(), StorageError<T>> {
        if self.instances.contains_key(&id) {
            return Err(StorageError::InstanceExists(id));
        }
        let metered = super::metered::Metered::new(self.config.metrics.controller.clone(), id);
        let mut instance =
            Instance::new(id, self.epoch, self.config.backoff).with_observer(Arc::new(metered));
        let params = ReplicaParameters::from(&self.parameters);
        if !params.is_empty() {
            instance.send(StorageCommand::UpdateConfiguration(params));
        }
        if self.initialized {
            instance.send(StorageCommand::InitializationComplete);
        }
        if !self.read_only {
            instance.send(StorageCommand::AllowWrites);
        }
        self.instances.insert(id, instance);
        Ok(())
    }

    fn drop_instance(&mut self, id: InstanceId) -> Result<(), StorageError<T>> {
        let instance = self
            .instances
            .remove(&id)
            .ok_or(StorageError::InstanceMissing(id))?;
        let replicas: Vec<ReplicaId> = instance.replica_ids().collect();
        let mut instance = instance;
        for replica in replicas {
            let _ = instance.drop_replica(replica);
            self.introspection_replica_dropped(replica);
        }
        self.pending.retain(|(instance_id, _)| *instance_id != id);
        Ok(())
    }

    fn connect_replica(
        &mut self,
        instance_id: InstanceId,
        replica_id: ReplicaId,
        config: ReplicaConfig,
    ) -> Result<(), StorageError<T>> {
        let factory = self.config.connector_factory.clone();
        let instance = self
            .instances
            .get_mut(&instance_id)
            .ok_or(StorageError::InstanceMissing(instance_id))?;
        if instance.replica_ids().any(|r| r == replica_id) {
            return Err(StorageError::ReplicaExists {
                instance: instance_id,
                replica: replica_id,
            });
        }
        let factory = factory.ok_or_else(|| {
            StorageError::InvalidUsage("the controller has no replica connector factory".into())
        })?;
        let connector = factory(&config)?;
        instance.add_replica(replica_id, connector)
    }

    fn drop_replica(
        &mut self,
        instance_id: InstanceId,
        replica_id: ReplicaId,
    ) -> Result<(), StorageError<T>> {
        self.instances
            .get_mut(&instance_id)
            .ok_or(StorageError::InstanceMissing(instance_id))?
            .drop_replica(replica_id)?;
        self.introspection_replica_dropped(replica_id);
        Ok(())
    }
}
