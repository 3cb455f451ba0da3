//! [`ReplicaServer`] (feature `server`): a [`Replica`] behind instance-client's
//! [`ReplicaHandler`], so any of its transports (`local`, `grpc`) can serve it.
//!
//! Each admitted connection becomes the one the replica answers on: responses go to
//! the newest connection, and the replica re-sends its known uppers and statuses to it
//! (the controller that reconnects must learn them even if nothing advances).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use strata_controller_api::Timestamp;
use strata_instance_client::transport::{CommandReceiver, Hello, ReplicaHandler, ResponseSender};
use strata_instance_client::{StorageCommand, StorageResponse};

use crate::context::ResponseSink;
use crate::replica::{Replica, ReplicaConfig, ReplicaError};
use crate::shard::Shards;

/// Sends responses on the current connection, if any.
#[derive(Default)]
struct CurrentConnection {
    sender: Mutex<Option<ResponseSender<Timestamp>>>,
}

impl ResponseSink for CurrentConnection {
    fn send(&self, response: StorageResponse<Timestamp>) {
        if let Ok(sender) = self.sender.lock()
            && let Some(sender) = sender.as_ref()
        {
            // A closed connection drops responses until the next one arrives.
            let _ = sender.send(response);
        }
    }
}

/// A replica that serves controller connections.
pub struct ReplicaServer {
    replica: Mutex<Replica>,
    connection: Arc<CurrentConnection>,
}

impl std::fmt::Debug for ReplicaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaServer").finish_non_exhaustive()
    }
}

impl ReplicaServer {
    /// Starts the replica's workers; connections arrive through [`ReplicaHandler`].
    pub fn start(
        config: ReplicaConfig,
        shards: Arc<dyn Shards>,
    ) -> Result<Arc<ReplicaServer>, ReplicaError> {
        let connection = Arc::new(CurrentConnection::default());
        let replica = Replica::start(
            config,
            shards,
            Arc::clone(&connection) as Arc<dyn ResponseSink>,
        )?;
        Ok(Arc::new(ReplicaServer {
            replica: Mutex::new(replica),
            connection,
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

    fn handle(&self, command: StorageCommand<Timestamp>) {
        if let Ok(mut replica) = self.replica.lock() {
            replica.handle(command);
        }
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
        if let Ok(mut sender) = self.connection.sender.lock() {
            *sender = Some(responses);
        }
        self.handle(StorageCommand::Hello {
            nonce: hello.nonce,
            epoch: hello.epoch,
        });
        while let Some(command) = commands.recv().await {
            self.handle(command);
        }
    }
}
