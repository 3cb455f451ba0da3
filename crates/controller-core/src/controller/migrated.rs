//! Migrated tables while read-only, for zero-downtime upgrades.
//!
//! A new version of the host starts read-only beside the old one. A table whose
//! schema the new version changed (a *migrated* table) gets a fresh shard, which only
//! the new version knows, and the new version fills it before it takes over. So while
//! read-only the controller writes that shard, and nothing else, directly (not through
//! the txns shard, which the old controller still owns):
//! - `append_table` to migrated tables appends at `write_ts` and advances their upper to
//!   `advance_to`;
//! - their uppers follow the txns shard's upper (the tables' shared upper that the old
//!   controller moves), so they stay readable at recent times, as the other tables do.
//!
//! At `allow_writes` the task stops before anything else happens, and then every table,
//! migrated or not, is registered with the txns shard at `register_ts`: what was
//! written here stays in the shard, and from then on only the txns shard writes it.
//! Nothing acknowledged is lost, and nothing is written twice.

use std::collections::BTreeMap;

use strata_controller_api::retry::{Backoff, BackoffConfig};
use strata_controller_api::{
    Antichain, GlobalId, RelationDesc, Row, ShardId, StorageError, StorageTimestamp,
};
use strata_persist_backend::{PersistClient, SourceData, WriteHandle};
use timely::PartialOrder;
use tokio::sync::{mpsc, oneshot};

use super::persist_err;
use super::storage_task::Event;

type Reply<T> = oneshot::Sender<Result<(), StorageError<T>>>;

/// One migrated table's writes: its id, shard and rows.
pub(crate) type MigratedWrite = (GlobalId, ShardId, Vec<(Row, i64)>);

enum Request<T: StorageTimestamp> {
    /// Writes `shard` for `id` from now on.
    Add {
        id: GlobalId,
        shard: ShardId,
        desc: RelationDesc,
    },
    /// Appends at `write_ts` and advances each table's upper to `advance_to`.
    Append {
        write_ts: T,
        advance_to: T,
        writes: Vec<MigratedWrite>,
        reply: Reply<T>,
    },
    /// Stops once everything before it is done.
    Stop { done: oneshot::Sender<()> },
}

/// The controller's end of the migrated-table writer.
pub(crate) struct MigratedTables<T: StorageTimestamp> {
    tx: mpsc::UnboundedSender<Request<T>>,
}

impl<T: StorageTimestamp> std::fmt::Debug for MigratedTables<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigratedTables").finish_non_exhaustive()
    }
}

impl<T: StorageTimestamp> MigratedTables<T> {
    /// Starts the writer; uppers it moves are sent to `events`.
    pub(crate) fn spawn(
        client: PersistClient,
        txns_shard: ShardId,
        events: mpsc::UnboundedSender<Event<T>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task {
            client,
            txns_shard,
            events,
            tables: BTreeMap::new(),
            txns_upper: Antichain::from_elem(T::minimum()),
        };
        tokio::spawn(task.run(rx));
        MigratedTables { tx }
    }

    /// Writes `shard` for the migrated table `id`.
    pub(crate) fn add(&self, id: GlobalId, shard: ShardId, desc: RelationDesc) {
        let _ = self.tx.send(Request::Add { id, shard, desc });
    }

    /// Appends `writes` (validated) at `write_ts`, advancing to `advance_to`; the reply
    /// comes once the appends are durable.
    pub(crate) fn append(
        &self,
        write_ts: T,
        advance_to: T,
        writes: Vec<MigratedWrite>,
    ) -> oneshot::Receiver<Result<(), StorageError<T>>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send(Request::Append {
            write_ts,
            advance_to,
            writes,
            reply,
        });
        rx
    }

    /// Stops the writer once every request sent before is done.
    pub(crate) async fn stop(self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Request::Stop { done }).is_ok() {
            let _ = rx.await;
        }
    }
}

struct Table<T> {
    id: GlobalId,
    write: WriteHandle<T>,
}

struct Task<T: StorageTimestamp> {
    client: PersistClient,
    txns_shard: ShardId,
    events: mpsc::UnboundedSender<Event<T>>,
    tables: BTreeMap<ShardId, Table<T>>,
    txns_upper: Antichain<T>,
}

