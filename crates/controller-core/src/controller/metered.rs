//! Counting what crosses each replica connection: [`MeteredConnector`] wraps any
//! transport's connector and counts every command sent and every response received,
//! by kind, in the controller's metrics (`strata_commands_sent_total` and
//! `strata_responses_total`, labelled with the instance and the replica).
//!
//! It forwards through two channels of its own, in order, and ends each side when the
//! other end does, so the connection behaves exactly as the inner one.

use std::sync::Arc;

use async_trait::async_trait;
use strata_controller_api::{InstanceId, ReplicaId, StorageTimestamp};
use strata_instance_client::{ReplicaConnection, ReplicaConnector, StorageCommand, TransportError};
use strata_introspection::ControllerMetrics;
use tokio::sync::mpsc;

/// A connector whose connections count their traffic.
pub(crate) struct MeteredConnector<T> {
    inner: Arc<dyn ReplicaConnector<T>>,
    metrics: ControllerMetrics,
    instance: String,
    replica: String,
}

impl<T> MeteredConnector<T> {
    pub(crate) fn wrap(
        inner: Arc<dyn ReplicaConnector<T>>,
        metrics: ControllerMetrics,
        instance: InstanceId,
        replica: ReplicaId,
    ) -> Self {
        MeteredConnector {
            inner,
            metrics,
            instance: instance.to_string(),
            replica: replica.to_string(),
        }
    }
}

#[async_trait]
impl<T: StorageTimestamp> ReplicaConnector<T> for MeteredConnector<T> {
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError> {
        let ReplicaConnection {
            commands,
            mut responses,
        } = self.inner.connect().await?;
        let (command_tx, mut command_rx) = mpsc::unbounded_channel::<StorageCommand<T>>();
        let (response_tx, response_rx) = mpsc::unbounded_channel();
        let (metrics, instance, replica) = (
            self.metrics.clone(),
            self.instance.clone(),
            self.replica.clone(),
        );
        tokio::spawn(async move {
            while let Some(command) = command_rx.recv().await {
                metrics.command_sent(&instance, &replica, command.kind());
                if commands.send(command).is_err() {
                    return;
                }
            }
        });
        let (metrics, instance, replica) = (
            self.metrics.clone(),
            self.instance.clone(),
            self.replica.clone(),
        );
        tokio::spawn(async move {
            while let Some(response) = responses.recv().await {
                metrics.response_received(&instance, &replica, response.kind());
                if response_tx.send(response).is_err() {
                    return;
                }
            }
        });
        Ok(ReplicaConnection {
            commands: command_tx,
            responses: response_rx,
        })
    }

    fn target(&self) -> String {
        self.inner.target()
    }
}
