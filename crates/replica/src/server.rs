//! [`ReplicaServer`] (feature `server`): a [`Replica`] behind instance-client's
//! [`ReplicaHandler`], so any of its transports (`local`, `grpc`) can serve it.
//!
//! Each admitted connection becomes the one the replica answers on: responses go to
//! the newest connection, and the replica re-sends its known uppers and statuses to it
//! (the controller that reconnects must learn them even if nothing advances).
//!
//! Commands are applied on one dedicated plain thread, fed by a channel, never on the
//! transport's task: handling may block (the persist adapter blocks on its own runtime,
//! which tokio forbids inside a runtime context). Commands of a connection that a newer
//! one has replaced are dropped, so only the newest connection drives the replica.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use strata_controller_api::Timestamp;
use strata_instance_client::transport::{CommandReceiver, Hello, ReplicaHandler, ResponseSender};
use strata_instance_client::{ReplicaResponse, StorageCommand};

use crate::context::ResponseSink;
use crate::replica::{Replica, ReplicaConfig, ReplicaError};
use crate::shard::Shards;

/// Sends responses on the current connection, if any.
#[derive(Default)]
struct CurrentConnection {
    sender: Mutex<Option<ResponseSender<Timestamp>>>,
}

impl ResponseSink for CurrentConnection {
    fn send(&self, response: ReplicaResponse<Timestamp>) {
        if let Ok(sender) = self.sender.lock()
            && let Some(sender) = sender.as_ref()
        {
            // A closed connection drops responses until the next one arrives.
            let _ = sender.send(response);
        }
    }
}

/// A command, tagged with the connection (its generation) it arrived on.
type Job = (u64, StorageCommand<Timestamp>);

/// A replica that serves controller connections.
pub struct ReplicaServer {
    replica: Arc<Mutex<Replica>>,
    connection: Arc<CurrentConnection>,
    /// The newest connection's generation; older connections' commands are dropped.
    generation: Arc<AtomicU64>,
    /// Feeds the command thread, which ends once this is dropped.
    jobs: Mutex<Sender<Job>>,
}

impl std::fmt::Debug for ReplicaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaServer").finish_non_exhaustive()
    }
}

impl ReplicaServer {
    /// Starts the replica's workers and its command thread; connections arrive through
    /// [`ReplicaHandler`].
    pub fn start(
        config: ReplicaConfig,
        shards: Arc<dyn Shards>,
    ) -> Result<Arc<ReplicaServer>, ReplicaError> {
        let connection = Arc::new(CurrentConnection::default());
        let replica = Arc::new(Mutex::new(Replica::start(
            config,
            shards,
            Arc::clone(&connection) as Arc<dyn ResponseSink>,
        )?));
        let generation = Arc::new(AtomicU64::new(0));
        let (jobs, received) = channel::<Job>();
        let (target, current) = (Arc::clone(&replica), Arc::clone(&generation));
        std::thread::Builder::new()
            .name("replica-commands".into())
            .spawn(move || {
                for (generation, command) in received {
                    if generation != current.load(Ordering::SeqCst) {
                        continue; // a replaced connection's command
                    }
                    if let Ok(mut replica) = target.lock() {
                        replica.handle(command);
                    }
                }
            })
            .map_err(|e| ReplicaError::CommandThread {
                reason: e.to_string(),
            })?;
        Ok(Arc::new(ReplicaServer {
            replica,
            connection,
            generation,
            jobs: Mutex::new(jobs),
        }))
    }

    /// How many dataflows worker 0 has built so far.
    pub fn dataflow_starts(&self) -> u64 {
        self.replica.lock().map_or(0, |r| r.dataflow_starts())
    }

    /// Stops every dataflow and the workers, as a crash of the replica would: nothing
    /// more is written, and later commands are ignored.
    pub fn shutdown(&self) {
        if let Ok(mut replica) = self.replica.lock() {
            replica.shutdown_inner();
        }
    }

    /// Queues `command` for the command thread; `false` once that thread is gone.
    fn enqueue(&self, generation: u64, command: StorageCommand<Timestamp>) -> bool {
        self.jobs
            .lock()
            .is_ok_and(|jobs| jobs.send((generation, command)).is_ok())
    }
}

#[async_trait]
impl ReplicaHandler<Timestamp> for ReplicaServer {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut sender) = self.connection.sender.lock() {
            *sender = Some(responses);
        }
        let hello = StorageCommand::Hello {
            nonce: hello.nonce,
            epoch: hello.epoch,
        };
        if !self.enqueue(generation, hello) {
            return;
        }
        while let Some(command) = commands.recv().await {
            if !self.enqueue(generation, command) {
                break;
            }
        }
        // The connection is over: stop sending on it, unless a newer one took over.
        if self.generation.load(Ordering::SeqCst) == generation
            && let Ok(mut sender) = self.connection.sender.lock()
        {
            *sender = None;
        }
    }
}

/// A [`ReplicaServer`] as a handler that serves each connection from a plain thread of
/// its own, outside the caller's tokio runtime.
///
/// A host that runs replicas in the controller's process needs this: the replica's
/// persist shards own a runtime, which may be neither blocked on nor dropped inside
/// another runtime's context.
#[derive(Debug)]
pub struct OffRuntime(Arc<ReplicaServer>);

impl OffRuntime {
    /// Serves `server`'s connections off the caller's runtime.
    pub fn new(server: Arc<ReplicaServer>) -> Self {
        OffRuntime(server)
    }
}

#[async_trait]
impl ReplicaHandler<Timestamp> for OffRuntime {
    async fn serve(
        &self,
        hello: Hello,
        commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let server = Arc::clone(&self.0);
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            futures::executor::block_on(server.serve(hello, commands, responses));
            let _ = done.send(());
        });
        // The thread ends when the connection does; a dropped sender means the same.
        let _ = finished.await;
    }
}