impl<T: StorageTimestamp> Task<T> {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request<T>>) {
        // Following the txns upper retries a failed read with the shared store backoff.
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        loop {
            let watching = !self.tables.is_empty() && !self.txns_upper.is_empty();
            let client = self.client.clone();
            let (txns_shard, known) = (self.txns_shard, self.txns_upper.clone());
            let next_upper = async move {
                if watching {
                    client.wait_for_upper_past(txns_shard, &known).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                request = requests.recv() => match request {
                    Some(Request::Add { id, shard, desc }) => self.add(id, shard, desc).await,
                    Some(Request::Append { write_ts, advance_to, writes, reply }) => {
                        let _ = reply.send(self.append(write_ts, advance_to, writes).await);
                    }
                    Some(Request::Stop { done }) => {
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                upper = next_upper => match upper {
                    Ok(upper) => {
                        backoff.reset();
                        self.txns_upper = upper;
                        self.follow_txns_upper().await;
                    }
                    Err(error) => {
                        // Retried on the next loop (a transient store failure), and
                        // logged: the tables stay readable where they were.
                        tracing::debug!(%error, "cannot follow the txns upper");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                },
            }
        }
    }

    async fn add(&mut self, id: GlobalId, shard: ShardId, desc: RelationDesc) {
        match self.client.open_writer::<T>(shard, desc).await {
            Ok(write) => {
                self.tables.insert(shard, Table { id, write });
                self.follow_txns_upper().await;
            }
            // Its appends then fail with the shard's error; nothing else is affected.
            Err(error) => tracing::warn!(%id, %shard, %error, "cannot open a migrated table"),
        }
    }

    /// Appends each table's rows at `write_ts` and moves its upper to `advance_to`.
    /// Every table is checked before any is written.
    async fn append(
        &mut self,
        write_ts: T,
        advance_to: T,
        writes: Vec<MigratedWrite>,
    ) -> Result<(), StorageError<T>> {
        for (id, shard, _) in &writes {
            let table = self
                .tables
                .get(shard)
                .ok_or_else(|| StorageError::InvalidUsage(format!("{id} is not writable")))?;
            if !table.write.upper().less_equal(&write_ts) {
                return Err(StorageError::UpdateBeforeUpper {
                    id: *id,
                    write_ts,
                    upper: table.write.upper().clone(),
                });
            }
        }
        let new_upper = Antichain::from_elem(advance_to);
        for (id, shard, rows) in writes {
            let Some(table) = self.tables.get_mut(&shard) else {
                continue;
            };
            let updates: Vec<(SourceData, T, i64)> = rows
                .into_iter()
                .map(|(row, diff)| (Ok(row), write_ts, diff))
                .collect();
            let expected = table.write.upper().clone();
            match table
                .write
                .compare_and_append(&updates, expected, new_upper.clone())
                .await
                .map_err(persist_err)?
            {
                Ok(()) => {
                    let _ = self.events.send(Event::Upper(id, new_upper.clone()));
                }
                Err(mismatch) => {
                    return Err(StorageError::UpdateBeforeUpper {
                        id,
                        write_ts,
                        upper: mismatch.current,
                    });
                }
            }
        }
        Ok(())
    }

    /// Moves every table whose upper is behind the txns upper up to it, with an empty
    /// append.
    async fn follow_txns_upper(&mut self) {
        let target = self.txns_upper.clone();
        for (shard, table) in &mut self.tables {
            let current = table.write.upper().clone();
            if !PartialOrder::less_than(&current, &target) {
                continue;
            }
            match table
                .write
                .compare_and_append(&[], current, target.clone())
                .await
            {
                Ok(Ok(())) => {
                    let _ = self.events.send(Event::Upper(table.id, target.clone()));
                }
                // Moved meanwhile (an append): the next txns upper moves it again.
                Ok(Err(_)) => {}
                Err(error) => {
                    tracing::debug!(%shard, %error, "cannot advance a migrated table");
                }
            }
        }
    }
}
