//! The seam between an [`crate::Instance`] and its replicas: [`ReplicaConnector`] on the
//! controller's side, [`ReplicaHandler`] on the replica's side, and the epoch fence
//! between them.
//!
//! A transport moves [`StorageCommand`]s one way and [`ReplicaResponse`]s the other, in
//! order, over one connection at a time. Transports are features: `local` (tokio
//! channels) and `grpc` (tonic).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use strata_controller_api::{Certainty, SharedError};
use tokio::sync::mpsc;

use crate::convert::ProtoError;
use crate::protocol::{ReplicaResponse, StorageCommand};

/// A transport failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The connection could not be established; nothing was delivered.
    #[error("connecting to {target} failed: {source}")]
    Connect {
        /// What was being connected to (an address, or `local`).
        target: String,
        /// The underlying error.
        source: SharedError,
    },
    /// The peer sent a message that does not decode or validate.
    #[error("malformed message from the peer: {source}")]
    Protocol {
        /// What is wrong with the message.
        #[from]
        source: ProtoError,
    },
    /// A connection must start with `Hello`.
    #[error("expected hello as the first command, got {got}")]
    MissingHello {
        /// The kind of the command that came first.
        got: &'static str,
    },
    /// The replica has seen a higher controller epoch.
    #[error("fenced: epoch {epoch} is older than {current}")]
    Fenced {
        /// The epoch the connection presented.
        epoch: u64,
        /// The highest epoch the replica has seen.
        current: u64,
    },
    /// The connection closed.
    #[error("connection closed")]
    Closed,
}

impl TransportError {
    /// Whether commands sent before the failure may have been applied. Only a failed
    /// connection attempt is certain to have delivered nothing.
    pub fn certainty(&self) -> Certainty {
        match self {
            TransportError::Connect { .. } | TransportError::Fenced { .. } => {
                Certainty::Determinate
            }
            _ => Certainty::Indeterminate,
        }
    }
}

/// One open connection to a replica, as the controller sees it.
///
/// Sending on `commands` fails, and `responses` yields `None`, once the connection is
/// gone; the [`crate::Instance`] then reconnects.
#[derive(Debug)]
pub struct ReplicaConnection<T> {
    /// Commands to the replica, delivered in order.
    pub commands: mpsc::UnboundedSender<StorageCommand<T>>,
    /// Responses from the replica, in order.
    pub responses: mpsc::UnboundedReceiver<ReplicaResponse<T>>,
}

/// Opens connections to one replica.
///
/// # Contract
///
/// - Each call to [`ReplicaConnector::connect`] opens a new, independent connection.
/// - Commands arrive at the replica in the order they are sent, and responses arrive at
///   the controller in the order the replica sends them.
/// - When either side goes away, `commands` starts failing and `responses` ends. A
///   transport never panics on what the peer sends; it closes the connection instead.
///   (The instance notices a lost connection by `commands` closing, or by reading the
///   end of `responses`: the receiving side of `commands` must not outlive the
///   connection.)
#[async_trait]
pub trait ReplicaConnector<T>: Send + Sync + 'static {
    /// Opens a connection. The caller sends `Hello` first.
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError>;

    /// A short description of the target, for logs.
    fn target(&self) -> String;
}

/// The `Hello` that opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The connection attempt's random nonce.
    pub nonce: u64,
    /// The controller's epoch.
    pub epoch: u64,
}

/// The replica's side: runs the commands of one connection at a time.
///
/// # Contract
///
/// - [`ReplicaHandler::serve`] is called once per connection whose `Hello` passed the
///   epoch fence, with the commands that follow it. It returns when `commands` ends
///   (the connection closed or a higher epoch fenced it) or when it wants to close the
///   connection.
/// - The first commands are a replay of the controller's reduced history, ending with
///   `InitializationComplete`; a handler reconciles what it already runs against it.
/// - For every collection or sink id compacted to `[]` that it runs, the handler sends
///   `DroppedId(id)` once it has released the id's resources: the controller waits for
///   that before it finalizes shards.
#[async_trait]
pub trait ReplicaHandler<T>: Send + Sync + 'static {
    /// Serves one connection.
    async fn serve(&self, hello: Hello, commands: CommandReceiver<T>, responses: ResponseSender<T>);
}

