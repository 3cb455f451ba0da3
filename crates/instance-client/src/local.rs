//! The `local` transport: an in-process replica reached over tokio channels.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::transport::{
    EpochFence, Inbound, ReplicaConnection, ReplicaConnector, ReplicaHandler, TransportError,
    serve_inbound,
};

/// Connects to a [`ReplicaHandler`] in the same process. Every connection runs the
/// handler on its own tokio task; all of them share one [`EpochFence`].
///
/// For tests it can refuse connections ([`LocalConnector::set_available`]) and cut the
/// open ones ([`LocalConnector::sever`]), which is what a crashed replica looks like.
pub struct LocalConnector<T> {
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    available: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl<T> std::fmt::Debug for LocalConnector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalConnector")
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> LocalConnector<T> {
    /// A connector to `handler`.
    pub fn new(handler: Arc<dyn ReplicaHandler<T>>) -> Arc<Self> {
        Arc::new(LocalConnector {
            handler,
            fence: EpochFence::new(),
            available: AtomicBool::new(true),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The replica's epoch fence.
    pub fn fence(&self) -> &Arc<EpochFence> {
        &self.fence
    }

    /// Whether new connections succeed.
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// Cuts every open connection, as a replica crash would.
    pub fn sever(&self) {
        let tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl<T: Send + 'static> ReplicaConnector<T> for LocalConnector<T> {
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(TransportError::Connect {
                target: self.target(),
                source: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            });
        }
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (response_tx, response_rx) = mpsc::unbounded_channel();
        let handler = Arc::clone(&self.handler);
        let fence = Arc::clone(&self.fence);
        // The handler reads the controller's channel itself: no task in between.
        let task = tokio::spawn(async move {
            let serve = serve_inbound(handler, fence, Inbound::Local(command_rx), response_tx);
            if let Err(e) = serve.await {
                tracing::info!(error = %e, "local replica connection closed");
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        }
        Ok(ReplicaConnection {
            commands: command_tx,
            responses: response_rx,
        })
    }

    fn target(&self) -> String {
        "local".to_owned()
    }
}
