//! The task that keeps one replica connected: connect, say Hello, replay the history
//! and make the connection live, then wait for it to end, and reconnect after the
//! shared backoff policy's next delay ([`strata_controller_api::retry`]).
//!
//! A live connection has no task in its path: the instance writes new commands
//! straight into it and reads its responses itself (handed over in
//! [`ReplicaEvent::Connected`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use strata_controller_api::retry::{Backoff, BackoffConfig};
use strata_controller_api::{ReplicaId, StorageTimestamp};
use tokio::sync::{mpsc, oneshot};

use super::Shared;
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::transport::{ReplicaConnection, ReplicaConnector};

/// What a replica task tells its instance.
#[derive(Debug)]
pub(crate) enum ReplicaEvent<T> {
    /// A connection is up, the history up to command `seq` has been replayed into it,
    /// and its responses are the instance's to read.
    Connected { seq: u64, responses: Responses<T> },
    /// The connection is gone; the task reconnects.
    Disconnected,
}

/// The instance's end of a live connection's responses.
#[derive(Debug)]
pub(crate) struct Responses<T> {
    rx: mpsc::UnboundedReceiver<ReplicaResponse<T>>,
    /// Set once a response was read: the connection worked.
    delivered: Arc<AtomicBool>,
    /// Dropped with this end, which tells the task that the responses ended.
    _ended: oneshot::Sender<()>,
}

/// What reading a connection's responses gave: a response, or (`None`) their end.
pub(crate) type Read<T> = Option<ReplicaResponse<T>>;

impl<T> Responses<T> {
    /// The next response, or the end of them, if either is there now.
    pub(crate) fn try_read(&mut self) -> Option<Read<T>> {
        match self.rx.try_recv() {
            Ok(response) => Some(self.delivered(Some(response))),
            Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            Err(mpsc::error::TryRecvError::Empty) => None,
        }
    }

    /// Polls for the next response, or the end of them.
    pub(crate) fn poll_read(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Read<T>> {
        self.rx.poll_recv(cx).map(|read| self.delivered(read))
    }

    /// Records that a response was read: the connection worked.
    fn delivered(&self, read: Read<T>) -> Read<T> {
        if read.is_some() {
            self.delivered.store(true, Ordering::Relaxed);
        }
        read
    }
}

/// Everything a replica task needs.
pub(crate) struct ReplicaTask<T> {
    pub(crate) id: ReplicaId,
    pub(crate) epoch: u64,
    pub(crate) connector: Arc<dyn ReplicaConnector<T>>,
    pub(crate) shared: Arc<Mutex<Shared<T>>>,
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
                    self.lock().live.remove(&self.id);
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

    /// Serves one connection until it ends; returns whether any response arrived on it.
    async fn serve(&mut self, connection: ReplicaConnection<T>) -> bool {
        let Some(seq) = self.replay(&connection) else {
            return false;
        };
        let ReplicaConnection {
            commands,
            responses,
        } = connection;
        let delivered = Arc::new(AtomicBool::new(false));
        let (ended, responses_ended) = oneshot::channel();
        let responses = Responses {
            rx: responses,
            delivered: Arc::clone(&delivered),
            _ended: ended,
        };
        let connected = ReplicaEvent::Connected { seq, responses };
        if self.events.send((self.id, connected)).is_err() {
            return false;
        }
        // The connection ends when the instance has read the end of its responses, or
        // when the transport stops taking commands.
        tokio::select! {
            _ = responses_ended => {}
            () = commands.closed() => {}
        }
        delivered.load(Ordering::Relaxed)
    }

    /// Sends `Hello` and the reduced history as this replica should see it into the
    /// connection, and makes it live: from then on the instance sends each new command
    /// straight into it. Returns the sequence number of the last command replayed, or
    /// `None` if the connection is already gone.
    fn replay(&self, connection: &ReplicaConnection<T>) -> Option<u64> {
        let nonce = uuid::Uuid::new_v4().as_u64_pair().0;
        let hello = StorageCommand::Hello {
            nonce,
            epoch: self.epoch,
        };
        let mut shared = self.lock();
        shared.history.reduce();
        let hosts_sinks = shared.sink_host == Some(self.id);
        let replay = shared.history.iter().filter(|c| match c {
            StorageCommand::Hello { .. } => false,
            StorageCommand::RunSink(_) => hosts_sinks,
            _ => true,
        });
        for command in std::iter::once(&hello).chain(replay) {
            if connection.commands.send(command.clone()).is_err() {
                return None;
            }
            if let Some(observer) = &self.observer {
                observer.command_sent(self.id, command.kind());
            }
        }
        shared.live.insert(self.id, connection.commands.clone());
        Some(shared.seq)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared<T>> {
        Shared::lock(&self.shared)
    }
}