/// Where a handler sends responses. Sending fails once the connection is gone.
pub type ResponseSender<T> = mpsc::UnboundedSender<ReplicaResponse<T>>;

/// The highest controller epoch a replica has seen. Shared by every connection to one
/// replica, whatever the transport.
///
/// Raising the highest epoch wakes every [`CommandReceiver`] of an older connection, so
/// a superseded connection ends at once rather than at its next command.
#[derive(Debug, Default)]
pub struct EpochFence {
    highest: AtomicU64,
    raised: tokio::sync::Notify,
}

impl EpochFence {
    /// A fence that has seen no epoch.
    pub fn new() -> Arc<Self> {
        Arc::new(EpochFence::default())
    }

    /// Admits `epoch` if it is at least the highest seen, raising the highest.
    pub fn admit(&self, epoch: u64) -> Result<(), TransportError> {
        let previous = self.highest.fetch_max(epoch, Ordering::SeqCst);
        if epoch < previous {
            return Err(TransportError::Fenced {
                epoch,
                current: previous,
            });
        }
        if epoch > previous {
            self.raised.notify_waiters();
        }
        Ok(())
    }

    /// Whether a connection at `epoch` is still current.
    pub fn is_current(&self, epoch: u64) -> bool {
        self.highest.load(Ordering::SeqCst) <= epoch
    }

    /// The highest epoch seen.
    pub fn highest(&self) -> u64 {
        self.highest.load(Ordering::SeqCst)
    }
}

/// The commands of one connection, after its `Hello`.
///
/// It ends when the connection closes, or as soon as a connection with a higher epoch
/// has been admitted. Later `Hello`s on the same connection are checked against the
/// fence and not passed on.
#[derive(Debug)]
pub struct CommandReceiver<T> {
    inner: Inbound<T>,
    fence: Arc<EpochFence>,
    epoch: u64,
    error: Option<TransportError>,
    /// Why the stream ended, shared with [`serve_connection`], which outlives the
    /// receiver it hands to the handler.
    ended: Arc<std::sync::Mutex<Option<TransportError>>>,
}

/// Where a connection's commands come from: a transport that decodes (and may fail),
/// or the in-process channel the controller writes into.
#[derive(Debug)]
pub(crate) enum Inbound<T> {
    Decoded(mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>),
    Local(mpsc::UnboundedReceiver<StorageCommand<T>>),
}

impl<T> Inbound<T> {
    async fn recv(&mut self) -> Option<Result<StorageCommand<T>, TransportError>> {
        match self {
            Inbound::Decoded(rx) => rx.recv().await,
            Inbound::Local(rx) => rx.recv().await.map(Ok),
        }
    }

    /// The next command if one is queued; `Err(())` if none is yet.
    fn try_recv(&mut self) -> Result<Option<Result<StorageCommand<T>, TransportError>>, ()> {
        use mpsc::error::TryRecvError;
        let next = match self {
            Inbound::Decoded(rx) => rx.try_recv(),
            Inbound::Local(rx) => rx.try_recv().map(Ok),
        };
        match next {
            Ok(next) => Ok(Some(next)),
            Err(TryRecvError::Disconnected) => Ok(None),
            Err(TryRecvError::Empty) => Err(()),
        }
    }
}

impl<T> CommandReceiver<T> {
    /// Wraps a channel of decoded commands.
    pub fn new(
        inner: mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>,
        fence: Arc<EpochFence>,
        epoch: u64,
    ) -> Self {
        Self::of(Inbound::Decoded(inner), fence, epoch)
    }

    fn of(inner: Inbound<T>, fence: Arc<EpochFence>, epoch: u64) -> Self {
        CommandReceiver {
            inner,
            fence,
            epoch,
            error: None,
            ended: Arc::default(),
        }
    }

    fn end(&mut self, error: TransportError) -> Option<StorageCommand<T>> {
        if let Ok(mut ended) = self.ended.lock() {
            *ended = Some(error.clone());
        }
        self.error = Some(error);
        None
    }

