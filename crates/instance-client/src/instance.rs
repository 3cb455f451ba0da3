//! [`Instance`]: a set of replicas that run the same ingestions, plus sinks on one of
//! them, driven by one [`CommandHistory`].
//!
//! Commands go to every replica, except `RunSink`, which goes only to the sink host: the
//! first replica added, and after that host is dropped, the lowest remaining id, which
//! then receives the live sinks. (The host does not move when a lower id is added later:
//! the protocol has no command to stop a sink on one replica only.) Each replica has a
//! task that keeps it connected; a reconnect replays the reduced history after a fresh
//! `Hello`. Once replayed, a connection is live: [`Instance::send`] writes each new
//! command straight into it, with no task in between.
//!
//! Responses are merged into [`InstanceResponse`]s:
//! - a collection's upper is the join of what replicas report, and never regresses;
//! - `DroppedId(id)` is final once every replica that ran `id`'s object has confirmed it
//!   (a replica that reconnects or is dropped no longer counts); the history then
//!   forgets `id` ([`CommandHistory::forget_dropped`]), so its final compaction is no
//!   longer replayed and it stops counting towards the history's length bound;
//! - statistics and statuses carry the replica id;
//! - with no replicas, every object gets a synthesised `Paused` status.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{
    Antichain, GlobalId, InstanceId, ReplicaId, SinkStatistics, SourceStatistics, Status,
    StatusUpdate, StorageError, StorageTimestamp, frontier_advances, set_frontier,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::history::CommandHistory;
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::transport::ReplicaConnector;

mod replica;
#[cfg(test)]
mod tests;

use replica::{ReplicaEvent, ReplicaTask, Responses};

/// What an [`Instance`] reports, merged across its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceResponse<T> {
    /// The instance-wide uppers of some collections advanced: each one's new upper,
    /// the join of every replica's reports.
    FrontierUppers(Vec<(GlobalId, Antichain<T>)>),
    /// One replica's uppers of some collections advanced, for the replica-frontiers
    /// introspection.
    ReplicaFrontierUppers {
        /// The replica.
        replica: ReplicaId,
        /// Each collection's upper as the replica reported it.
        uppers: Vec<(GlobalId, Antichain<T>)>,
    },
    /// Uppers that advanced both instance-wide and for one replica, to the same
    /// frontier: the common case (one replica, or replicas in step). It means
    /// `FrontierUppers(uppers)` and `ReplicaFrontierUppers { replica, uppers }`
    /// together, without a second copy of the list.
    SharedFrontierUppers {
        /// The replica that reported them.
        replica: ReplicaId,
        /// Each collection's new upper.
        uppers: Vec<(GlobalId, Antichain<T>)>,
    },
    /// Every replica that ran the object has dropped `id`.
    DroppedId(GlobalId),
    /// Statistics from one replica.
    Statistics {
        /// The replica.
        replica: ReplicaId,
        /// Per-source values.
        sources: Vec<(GlobalId, SourceStatistics)>,
        /// Per-sink values.
        sinks: Vec<(GlobalId, SinkStatistics)>,
    },
    /// A status change; `replica_id` is `None` for statuses the instance synthesises.
    Status(StatusUpdate),
}

/// Collections' new uppers, as a response lists them.
pub type UpperList<T> = [(GlobalId, Antichain<T>)];

impl<T> InstanceResponse<T> {
    /// The instance-wide uppers this response advances, if any.
    pub fn merged_uppers(&self) -> Option<&UpperList<T>> {
        match self {
            InstanceResponse::FrontierUppers(uppers)
            | InstanceResponse::SharedFrontierUppers { uppers, .. } => Some(uppers),
            _ => None,
        }
    }

    /// The replica uppers this response advances, and whose they are, if any.
    pub fn replica_uppers(&self) -> Option<(ReplicaId, &UpperList<T>)> {
        match self {
            InstanceResponse::ReplicaFrontierUppers { replica, uppers }
            | InstanceResponse::SharedFrontierUppers { replica, uppers } => {
                Some((*replica, uppers))
            }
            _ => None,
        }
    }
}

