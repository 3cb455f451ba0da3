//! A replica's metrics: [`Metered`], a [`ReplicaHandler`] decorator that counts the
//! commands a replica receives, and [`Observed`], the replica's observer that counts
//! its commits and messages and sets its dataflow gauge, all in [`ReplicaMetrics`], so
//! `--metrics-addr` shows the replica's work.

use std::sync::Arc;

use async_trait::async_trait;
use strata_controller_api::{GlobalId, Timestamp};
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

/// Puts what a replica reports of its work into [`ReplicaMetrics`].
pub(crate) struct Observed(pub(crate) ReplicaMetrics);

impl strata_replica::ReplicaObserver for Observed {
    fn batch_committed(&self, collection: GlobalId, updates: u64) {
        self.0.batch_committed(&collection.to_string(), updates);
    }

    fn messages_received(&self, source: GlobalId, messages: u64) {
        self.0.messages_received(&source.to_string(), messages);
    }

    fn dataflows_running(&self, count: usize) {
        self.0.set_dataflows(count);
    }
}