    /// The next command, or `None` once the connection is closed or fenced. A fence
    /// raised by another connection ends a pending `recv` at once.
    pub async fn recv(&mut self) -> Option<StorageCommand<T>> {
        loop {
            if self.error.is_some() {
                return None;
            }
            if !self.fence.is_current(self.epoch) {
                let current = self.fence.highest();
                let epoch = self.epoch;
                return self.end(TransportError::Fenced { epoch, current });
            }
            // A command already queued needs no wait, so no wake-up by the fence either.
            let next = match self.inner.try_recv() {
                Ok(next) => next,
                Err(()) => {
                    // Registered before the check, so a raise between the two is not
                    // missed.
                    let fence = Arc::clone(&self.fence);
                    let raised = fence.raised.notified();
                    tokio::pin!(raised);
                    raised.as_mut().enable();
                    if !self.fence.is_current(self.epoch) {
                        continue;
                    }
                    tokio::select! {
                        biased;
                        next = self.inner.recv() => next,
                        () = raised => continue,
                    }
                }
            };
            match next {
                None => return self.end(TransportError::Closed),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "closing replica connection");
                    return self.end(e);
                }
                Some(Ok(StorageCommand::Hello { epoch, .. })) => {
                    if let Err(e) = self.fence.admit(epoch) {
                        return self.end(e);
                    }
                    self.epoch = epoch;
                }
                Some(Ok(command)) if self.fence.is_current(self.epoch) => return Some(command),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Why the stream ended, once it has.
    pub fn error(&self) -> Option<&TransportError> {
        self.error.as_ref()
    }

    /// The epoch of this connection.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

/// Runs one connection on the replica's side: waits for `Hello`, applies the fence and
/// hands the rest to `handler`. Transports call this for each accepted connection.
///
/// It returns once the handler has returned. The result says why the connection ends:
/// `Ok` when the peer closed its side or the handler chose to stop, the error when a
/// command was malformed or the connection was fenced. A transport ends the
/// connection's response stream then, even if the handler still holds the sender.
pub async fn serve_connection<T: Send + 'static>(
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    inbound: mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>,
    responses: ResponseSender<T>,
) -> Result<(), TransportError> {
    serve_inbound(handler, fence, Inbound::Decoded(inbound), responses).await
}

/// [`serve_connection`] for any source of commands.
pub(crate) async fn serve_inbound<T: Send + 'static>(
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    mut inbound: Inbound<T>,
    responses: ResponseSender<T>,
) -> Result<(), TransportError> {
    let hello = match inbound.recv().await {
        None => return Err(TransportError::Closed),
        Some(Err(e)) => return Err(e),
        Some(Ok(StorageCommand::Hello { nonce, epoch })) => Hello { nonce, epoch },
        Some(Ok(other)) => return Err(TransportError::MissingHello { got: other.kind() }),
    };
    fence.admit(hello.epoch)?;
    let commands = CommandReceiver::of(inbound, fence, hello.epoch);
    let ended = Arc::clone(&commands.ended);
    handler.serve(hello, commands, responses).await;
    let ended = ended.lock().ok().and_then(|mut e| e.take());
    match ended {
        None | Some(TransportError::Closed) => Ok(()),
        Some(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strata_controller_api::Timestamp;

    use super::*;

    #[tokio::test]
    async fn raising_the_fence_ends_a_pending_recv() {
        let fence = EpochFence::new();
        fence.admit(1).unwrap();
        let (_open, rx) = mpsc::unbounded_channel::<Result<StorageCommand<Timestamp>, _>>();
        let mut commands = CommandReceiver::new(rx, Arc::clone(&fence), 1);
        let pending = tokio::spawn(async move {
            let next = commands.recv().await;
            (next, commands.error().cloned())
        });
        tokio::task::yield_now().await;
        fence.admit(2).unwrap();
        // The command channel stays open: only the fence can end this recv.
        let (next, error) = tokio::time::timeout(Duration::from_secs(10), pending)
            .await
            .expect("the fence did not wake the receiver")
            .unwrap();
        assert!(next.is_none());
        assert!(
            matches!(
                error,
                Some(TransportError::Fenced {
                    epoch: 1,
                    current: 2
                })
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_equal_epoch_does_not_fence() {
        let fence = EpochFence::new();
        fence.admit(3).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut commands = CommandReceiver::<Timestamp>::new(rx, Arc::clone(&fence), 3);
        fence.admit(3).unwrap();
        tx.send(Ok(StorageCommand::AllowWrites)).unwrap();
        assert_eq!(commands.recv().await, Some(StorageCommand::AllowWrites));
    }
}