/// State shared between the instance and its replica tasks.
///
/// A replica task replays the history into a new connection and enters the
/// connection's command sender in `live` under one lock, and the instance records and
/// sends each command under the same lock: so every command reaches every connection
/// exactly once, in order, either in its replay or live, without passing through the
/// task.
pub(crate) struct Shared<T> {
    pub(crate) history: CommandHistory<T>,
    /// The sequence number of the last command recorded.
    pub(crate) seq: u64,
    /// The replica that runs the sinks: the lowest id.
    pub(crate) sink_host: Option<ReplicaId>,
    /// The command senders of the replicas' current connections, once replayed.
    pub(crate) live: BTreeMap<ReplicaId, mpsc::UnboundedSender<StorageCommand<T>>>,
}

impl<T: Clone> Shared<T> {
    /// Locks `shared`. Nothing holding the lock panics mid-update, so a poisoned lock
    /// still guards consistent state.
    pub(crate) fn lock(shared: &Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        match shared.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Sends `command` to every live connection that runs it: sinks only to the host.
    fn send_live(&self, command: &StorageCommand<T>, observer: Option<&dyn ConnectionObserver>) {
        for (id, connection) in &self.live {
            if matches!(command, StorageCommand::RunSink(_)) && Some(*id) != self.sink_host {
                continue;
            }
            // A closed connection is the replica task's to notice and to replace; the
            // history replays this command into the next one.
            if connection.send(command.clone()).is_ok()
                && let Some(observer) = observer
            {
                observer.command_sent(*id, command.kind());
            }
        }
    }
}

struct ReplicaHandle {
    task: JoinHandle<()>,
}

/// What runs on the instance: ingestions (with their collections) and sinks.
#[derive(Debug)]
enum Object {
    Ingestion {
        collections: BTreeSet<GlobalId>,
        exports: BTreeSet<GlobalId>,
        dropped: BTreeSet<GlobalId>,
    },
    Sink,
}

/// A drop that waits for replicas to confirm.
#[derive(Debug)]
struct PendingDrop {
    /// The command sequence number of the compaction to `[]`.
    seq: u64,
    waiting: BTreeSet<ReplicaId>,
}

/// Watches the traffic of an instance's replica connections, for metrics. Calls come
/// from the connections' tasks and must not block.
pub trait ConnectionObserver: Send + Sync {
    /// `command` (its kind) was sent to `replica`, replays included.
    fn command_sent(&self, replica: ReplicaId, kind: &'static str);
    /// A response of `kind` arrived from `replica`.
    fn response_received(&self, replica: ReplicaId, kind: &'static str);
}

/// A set of replicas that run the same objects. See the module docs.
///
/// All methods must be called within a tokio runtime: replicas run on spawned tasks.
/// [`Instance::recv`] is cancel-safe.
pub struct Instance<T> {
    id: InstanceId,
    epoch: u64,
    backoff: BackoffConfig,
    observer: Option<Arc<dyn ConnectionObserver>>,
    shared: Arc<Mutex<Shared<T>>>,
    replicas: BTreeMap<ReplicaId, ReplicaHandle>,
    events_tx: mpsc::UnboundedSender<(ReplicaId, ReplicaEvent<T>)>,
    events_rx: mpsc::UnboundedReceiver<(ReplicaId, ReplicaEvent<T>)>,
    objects: BTreeMap<GlobalId, Object>,
    /// The object each collection belongs to.
    owners: FxHashMap<GlobalId, GlobalId>,
    /// Per object, the replicas that ran it.
    ran_on: BTreeMap<GlobalId, BTreeSet<ReplicaId>>,
    pending_drops: BTreeMap<GlobalId, PendingDrop>,
    /// The responses of each replica's live connection.
    connections: BTreeMap<ReplicaId, Responses<T>>,
    uppers: FxHashMap<GlobalId, Uppers<T>>,
    ready: VecDeque<InstanceResponse<T>>,
}

impl<T> std::fmt::Debug for Instance<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("replicas", &self.replicas.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<T: StorageTimestamp> Instance<T> {
    /// An instance with no replicas, for a controller at `epoch`.
    pub fn new(id: InstanceId, epoch: u64, backoff: BackoffConfig) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Instance {
            id,
            epoch,
            backoff,
            observer: None,
            shared: Arc::new(Mutex::new(Shared {
                history: CommandHistory::new(),
                seq: 0,
                sink_host: None,
                live: BTreeMap::new(),
            })),
            replicas: BTreeMap::new(),
            events_tx,
            events_rx,
            objects: BTreeMap::new(),
            owners: FxHashMap::default(),
            ran_on: BTreeMap::new(),
            pending_drops: BTreeMap::new(),
            connections: BTreeMap::new(),
            uppers: FxHashMap::default(),
            ready: VecDeque::new(),
        }
    }

    /// Tells `observer` of every command sent and every response received on each
    /// replica connection added from now on (for metrics).
    pub fn with_observer(mut self, observer: Arc<dyn ConnectionObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The instance's id.
    pub fn id(&self) -> InstanceId {
        self.id
    }

    /// The ids of the replicas, in order.
    pub fn replica_ids(&self) -> impl Iterator<Item = ReplicaId> + '_ {
        self.replicas.keys().copied()
    }

    /// The replica that runs the sinks, if any replica exists. The host is sticky: it
    /// changes only when the host is dropped, to the lowest remaining replica id.
    pub fn sink_host(&self) -> Option<ReplicaId> {
        self.lock().sink_host
    }

    /// The instance-wide upper of a collection, once a replica reported one.
    pub fn upper(&self, id: GlobalId) -> Option<&Antichain<T>> {
        self.uppers.get(&id).map(|u| &u.merged)
    }

    /// The number of commands in the history.
    pub fn history_len(&self) -> usize {
        self.lock().history.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared<T>> {
        Shared::lock(&self.shared)
    }

    /// Adds a replica: its task connects, says Hello and replays the reduced history.
    /// Fails with [`StorageError::ReplicaExists`] if the id is already in the instance.
    pub fn add_replica(
        &mut self,
        replica: ReplicaId,
        connector: Arc<dyn ReplicaConnector<T>>,
    ) -> Result<(), StorageError<T>> {
        if self.replicas.contains_key(&replica) {
            return Err(StorageError::ReplicaExists {
                instance: self.id,
                replica,
            });
        }
        let new_host = self.sink_host().unwrap_or(replica);
        {
            let mut shared = self.lock();
            shared.history.reduce();
            shared.sink_host = Some(new_host);
        }
        let task = ReplicaTask {
            id: replica,
            epoch: self.epoch,
            connector,
            shared: Arc::clone(&self.shared),
            events: self.events_tx.clone(),
            backoff: self.backoff,
            observer: self.observer.clone(),
        };
        let task = tokio::spawn(task.run());
        self.replicas.insert(replica, ReplicaHandle { task });
        for (id, object) in &self.objects {
            if matches!(object, Object::Ingestion { .. }) || new_host == replica {
                self.ran_on.entry(*id).or_default().insert(replica);
            }
        }
        Ok(())
    }

    /// Drops a replica: aborts its task, and moves the sinks if it hosted them. Fails
    /// with [`StorageError::ReplicaMissing`] if the id is not in the instance.
    pub fn drop_replica(&mut self, replica: ReplicaId) -> Result<(), StorageError<T>> {
        let handle = self
            .replicas
            .remove(&replica)
            .ok_or(StorageError::ReplicaMissing {
                instance: self.id,
                replica,
            })?;
        handle.task.abort();
        self.connections.remove(&replica);
        let hosted = {
            let mut shared = self.lock();
            // Its connection closes with the last sender.
            shared.live.remove(&replica);
            let hosted = shared.sink_host == Some(replica);
            if hosted {
                shared.sink_host = self.replicas.keys().next().copied();
            }
            hosted
        };
        let new_host = self.sink_host();
        for replicas in self.ran_on.values_mut() {
            replicas.remove(&replica);
        }
        for uppers in self.uppers.values_mut() {
            uppers.replicas.retain(|(r, _)| *r != replica);
        }
        self.forget_replica_in_drops(replica, u64::MAX);
        if hosted && new_host.is_some() {
            self.move_sinks_from(Some(replica));
        }
        if self.replicas.is_empty() {
            let ids: Vec<GlobalId> = self.status_ids().collect();
            for id in ids {
                self.push_paused(id);
            }
        }
        Ok(())
    }

    /// Sends the live sinks to the current sink host, after the previous host left.
    fn move_sinks_from(&mut self, previous: Option<ReplicaId>) {
        let Some(host) = self.sink_host() else { return };
        // Locked through the field alone: the loop below updates `ran_on`.
        let mut shared = Shared::lock(&self.shared);
        shared.history.reduce();
        shared.seq += 1;
        let sinks: Vec<StorageCommand<T>> = shared
            .history
            .iter()
            .filter(|c| matches!(c, StorageCommand::RunSink(_)))
            .cloned()
            .collect();
        tracing::info!(instance = %self.id, ?previous, %host, sinks = sinks.len(), "moving sinks");
        for command in &sinks {
            if let StorageCommand::RunSink(run) = command {
                self.ran_on.entry(run.id).or_default().insert(host);
            }
            // Only the host runs sinks, and it may not be connected: then its replay
            // carries them.
            shared.send_live(command, self.observer.as_deref());
        }
    }

    /// Records `command` in the history and sends it to the replicas that run it.
    pub fn send(&mut self, command: StorageCommand<T>) {
        let (seq, host) = {
            let mut shared = Shared::lock(&self.shared);
            shared.send_live(&command, self.observer.as_deref());
            shared.history.push(command.clone());
            shared.seq += 1;
            (shared.seq, shared.sink_host)
        };
        self.track(command, seq, host);
    }

    /// Updates the object bookkeeping for a command just sent.
    fn track(&mut self, command: StorageCommand<T>, seq: u64, host: Option<ReplicaId>) {
        match command {
            StorageCommand::RunIngestion(run) => {
                let collections = run.collection_ids();
                for c in &collections {
                    self.owners.insert(*c, run.id);
                }
                let exports = run.description.source_exports.keys().copied().collect();
                let dropped = match self.objects.remove(&run.id) {
                    Some(Object::Ingestion { dropped, .. }) => dropped,
                    _ => BTreeSet::new(),
                };
                self.objects.insert(
                    run.id,
                    Object::Ingestion {
                        collections,
                        exports,
                        dropped,
                    },
                );
                self.ran_on
                    .entry(run.id)
                    .or_default()
                    .extend(self.replicas.keys().copied());
                if self.replicas.is_empty() {
                    let ids: Vec<GlobalId> = self.object_status_ids(run.id).collect();
                    ids.into_iter().for_each(|id| self.push_paused(id));
                }
            }
            StorageCommand::RunSink(run) => {
                self.owners.insert(run.id, run.id);
                self.objects.insert(run.id, Object::Sink);
                self.ran_on.entry(run.id).or_default().extend(host);
                if self.replicas.is_empty() {
                    self.push_paused(run.id);
                }
            }
            StorageCommand::AllowCompaction { id, frontier } if frontier.is_empty() => {
                self.track_drop(id, seq);
            }
            _ => {}
        }
    }

    fn track_drop(&mut self, id: GlobalId, seq: u64) {
        let Some(owner) = self.owners.get(&id).copied() else {
            return;
        };
        let waiting = self.ran_on.get(&owner).cloned().unwrap_or_default();
        let object_gone = match self.objects.get_mut(&owner) {
            Some(Object::Ingestion {
                collections,
                dropped,
                ..
            }) => {
                dropped.insert(id);
                collections.is_subset(dropped)
            }
            Some(Object::Sink) => true,
            None => false,
        };
        self.owners.remove(&id);
        if object_gone {
            self.objects.remove(&owner);
            self.ran_on.remove(&owner);
            self.owners.retain(|_, o| *o != owner);
        }
        self.pending_drops.insert(id, PendingDrop { seq, waiting });
        self.complete_drops();
    }

    /// Stops waiting for `replica` on drops sent at or before `seq`.
    fn forget_replica_in_drops(&mut self, replica: ReplicaId, seq: u64) {
        for pending in self.pending_drops.values_mut() {
            if pending.seq <= seq {
                pending.waiting.remove(&replica);
            }
        }
        self.complete_drops();
    }

    fn complete_drops(&mut self) {
        let done: Vec<GlobalId> = self
            .pending_drops
            .iter()
            .filter(|(_, p)| p.waiting.is_empty())
            .map(|(id, _)| *id)
            .collect();
        if done.is_empty() {
            return;
        }
        // Every replica that ran these ids confirmed their drop: the history need no
        // longer replay their final compactions.
        self.lock().history.forget_dropped(done.iter().copied());
        for id in done {
            self.pending_drops.remove(&id);
            self.uppers.remove(&id);
            self.ready.push_back(InstanceResponse::DroppedId(id));
        }
    }

    /// The ids that get statuses: ingestions, their exports, and sinks.
    fn status_ids(&self) -> impl Iterator<Item = GlobalId> + '_ {
        self.objects
            .keys()
            .flat_map(|id| self.object_status_ids(*id))
    }

    fn object_status_ids(&self, id: GlobalId) -> impl Iterator<Item = GlobalId> + '_ {
        let exports = match self.objects.get(&id) {
            Some(Object::Ingestion {
                exports, dropped, ..
            }) => exports
                .iter()
                .filter(|e| !dropped.contains(e))
                .copied()
                .collect(),
            _ => Vec::new(),
        };
        std::iter::once(id).chain(exports.into_iter().filter(move |e| *e != id))
    }

    /// Pauses `id`, with no replica to run it. Only a newly run object needs this: while
    /// there is no replica every other object is already `Paused` (the last replica's
    /// drop or its own run paused it, and a dropped replica's late statuses are
    /// ignored), so pausing all of them again on each run, as the reference does,
    /// would cost O(objects) per run (quadratic while a host creates its objects before
    /// any replica) and write the same status-history row again for each.
    fn push_paused(&mut self, id: GlobalId) {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.ready.push_back(InstanceResponse::Status(StatusUpdate {
            id,
            status: Status::Paused,
            timestamp_ms,
            error: None,
            hints: vec!["there are no replicas running this object".to_owned()],
            replica_id: None,
        }));
    }

    /// The next merged response. Waits until there is one; cancel-safe.
    pub async fn recv(&mut self) -> InstanceResponse<T> {
        loop {
            if let Some(response) = self.ready.pop_front() {
                return response;
            }
            let Instance {
                events_rx,
                connections,
                ..
            } = self;
            // The instance holds an events sender, so that channel never closes.
            let next = std::future::poll_fn(|cx| {
                if let Poll::Ready(Some(event)) = events_rx.poll_recv(cx) {
                    return Poll::Ready(Err(event));
                }
                for (replica, responses) in connections.iter_mut() {
                    if let Poll::Ready(read) = responses.poll_read(cx) {
                        return Poll::Ready(Ok((*replica, read)));
                    }
                }
                Poll::Pending
            })
            .await;
            match next {
                Err((replica, event)) => self.absorb(replica, event),
                Ok((replica, read)) => self.absorb_read(replica, read),
            }
        }
    }

    /// The next merged response if one is ready now.
    pub fn try_recv(&mut self) -> Option<InstanceResponse<T>> {
        while self.ready.is_empty() {
            // Events first: a connection's responses are read only once its
            // `Connected` is absorbed, and a `Disconnected` reads the rest of them.
            if let Ok((replica, event)) = self.events_rx.try_recv() {
                self.absorb(replica, event);
            } else if !self.try_read() {
                break;
            }
        }
        self.ready.pop_front()
    }

    /// Folds one replica event into the merged state.
    fn absorb(&mut self, replica: ReplicaId, event: ReplicaEvent<T>) {
        if !self.replicas.contains_key(&replica) {
            return;
        }
        match event {
            ReplicaEvent::Connected { seq, responses } => {
                tracing::info!(instance = %self.id, %replica, "replica connected");
                self.close_responses(replica);
                self.connections.insert(replica, responses);
                self.forget_replica_in_drops(replica, seq);
            }
            ReplicaEvent::Disconnected => {
                tracing::info!(instance = %self.id, %replica, "replica disconnected");
                self.close_responses(replica);
            }
        }
    }

    /// Reads what is left of `replica`'s current connection's responses, and lets go of
    /// them.
    fn close_responses(&mut self, replica: ReplicaId) {
        if let Some(mut responses) = self.connections.remove(&replica) {
            while let Some(Some(response)) = responses.try_read() {
                self.absorb_read(replica, Some(response));
            }
        }
    }

    /// Folds what was read from `replica`'s connection into the merged state: a
    /// response, or (`None`) the end of its responses, which lets go of the connection
    /// (its task then reconnects).
    fn absorb_read(&mut self, replica: ReplicaId, read: Option<ReplicaResponse<T>>) {
        let Some(response) = read else {
            self.connections.remove(&replica);
            return;
        };
        if let Some(observer) = &self.observer {
            observer.response_received(replica, response.kind());
        }
        self.absorb_response(replica, response);
    }

    /// Reads one response a live connection already holds, or the end of one's
    /// responses; false if there was nothing to read.
    fn try_read(&mut self) -> bool {
        let read = self
            .connections
            .iter_mut()
            .find_map(|(replica, responses)| Some((*replica, responses.try_read()?)));
        let Some((replica, read)) = read else {
            return false;
        };
        self.absorb_read(replica, read);
        true
    }

    /// Folds one replica's reported uppers into its own and the instance-wide ones, and
    /// queues what advanced. A report that advanced both (the common case) stays in
    /// the reported batch, which becomes a `SharedFrontierUppers`; the rest
    /// go to a replica-only and an instance-only batch.
    fn absorb_uppers(&mut self, replica: ReplicaId, mut reported: Vec<(GlobalId, Antichain<T>)>) {
        let mut replica_only = Vec::new();
        let mut merged_only = Vec::new();
        reported.retain(|(id, upper)| {
            // Only ids that run here, or whose drop is not final, have an upper (their
            // entry goes when the drop completes): a late report must not bring one
            // back.
            let uppers = match self.uppers.entry(*id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    if !self.owners.contains_key(id) && !self.pending_drops.contains_key(id) {
                        return false;
                    }
                    entry.insert(Uppers {
                        merged: Antichain::from_elem(T::minimum()),
                        replicas: SmallVec::new(),
                    })
                }
            };
            let own = match uppers.replicas.iter_mut().find(|(r, _)| *r == replica) {
                Some((_, own)) => advance_to(own, upper),
                None => {
                    uppers.replicas.push((replica, upper.clone()));
                    true
                }
            };
            // An upper that advances a frontier becomes it.
            match (own, advance_to(&mut uppers.merged, upper)) {
                (true, true) => return true,
                (true, false) => replica_only.push((*id, upper.clone())),
                (false, true) => merged_only.push((*id, upper.clone())),
                (false, false) => {}
            }
            false
        });
        if !reported.is_empty() {
            self.ready
                .push_back(InstanceResponse::SharedFrontierUppers {
                    replica,
                    uppers: reported,
                });
        }
        if !replica_only.is_empty() {
            self.ready
                .push_back(InstanceResponse::ReplicaFrontierUppers {
                    replica,
                    uppers: replica_only,
                });
        }
        if !merged_only.is_empty() {
            self.ready
                .push_back(InstanceResponse::FrontierUppers(merged_only));
        }
    }

