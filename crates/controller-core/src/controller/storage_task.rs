//! The storage task: the one place that writes to shards on the controller's behalf.
//!
//! It owns the txns handle and the critical since handles, and handles commands in the
//! order they arrive, so a table's forget always precedes its finalization and a since
//! downgrade never races a registration. **Group commit**: every table append waiting
//! in the queue when the task wakes is committed together, one commit (one CAS of the
//! txns shard) per distinct `write_ts`, in ascending order.
//!
//! Read-only, the task writes nothing: since downgrades and finalizations wait in
//! memory until `AllowWrites`.

use std::collections::BTreeMap;

use strata_controller_api::retry::Backoff;
use strata_controller_api::{
    Antichain, CollectionDescription, GlobalId, RelationDesc, Row, ShardId, StorageError,
    StorageTimestamp,
};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{PersistClient, SinceHandle, WriteFence, WriteHandle};
use tokio::sync::{mpsc, oneshot};

use super::applier::{self, Applied, ApplierHandle};
use super::fencing::{CONTROLLER_READER_ID, Fence, fence_shard};
use super::{CatalogFn, SharedReader, persist_err, txns_err};

/// How many queued commands one wake-up takes at most.
const MAX_BATCH: usize = 4096;

/// How many table commits pass before the txns shard's critical since follows its
/// upper (one CAS).
const TXNS_SINCE_RELEASE_COMMITS: usize = 16;

/// How long `close` waits for the applier's round and for background maintenance.
const CLOSE_MAINTENANCE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// A reply channel for a command's result.
pub(crate) type Reply<T, R = ()> = oneshot::Sender<Result<R, StorageError<T>>>;

/// One `append_table` call, validated.
#[derive(Debug)]
pub(crate) struct AppendRequest<T> {
    pub(crate) write_ts: T,
    pub(crate) advance_to: T,
    /// The first table written, named in an `UpdateBeforeUpper` error.
    pub(crate) first_id: GlobalId,
    pub(crate) writes: Vec<(ShardId, Vec<(Row, i64)>)>,
    pub(crate) reply: Reply<T>,
}

/// Which handles hold a shard's since, so that a downgrade or a finalization moves all
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardKind {
    /// A table's data shard: the txns handles hold its since too.
    Table,
    /// Any other shard: only the controller's critical reader holds it.
    Other,
}

impl ShardKind {
    /// The kind of the shard of a collection described by `description`.
    pub(crate) fn of<T>(description: &CollectionDescription<T>) -> Self {
        if description.is_table() {
            ShardKind::Table
        } else {
            ShardKind::Other
        }
    }
}

/// A change of which tables the txns shard knows.
#[derive(Debug, Clone)]
enum Membership {
    Register(Vec<(ShardId, RelationDesc)>),
    Forget(Vec<ShardId>),
}

/// What the controller asks the storage task to do.
#[derive(Debug)]
pub(crate) enum Command<T: StorageTimestamp> {
    /// Leave read-only mode, holding the txns shard through `txns_since`.
    AllowWrites {
        txns_since: SinceHandle<T>,
        reply: Reply<T>,
    },
    /// Take over critical since handles opened (and fenced) by bootstrap.
    Adopt { handles: Vec<SinceHandle<T>> },
    /// Register tables with the txns shard at `ts` (or the txns upper, if later).
    /// Replies with the txns upper afterwards.
    Register {
        ts: T,
        shards: Vec<(ShardId, RelationDesc)>,
        reply: Reply<T, Antichain<T>>,
    },
    /// Forget tables at `ts` (or the txns upper, if later).
    Forget {
        ts: T,
        shards: Vec<ShardId>,
        reply: Reply<T>,
    },
    /// A table write.
    Append(AppendRequest<T>),
    /// An append-only write to a shard written directly (not through txns).
    AppendDirect {
        id: GlobalId,
        shard: ShardId,
        desc: RelationDesc,
        updates: Vec<(Row, i64)>,
        reply: Reply<T>,
    },
    /// Move a shard's critical since.
    Downgrade {
        shard: ShardId,
        since: Antichain<T>,
        kind: ShardKind,
    },
    /// Close, release and finalize a dropped collection's shard, then mark it
    /// finalized in the catalog.
    Finalize { shard: ShardId, kind: ShardKind },
    /// The background applier applied these shards' commits up to a time.
    Applied(Applied<T>),
    /// Retry finalizing `shard` after an earlier attempt failed (for example while a
    /// replica's expiring reader lease still holds its since back).
    RetryFinalize {
        shard: ShardId,
        kind: ShardKind,
        backoff: Backoff,
    },
    /// Finish everything sent before, release the storage task's leases and stop.
    Close { reply: oneshot::Sender<()> },
}

