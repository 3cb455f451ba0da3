//! [`Metered`]: a [`ReplicaHandler`] decorator that counts the commands a replica
//! receives in [`ReplicaMetrics`], so `--metrics-addr` shows the replica's traffic.

use std::sync::Arc;

use async_trait::async_trait;
use strata_controller_api::Timestamp;
use strata_instance_client::StorageCommand;
use strata_instance_client::transport::{
    CommandReceiver, EpochFence, Hello, ReplicaHandler, ResponseSender,
};
use strata_introspection::ReplicaMetrics;
use tokio::sync::mpsc;

/// Counts every command, then hands it to the inner handler unchanged.
pub(crate) struct Metered {
    /// The handler that runs the commands.
    pub(crate) inner: Arc<dyn ReplicaHandler<Timestamp>>,
    /// Where the counts go.
    pub(crate) metrics: ReplicaMetrics,
}

#[async_trait]
impl ReplicaHandler<Timestamp> for Metered {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let hello_kind = StorageCommand::<Timestamp>::Hello {
            nonce: hello.nonce,
            epoch: hello.epoch,
        }
        .kind();
        self.metrics.command_received(hello_kind);
        // The outer receiver already applies the replica-wide fence; the inner one only
        // needs to admit this connection's epoch so it passes every command through.
        let fence = EpochFence::new();
        if fence.admit(hello.epoch).is_err() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = CommandReceiver::new(rx, fence, hello.epoch);
        let forward = async move {
            while let Some(command) = commands.recv().await {
                self.metrics.command_received(command.kind());
                if tx.send(Ok(command)).is_err() {
                    return;
                }
            }
        };
        tokio::join!(forward, self.inner.serve(hello, inner, responses));
    }
}
