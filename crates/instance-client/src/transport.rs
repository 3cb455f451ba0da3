//! The seam between an [`crate::Instance`] and its replicas: [`ReplicaConnector`] on the
//! controller's side, [`ReplicaHandler`] on the replica's side, and the epoch fence
//! between them.
//!
//! A transport moves [`StorageCommand`]s one way and [`StorageResponse`]s the other, in
//! order, over one connection at a time. Transports are features: `local` (tokio
//! channels) and `grpc` (tonic).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use strata_controller_api::{Certainty, SharedError};
use tokio::sync::mpsc;

use crate::convert::ProtoError;
use crate::protocol::{StorageCommand, StorageResponse};

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
    pub responses: mpsc::UnboundedReceiver<StorageResponse<T>>,
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
pub type ResponseSender<T> = mpsc::UnboundedSender<StorageResponse<T>>;

/// The highest controller epoch a replica has seen. Shared by every connection to one
/// replica, whatever the transport.
#[derive(Debug, Default)]
pub struct EpochFence {
    highest: AtomicU64,
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
    inner: mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>,
    fence: Arc<EpochFence>,
    epoch: u64,
    error: Option<TransportError>,
}

impl<T> CommandReceiver<T> {
    /// Wraps a channel of decoded commands.
    pub fn new(
        inner: mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>,
        fence: Arc<EpochFence>,
        epoch: u64,
    ) -> Self {
        CommandReceiver {
            inner,
            fence,
            epoch,
            error: None,
        }
    }

    /// The next command, or `None` once the connection is closed or fenced.
    pub async fn recv(&mut self) -> Option<StorageCommand<T>> {
        loop {
            if self.error.is_some() {
                return None;
            }
            if !self.fence.is_current(self.epoch) {
                self.error = Some(TransportError::Fenced {
                    epoch: self.epoch,
                    current: self.fence.highest(),
                });
                return None;
            }
            match self.inner.recv().await {
                None => {
                    self.error = Some(TransportError::Closed);
                    return None;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "closing replica connection");
                    self.error = Some(e);
                    return None;
                }
                Some(Ok(StorageCommand::Hello { epoch, .. })) => {
                    if let Err(e) = self.fence.admit(epoch) {
                        self.error = Some(e);
                        return None;
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
pub async fn serve_connection<T: Send + 'static>(
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    mut inbound: mpsc::UnboundedReceiver<Result<StorageCommand<T>, TransportError>>,
    responses: ResponseSender<T>,
) -> Result<(), TransportError> {
    let hello = match inbound.recv().await {
        None => return Err(TransportError::Closed),
        Some(Err(e)) => return Err(e),
        Some(Ok(StorageCommand::Hello { nonce, epoch })) => Hello { nonce, epoch },
        Some(Ok(other)) => return Err(TransportError::MissingHello { got: other.kind() }),
    };
    fence.admit(hello.epoch)?;
    let commands = CommandReceiver::new(inbound, fence, hello.epoch);
    handler.serve(hello, commands, responses).await;
    Ok(())
}
