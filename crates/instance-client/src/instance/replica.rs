//! The task that keeps one replica connected: connect, say Hello, replay the history,
//! forward live commands and responses, and on failure reconnect after the shared
//! backoff policy's next delay ([`strata_controller_api::retry`]).

use std::sync::{Arc, Mutex};

use strata_controller_api::retry::{Backoff, BackoffConfig};
use strata_controller_api::{ReplicaId, StorageTimestamp};
use tokio::sync::mpsc;

use super::Shared;
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::transport::{ReplicaConnection, ReplicaConnector};

/// What a replica task tells its instance.
#[derive(Debug)]
pub(crate) enum ReplicaEvent<T> {
    /// A connection is up and the history up to command `seq` has been replayed.
    Connected { seq: u64 },
    /// A response on the current connection.
    Response(ReplicaResponse<T>),
    /// The connection is gone; the task reconnects.
    Disconnected,
}

/// Everything a replica task needs.
pub(crate) struct ReplicaTask<T> {
    pub(crate) id: ReplicaId,
    pub(crate) epoch: u64,
    pub(crate) connector: Arc<dyn ReplicaConnector<T>>,
    pub(crate) shared: Arc<Mutex<Shared<T>>>,
    pub(crate) inbox: mpsc::UnboundedReceiver<(u64, StorageCommand<T>)>,
    pub(crate) events: mpsc::UnboundedSender<(ReplicaId, ReplicaEvent<T>)>,
    /// How long to wait between connection attempts; a connection that carried
    /// responses starts it over.
    pub(crate) backoff: BackoffConfig,
    pub(crate) observer: Option<Arc<dyn super::ConnectionObserver>>,
}

impl<T: StorageTimestamp> ReplicaTask<T> {
    /// Runs until the instance goes away or aborts the task.
    pub(crate) async fn run(mut self) {
        let mut backoff = Backoff::new(self.backoff);
        loop {
            match self.connector.connect().await {
                Ok(connection) => {
                    let delivered = self.serve(connection).await;
                    if self
                        .events
                        .send((self.id, ReplicaEvent::Disconnected))
                        .is_err()
                    {
                        return;
                    }
                    // A connection that carried responses worked: start the backoff over.
                    if delivered {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    tracing::info!(replica = %self.id, target = %self.connector.target(), error = %e, "replica connection failed");
                }
            }
            if self.events.is_closed() {
                return;
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Serves one connection; returns whether any response arrived on it.
    async fn serve(&mut self, mut connection: ReplicaConnection<T>) -> bool {
        let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
        let (replay, seq) = self.replay();
        let hello = StorageCommand::Hello {
            nonce,
            epoch: self.epoch,
        };
        for command in std::iter::once(hello).chain(replay) {
            if !self.send(&connection, command) {
                return false;
            }
        }
        if self
            .events
            .send((self.id, ReplicaEvent::Connected { seq }))
            .is_err()
        {
            return false;
        }
        let mut delivered = false;
        loop {
            tokio::select! {
                item = self.inbox.recv() => match item {
                    Some((s, _)) if s <= seq => {}
                    Some((_, command)) => {
                        if !self.send(&connection, command) {
                            return delivered;
                        }
                    }
                    None => return delivered,
                },
                response = connection.responses.recv() => match response {
                    Some(response) => {
                        delivered = true;
                        if let Some(observer) = &self.observer {
                            observer.response_received(self.id, response.kind());
                        }
                        if self.events.send((self.id, ReplicaEvent::Response(response))).is_err() {
                            return delivered;
                        }
                    }
                    None => return delivered,
                },
            }
        }
    }

    /// Sends `command` on `connection`, telling the observer; false once it is gone.
    fn send(&self, connection: &ReplicaConnection<T>, command: StorageCommand<T>) -> bool {
        let kind = command.kind();
        let sent = connection.commands.send(command).is_ok();
        if sent && let Some(observer) = &self.observer {
            observer.command_sent(self.id, kind);
        }
        sent
    }

    /// The reduced history as this replica should see it, and the sequence number of
    /// the last command it includes.
    fn replay(&self) -> (Vec<StorageCommand<T>>, u64) {
        let mut shared = match self.shared.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        };
        shared.history.reduce();
        let hosts_sinks = shared.sink_host == Some(self.id);
        let replay = shared
            .history
            .iter()
            .filter(|c| match c {
                StorageCommand::Hello { .. } => false,
                StorageCommand::RunSink(_) => hosts_sinks,
                _ => true,
            })
            .cloned()
            .collect();
        (replay, shared.seq)
    }
}