/// What the storage task tells the controller.
#[derive(Debug)]
pub(crate) enum Event<T> {
    /// The txns upper, which is the upper of every registered table.
    TablesUpper(Antichain<T>),
    /// The upper of a directly written collection.
    Upper(GlobalId, Antichain<T>),
    /// A group commit of table writes at this time has started: writes sent from now
    /// on at this time are late (see `Controller::table_write_ts`).
    Committing(T),
}

/// The controller's end of the storage task.
#[derive(Debug)]
pub(crate) struct StorageTaskHandle<T: StorageTimestamp> {
    tx: mpsc::UnboundedSender<Command<T>>,
}

impl<T: StorageTimestamp> StorageTaskHandle<T> {
    /// Another handle to the same task.
    pub(crate) fn clone_handle(&self) -> Self {
        StorageTaskHandle {
            tx: self.tx.clone(),
        }
    }

    /// Queues a command. A task that is gone (only at runtime shutdown) drops it, and
    /// the command's reply channel reports `ShuttingDown` to whoever waits on it.
    pub(crate) fn send(&self, command: Command<T>) {
        if self.tx.send(command).is_err() {
            tracing::debug!("storage task is gone; dropping a command");
        }
    }
}

/// What the storage task starts with.
pub(crate) struct StorageTaskConfig<T: StorageTimestamp> {
    pub(crate) client: PersistClient,
    pub(crate) fence: Fence,
    pub(crate) txns_shard: ShardId,
    pub(crate) catalog: CatalogFn<T>,
    pub(crate) reader: SharedReader<T>,
    pub(crate) events: mpsc::UnboundedSender<Event<T>>,
}

/// Starts the storage task.
pub(crate) fn spawn<T: StorageTimestamp>(config: StorageTaskConfig<T>) -> StorageTaskHandle<T> {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = StorageTask {
        config,
        writable: false,
        txns: None,
        since_handles: BTreeMap::new(),
        commits_since_release: 0,
        writers: BTreeMap::new(),
        pending_downgrades: BTreeMap::new(),
        pending_finalize: Vec::new(),
        pending_forgets: Vec::new(),
        retry: tx.downgrade(),
        applier: None,
    };
    tokio::spawn(task.run(rx));
    StorageTaskHandle { tx }
}

/// The storage task's state.
pub(super) struct StorageTask<T: StorageTimestamp> {
    pub(super) config: StorageTaskConfig<T>,
    pub(super) writable: bool,
    pub(super) txns: Option<TxnsHandle<T>>,
    pub(super) since_handles: BTreeMap<ShardId, SinceHandle<T>>,
    /// Commits since the txns shard's critical since last moved.
    commits_since_release: usize,
    writers: BTreeMap<ShardId, WriteHandle<T>>,
    pending_downgrades: BTreeMap<ShardId, (Antichain<T>, ShardKind)>,
    pending_finalize: Vec<(ShardId, ShardKind)>,
    /// Forgets of tables dropped while read-only: the txns shard is not ours to write
    /// until `AllowWrites`.
    pending_forgets: Vec<(T, Vec<ShardId>)>,
    /// Re-queues failed finalizations; weak, so the task still ends with the controller.
    pub(super) retry: mpsc::WeakUnboundedSender<Command<T>>,
    /// Applies committed table writes in the background (writable only).
    applier: Option<ApplierHandle<T>>,
}