    fn absorb_response(&mut self, replica: ReplicaId, response: ReplicaResponse<T>) {
        match response {
            ReplicaResponse::FrontierUppers(reported) => {
                self.absorb_uppers(replica, reported);
            }
            ReplicaResponse::DroppedId(id) => {
                if let Some(pending) = self.pending_drops.get_mut(&id) {
                    pending.waiting.remove(&replica);
                    self.complete_drops();
                }
            }
            ReplicaResponse::StatisticsUpdates { sources, sinks } => {
                self.ready.push_back(InstanceResponse::Statistics {
                    replica,
                    sources,
                    sinks,
                });
            }
            ReplicaResponse::StatusUpdate(mut status) => {
                status.replica_id = Some(replica);
                self.ready.push_back(InstanceResponse::Status(status));
            }
        }
    }
}

/// What the instance knows of one collection's upper.
#[derive(Debug)]
struct Uppers<T> {
    /// The join of every replica's reports (the minimum before any report).
    merged: Antichain<T>,
    /// Each reporting replica's own upper; instances have few replicas, and one is
    /// kept inline (no pointer to chase per report).
    replicas: SmallVec<[(ReplicaId, Antichain<T>); 1]>,
}

/// Moves `current` to `upper` if that advances it (times are totally ordered, so the
/// join of two frontiers is the later one); false if it stays where it was.
fn advance_to<T: StorageTimestamp>(current: &mut Antichain<T>, upper: &Antichain<T>) -> bool {
    let advances = frontier_advances(current, upper);
    if advances {
        set_frontier(current, upper);
    }
    advances
}

impl<T> Drop for Instance<T> {
    fn drop(&mut self) {
        for handle in self.replicas.values() {
            handle.task.abort();
        }
    }
}