/// How a group commit ended.
#[derive(Debug, Clone)]
enum CommitOutcome<T> {
    Committed,
    /// The txns upper was already beyond `write_ts`.
    Late(Antichain<T>),
    Failed(StorageError<T>),
}

impl<T: StorageTimestamp> StorageTask<T> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command<T>>) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            for command in batch {
                match command {
                    Command::Append(request) => appends.push(request),
                    // Bookkeeping only: it must not split a group of appends.
                    Command::Applied(applied) => self.note_applied(applied),
                    Command::Close { reply } => {
                        self.commit_appends(std::mem::take(&mut appends)).await;
                        self.close().await;
                        // Everything the task holds (a handle per shard) is let go
                        // before `close` returns, not while the next controller starts.
                        drop(self);
                        let _ = reply.send(());
                        return;
                    }
                    other => {
                        self.commit_appends(std::mem::take(&mut appends)).await;
                        self.handle(other).await;
                    }
                }
            }
            self.commit_appends(appends).await;
        }
    }

    async fn handle(&mut self, command: Command<T>) {
        match command {
            Command::AllowWrites { txns_since, reply } => {
                let _ = reply.send(self.allow_writes(txns_since).await);
            }
            Command::Adopt { handles } => {
                for handle in handles {
                    self.since_handles.insert(handle.shard_id(), handle);
                }
            }
            Command::Register { ts, shards, reply } => {
                let result = self
                    .change_membership(ts, Membership::Register(shards))
                    .await;
                let _ = reply.send(result);
            }
            Command::Forget { ts, shards, reply } if !self.writable => {
                self.pending_forgets.push((ts, shards));
                let _ = reply.send(Ok(()));
            }
            Command::Forget { ts, shards, reply } => {
                let result = self.change_membership(ts, Membership::Forget(shards)).await;
                let _ = reply.send(result.map(|_upper| ()));
            }
            Command::Append(request) => self.commit_appends(vec![request]).await,
            Command::AppendDirect {
                id,
                shard,
                desc,
                updates,
                reply,
            } => {
                let _ = reply.send(self.append_direct(id, shard, desc, updates).await);
            }
            Command::Downgrade { shard, since, kind } => {
                if self.writable {
                    self.downgrade(shard, &since, kind).await;
                } else {
                    self.pending_downgrades.insert(shard, (since, kind));
                }
            }
            Command::Finalize { shard, kind } => {
                if self.writable {
                    self.finalize_logged(shard, kind, Self::finalize_backoff())
                        .await;
                } else {
                    self.pending_finalize.push((shard, kind));
                }
            }
            Command::RetryFinalize {
                shard,
                kind,
                backoff,
            } => self.finalize_logged(shard, kind, backoff).await,
            Command::Applied(applied) => self.note_applied(applied),
            // Taken by `run` before it gets here.
            Command::Close { reply } => {
                self.close().await;
                let _ = reply.send(());
            }
        }
    }

    /// Stops the applier (after the round it is in), waits for the compaction and GC
    /// our writes started (each within [`CLOSE_MAINTENANCE_BOUND`]) and gives up the leases of the
    /// direct writers, so that nothing of this controller lingers in the shards' states
    /// until a lease times out. Finalizations still pending are left to the next
    /// controller, which finds them in the catalog.
    async fn close(&mut self) {
        if let Some(applier) = self.applier.take() {
            applier.stop(CLOSE_MAINTENANCE_BOUND).await;
        }
        // Compaction and GC that our appends started finish before we let go.
        let idle = self.config.client.all_maintenance_idle();
        if tokio::time::timeout(CLOSE_MAINTENANCE_BOUND, idle)
            .await
            .is_err()
        {
            tracing::warn!(
                bound = ?CLOSE_MAINTENANCE_BOUND,
                "background maintenance still runs at close; leaving it to the next GC"
            );
        }
        for (shard, writer) in std::mem::take(&mut self.writers) {
            if let Err(error) = writer.expire().await {
                tracing::debug!(%shard, %error, "a writer lease is left to expire");
            }
        }
    }

    /// Opens the txns shard for writing and runs what read-only mode deferred.
    async fn allow_writes(&mut self, txns_since: SinceHandle<T>) -> Result<(), StorageError<T>> {
        if self.txns.is_none() {
            let mut handle = TxnsHandle::open(self.config.client.clone(), self.config.txns_shard)
                .await
                .map_err(txns_err)?;
            // Every txns CAS is conditional on our epoch still being the opaque of the
            // controller's critical reader: a newer controller fences us atomically.
            handle.set_fence(Some(WriteFence {
                reader: CONTROLLER_READER_ID.to_owned(),
                opaque: self.config.fence.epoch,
            }));
            let _ = self
                .config
                .events
                .send(Event::TablesUpper(handle.txns_upper()));
            self.txns = Some(handle);
            let applier_txns = TxnsHandle::open(self.config.client.clone(), self.config.txns_shard)
                .await
                .map_err(txns_err)?;
            let back = self.retry.clone();
            self.applier = Some(applier::spawn(
                applier_txns,
                Box::new(move |applied| match back.upgrade() {
                    Some(tx) => tx.send(Command::Applied(applied)).is_ok(),
                    None => false,
                }),
            ));
        }
        self.since_handles.insert(txns_since.shard_id(), txns_since);
        self.writable = true;
        for (shard, (since, kind)) in std::mem::take(&mut self.pending_downgrades) {
            self.downgrade(shard, &since, kind).await;
        }
        // Tables dropped while read-only leave the txns shard now, before their shards
        // are finalized; only those some controller registered (at or after their drop
        // time: the old controller wrote on until the cut-over).
        for (ts, shards) in std::mem::take(&mut self.pending_forgets) {
            let registered: std::collections::BTreeSet<ShardId> = self
                .txns
                .as_ref()
                .map(|txns| txns.registered().into_iter().map(|(s, _)| s).collect())
                .unwrap_or_default();
            let shards: Vec<ShardId> = shards
                .into_iter()
                .filter(|s| registered.contains(s))
                .collect();
            if shards.is_empty() {
                continue;
            }
            if let Err(error) = self.change_membership(ts, Membership::Forget(shards)).await {
                tracing::warn!(%error, "cannot forget tables dropped while read-only");
            }
        }
        for (shard, kind) in std::mem::take(&mut self.pending_finalize) {
            self.finalize_logged(shard, kind, Self::finalize_backoff())
                .await;
        }
        Ok(())
    }

    /// Lets the next commit retract the txns rows the applier applied.
    fn note_applied(&mut self, Applied { ts, shards }: Applied<T>) {
        if let Some(txns) = self.txns.as_mut() {
            for shard in shards {
                txns.note_applied(shard, ts);
            }
        }
    }

    fn txns(&mut self) -> Result<&mut TxnsHandle<T>, StorageError<T>> {
        self.txns.as_mut().ok_or(StorageError::ReadOnly)
    }

    fn publish_tables_upper(&mut self) {
        if let Some(txns) = &self.txns {
            let _ = self
                .config
                .events
                .send(Event::TablesUpper(txns.txns_upper()));
        }
    }

    /// Registers or forgets tables at `ts`, or at the txns upper if that is later (a
    /// group commit may have moved it since the caller chose `ts`); returns the txns
    /// upper afterwards.
    async fn change_membership(
        &mut self,
        ts: T,
        change: Membership,
    ) -> Result<Antichain<T>, StorageError<T>> {
        self.config
            .fence
            .check(&self.config.client, self.config.txns_shard)
            .await?;
        let fence = self.config.fence.clone();
        let txns = self.txns()?;
        let mut at = ts;
        loop {
            let result = match &change {
                Membership::Register(shards) => txns.register(at, shards.clone()).await,
                Membership::Forget(shards) => txns.forget(at, shards.clone()).await,
            };
            match result.map_err(|e| fence.txns(e))? {
                Ok(()) => break,
                Err(mismatch) => match mismatch.current.as_option() {
                    Some(upper) if *upper > at => at = *upper,
                    _ => {
                        return Err(StorageError::InvalidUsage(
                            "the txns shard is closed".into(),
                        ));
                    }
                },
            }
        }
        let upper = txns.txns_upper();
        self.publish_tables_upper();
        Ok(upper)
    }

    /// Commits queued appends, one commit per distinct `write_ts`, ascending.
    async fn commit_appends(&mut self, appends: Vec<AppendRequest<T>>) {
        if appends.is_empty() {
            return;
        }
        let mut groups: BTreeMap<T, Vec<AppendRequest<T>>> = BTreeMap::new();
        for request in appends {
            groups.entry(request.write_ts).or_default().push(request);
        }
        for (write_ts, group) in groups {
            let _ = self.config.events.send(Event::Committing(write_ts));
            let outcome = self.commit_group(write_ts, &group).await;
            // Publish the upper first, so a caller that sees its reply sees the upper.
            self.publish_tables_upper();
            for request in group {
                let result = match &outcome {
                    CommitOutcome::Committed => Ok(()),
                    CommitOutcome::Late(upper) => Err(StorageError::UpdateBeforeUpper {
                        id: request.first_id,
                        write_ts,
                        upper: upper.clone(),
                    }),
                    CommitOutcome::Failed(error) => Err(error.clone()),
                };
                let _ = request.reply.send(result);
            }
        }
        self.release_txns_since().await;
    }

    /// Every [`TXNS_SINCE_RELEASE_COMMITS`] commits, moves the controller's critical
    /// since of the txns shard to just below its upper. Nothing reads the txns shard at
    /// an older time (its handles read the latest contents and follow the changes from
    /// there, and release their own sinces the same way), and a since held at the
    /// start would keep every commit's rows in the shard for ever.
    async fn release_txns_since(&mut self) {
        self.commits_since_release += 1;
        if self.commits_since_release < TXNS_SINCE_RELEASE_COMMITS {
            return;
        }
        self.commits_since_release = 0;
        let Some(hold) = self
            .txns
            .as_ref()
            .and_then(|txns| txns.txns_upper().as_option().and_then(|u| u.step_back()))
        else {
            return;
        };
        let txns_shard = self.config.txns_shard;
        if let Err(error) = self
            .downgrade_critical(txns_shard, &Antichain::from_elem(hold))
            .await
        {
            tracing::warn!(%error, "cannot release the txns shard's since");
        }
        // The reads' handle moves only when a table is read; catching it up here (it
        // reads just the new rows) lets its hold follow too.
        if let Some(reader) = self.config.reader.lock().await.as_mut()
            && let Err(error) = reader.fetch_txns_upper().await
        {
            tracing::debug!(%error, "cannot catch the reads' txns handle up");
        }
    }

    /// One commit of every write in `group` at `write_ts`, then one advance of the txns
    /// upper to the largest `advance_to` if the commit did not get there.
    async fn commit_group(&mut self, write_ts: T, group: &[AppendRequest<T>]) -> CommitOutcome<T> {
        // The commit's CAS itself is fenced (see `allow_writes`), so the hot path only
        // checks whether a fence was already seen, without reading the txns shard.
        if let Err(error) = self.config.fence.check_seen() {
            return CommitOutcome::Failed(error);
        }
        let fence = self.config.fence.clone();
        let Some(txns) = self.txns.as_mut() else {
            return CommitOutcome::Failed(StorageError::ReadOnly);
        };
        let mut txn = Txn::new();
        for request in group {
            for (shard, rows) in &request.writes {
                txn.write(
                    *shard,
                    rows.iter().map(|(row, diff)| (Ok(row.clone()), *diff)),
                );
            }
        }
        match txn.commit_at(txns, write_ts).await {
            // Applied in the background, off the acknowledgement path.
            Ok(Ok(_left_to_the_applier)) => {
                if let Some(applier) = &self.applier {
                    applier.notify(write_ts);
                }
            }
            Ok(Err(mismatch)) => return CommitOutcome::Late(mismatch.current),
            Err(error) => return CommitOutcome::Failed(fence.txns(error)),
        }
        let advance_to = group.iter().map(|r| r.advance_to).max().unwrap_or(write_ts);
        if advance_to > write_ts.step_forward()
            && let Err(error) = txns.advance_to(advance_to).await
        {
            return CommitOutcome::Failed(fence.txns(error));
        }
        CommitOutcome::Committed
    }

    /// Appends `updates` at the shard's upper `t` and moves the upper to `t + 1`.
    async fn append_direct(
        &mut self,
        id: GlobalId,
        shard: ShardId,
        desc: RelationDesc,
        updates: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>> {
        if !self.writable {
            return Err(StorageError::ReadOnly);
        }
        self.config
            .fence
            .check(&self.config.client, self.config.txns_shard)
            .await?;
        if !self.writers.contains_key(&shard) {
            let writer = self
                .config
                .client
                .open_writer::<T>(shard, desc)
                .await
                .map_err(persist_err)?;
            self.writers.insert(shard, writer);
        }
        let writer = self
            .writers
            .get_mut(&shard)
            .ok_or_else(|| StorageError::InvalidUsage(format!("no writer for {shard}")))?;
        loop {
            let upper = writer
                .fetch_recent_upper()
                .await
                .map_err(persist_err)?
                .clone();
            let Some(ts) = upper.as_option().copied() else {
                return Err(StorageError::InvalidUsage(format!("{id} is closed")));
            };
            let rows: Vec<_> = updates
                .iter()
                .map(|(r, d)| (Ok(r.clone()), ts, *d))
                .collect();
            let new_upper = Antichain::from_elem(ts.step_forward());
            match writer
                .compare_and_append(&rows, upper, new_upper.clone())
                .await
                .map_err(persist_err)?
            {
                Ok(()) => {
                    let _ = self.config.events.send(Event::Upper(id, new_upper));
                    return Ok(());
                }
                Err(_) => continue,
            }
        }
    }

    /// Moves a shard's critical since (and, for tables, the txns handles' holds).
    async fn downgrade(&mut self, shard: ShardId, since: &Antichain<T>, kind: ShardKind) {
        if kind == ShardKind::Table {
            if let Some(txns) = self.txns.as_mut() {
                let _ = txns.downgrade_data_since(shard, since).await;
            }
            if let Some(reader) = self.config.reader.lock().await.as_mut() {
                let _ = reader.downgrade_data_since(shard, since).await;
            }
        }
        if let Err(error) = self.downgrade_critical(shard, since).await {
            tracing::warn!(%shard, %error, "since downgrade failed");
        }
    }

    /// Moves the controller's critical since of `shard`, opening it if needed.
    pub(super) async fn downgrade_critical(
        &mut self,
        shard: ShardId,
        since: &Antichain<T>,
    ) -> Result<(), StorageError<T>> {
        if !self.since_handles.contains_key(&shard) {
            let handle = fence_shard(&self.config.client, shard, self.config.fence.epoch).await?;
            self.since_handles.insert(shard, handle);
        }
        let epoch = self.config.fence.epoch;
        let Some(handle) = self.since_handles.get_mut(&shard) else {
            return Ok(());
        };
        match handle
            .compare_and_downgrade_since(epoch, (epoch, since))
            .await
            .map_err(persist_err)?
        {
            Ok(_) => Ok(()),
            Err(mismatch) => Err(self.config.fence.fenced(mismatch.current)),
        }
    }
}
