//! [`Replica`]: the command handler. It takes [`StorageCommand`]s one at a time (the
//! "command in" half of the transport seam), keeps the protocol state (epoch, replay,
//! write gate, configuration) and tells the timely workers what to build and drop.
//! Responses leave through a [`ResponseSink`].
//!
//! # Protocol
//!
//! - `Hello{epoch}` starts a replay. A lower epoch than one already seen makes the
//!   replica ignore that connection's commands until the next acceptable `Hello`.
//! - During a replay, `RunIngestion`, `RunSink` and `AllowCompaction` are collected;
//!   `InitializationComplete` reconciles them against what runs ([`crate::reconcile`]).
//! - Afterwards commands apply directly; a `Run*` with an unchanged description is a
//!   no-op, a changed one restarts the object (an ingestion restarted without some of
//!   its outputs releases their shards, as a drop does).
//! - `AllowCompaction(id, [])` of an ingestion or sink stops it; once its dataflow is
//!   dropped the replica reports `DroppedId` for it (and, for an ingestion, for every
//!   collection it writes). `AllowCompaction(id, [])` of an id that no running object
//!   writes (say a remap collection whose ingestion was dropped before) is confirmed
//!   with `DroppedId` right away, after any earlier stop. A non-empty frontier downgrades the since of the shard this
//!   replica writes for `id`, once writes are allowed.
//! - No command panics the replica. An object the replica cannot run is reported
//!   `Stalled` with the reason, and everything else keeps running.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use strata_controller_api::{Antichain, GlobalId, ShardId, Timestamp};
use strata_instance_client::{ReplicaParameters, RunIngestionCommand, Status, StorageCommand};

use crate::connector::ConnectorRegistry;
use crate::context::{
    Clock, Ctx, FaultHook, ReplicaObserver, Reporter, ResponseSink, system_clock,
};
use crate::ingest::plan_ingestion;
use crate::reconcile::{ObjectDesc, desired_objects, reconcile};
use crate::runtime::{ClusterConfig, Runtime, WorkerCommand};
use crate::shard::Shards;
use crate::sink::plan_sink;

/// The default of [`ReplicaConfig::max_ticks_per_round`].
pub const DEFAULT_MAX_TICKS_PER_ROUND: u64 = 16;

/// How to run a replica.
#[derive(Clone)]
pub struct ReplicaConfig {
    /// Timely worker threads in this process.
    pub workers: usize,
    /// Several processes, if set (timely cluster mode).
    pub cluster: Option<ClusterConfig>,
    /// Picks binding timestamps (wall-clock milliseconds by default).
    pub clock: Clock,
    /// Stops every source at this offset (benchmarks and tests).
    pub offset_limit: Option<u64>,
    /// How often statistics are reported.
    pub statistics_interval: Duration,
    /// How long a stalled dataflow waits before it retries.
    pub retry_backoff: Duration,
    /// Crash injection for tests.
    pub faults: Option<Arc<dyn FaultHook>>,
    /// Told of commits, messages and dataflows, for metrics.
    pub observer: Option<Arc<dyn ReplicaObserver>>,
    /// Under load, one round binds up to this many ticks' worth of offsets: a source
    /// with no tick interval, or one behind its schedule, catches up in larger rounds,
    /// so the round's two `compare_and_append`s (remap, then data) cover more rows.
    /// `1` binds exactly one tick per round.
    pub max_ticks_per_round: u64,
    /// The source connectors the replica can run, by kind: the built-ins by default;
    /// an embedding program registers its own here.
    pub connectors: ConnectorRegistry,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            workers: 1,
            cluster: None,
            clock: system_clock(),
            offset_limit: None,
            statistics_interval: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(100),
            faults: None,
            observer: None,
            max_ticks_per_round: DEFAULT_MAX_TICKS_PER_ROUND,
            connectors: ConnectorRegistry::default(),
        }
    }
}

impl std::fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("workers", &self.workers)
            .field("cluster", &self.cluster)
            .field("offset_limit", &self.offset_limit)
            .field("max_ticks_per_round", &self.max_ticks_per_round)
            .field("connectors", &self.connectors)
            .finish_non_exhaustive()
    }
}

/// A replica failed to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// Timely could not start its workers (for example a cluster peer is unreachable).
    #[error("cannot start timely workers: {reason}")]
    Timely {
        /// Timely's message.
        reason: String,
    },
    /// The thread that applies a server's commands could not be started.
    #[error("cannot start the command thread: {reason}")]
    CommandThread {
        /// The operating system's message.
        reason: String,
    },
}

/// Where the handler is in the protocol.
#[derive(Debug)]
enum Session {
    /// No acceptable `Hello` yet on this connection: commands are ignored.
    AwaitingHello,
    /// Collecting the replayed history.
    Replaying(Vec<StorageCommand<Timestamp>>),
    /// Applying commands as they come.
    Live,
}

/// An object the controller asked this replica to run.
struct Running {
    desc: ObjectDesc,
    /// `None` when the description could not be run (the object is stalled).
    stop: Option<Arc<AtomicBool>>,
}

/// A replica process: the command handler plus its timely workers.
pub struct Replica {
    ctx: Arc<Ctx>,
    runtime: Runtime,
    session: Session,
    max_epoch: Option<u64>,
    running: BTreeMap<GlobalId, Running>,
    compaction: BTreeMap<GlobalId, Antichain<Timestamp>>,
    parameters: ReplicaParameters,
    connectors: ConnectorRegistry,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("session", &self.session)
            .field("max_epoch", &self.max_epoch)
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Starts the workers. Responses go to `responses`; shards come from `shards`.
    pub fn start(
        config: ReplicaConfig,
        shards: Arc<dyn Shards>,
        responses: Arc<dyn ResponseSink>,
    ) -> Result<Replica, ReplicaError> {
        let ctx = Arc::new(Ctx {
            shards,
            reporter: Reporter::new(responses),
            writes_allowed: AtomicBool::new(false),
            clock: config.clock,
            offset_limit: config.offset_limit,
            retry_backoff: config.retry_backoff,
            statistics_interval: config.statistics_interval,
            dataflow_starts: AtomicU64::new(0),
            faults: config.faults,
            observer: config.observer,
            max_ticks_per_round: config.max_ticks_per_round.max(1),
        });
        let connectors = config.connectors;
        let runtime = Runtime::start(config.workers, config.cluster.as_ref(), Arc::clone(&ctx))
            .map_err(|reason| ReplicaError::Timely { reason })?;
        Ok(Replica {
            ctx,
            runtime,
            session: Session::AwaitingHello,
            max_epoch: None,
            running: BTreeMap::new(),
            compaction: BTreeMap::new(),
            parameters: ReplicaParameters::default(),
            connectors,
        })
    }

    /// How many dataflows worker 0 has built so far.
    pub fn dataflow_starts(&self) -> u64 {
        self.ctx.dataflow_starts.load(Ordering::SeqCst)
    }

    /// The merged configuration the controller sent.
    pub fn parameters(&self) -> &ReplicaParameters {
        &self.parameters
    }

    /// Handles one command from the controller.
    #[tracing::instrument(
        level = "debug",
        name = "replica.command",
        skip_all,
        fields(
            command = crate::trace::command_kind(&command),
            collection = crate::trace::command_collection(&command).map(tracing::field::display),
            epoch = self.max_epoch,
        )
    )]
    pub fn handle(&mut self, command: StorageCommand<Timestamp>) {
        tracing::debug!("command received");
        self.apply(command);
        if let Some(observer) = &self.ctx.observer {
            observer.dataflows_running(self.running.len());
        }
    }

    fn apply(&mut self, command: StorageCommand<Timestamp>) {
        if let StorageCommand::Hello { epoch, .. } = command {
            if self.max_epoch.is_some_and(|seen| epoch < seen) {
                self.session = Session::AwaitingHello;
            } else {
                self.max_epoch = Some(epoch);
                self.session = Session::Replaying(Vec::new());
                self.ctx.reporter.resend();
            }
            return;
        }
        match (&mut self.session, command) {
            (Session::AwaitingHello, _) => {}
            (_, StorageCommand::AllowWrites) => {
                self.ctx.writes_allowed.store(true, Ordering::SeqCst);
                let pending: Vec<_> = self.compaction.keys().copied().collect();
                pending.into_iter().for_each(|id| self.downgrade_since(id));
            }
            (_, StorageCommand::UpdateConfiguration(parameters)) => {
                self.parameters.update(parameters)
            }
            (Session::Replaying(buffer), StorageCommand::InitializationComplete) => {
                let replay = std::mem::take(buffer);
                self.session = Session::Live;
                self.finish_replay(replay);
            }
            (Session::Replaying(buffer), command) => buffer.push(command),
            (Session::Live, StorageCommand::RunIngestion(cmd)) => {
                self.run(ObjectDesc::Ingestion(cmd))
            }
            (Session::Live, StorageCommand::RunSink(cmd)) => self.run(ObjectDesc::Sink(cmd)),
            (Session::Live, StorageCommand::AllowCompaction { id, frontier }) => {
                self.compact(id, frontier)
            }
            (
                Session::Live,
                StorageCommand::InitializationComplete | StorageCommand::Hello { .. },
            ) => {}
        }
    }

    fn finish_replay(&mut self, replay: Vec<StorageCommand<Timestamp>>) {
        let desired = desired_objects(&replay);
        let current: BTreeMap<GlobalId, ObjectDesc> = self
            .running
            .iter()
            .map(|(id, r)| (*id, r.desc.clone()))
            .collect();
        let plan = reconcile(&current, &desired);
        for id in plan.drop {
            self.stop(id, true);
        }
        for id in plan.restart.into_iter().chain(plan.start) {
            if let Some(desc) = desired.get(&id) {
                self.restart(desc.clone());
            }
        }
        for command in replay {
            if let StorageCommand::AllowCompaction { id, frontier } = command {
                match frontier.is_empty() {
                    // Dropped objects stopped above; a dropped collection of no running
                    // ingestion is confirmed again, as the drop may predate this session.
                    true if !self.running.contains_key(&id) => self.confirm_drop(id),
                    true => {}
                    false => self.compact(id, frontier),
                }
            }
        }
    }

    fn run(&mut self, desc: ObjectDesc) {
        let id = desc.id();
        match self.running.get(&id) {
            Some(running) if running.desc == desc => {}
            Some(_) => self.restart(desc),
            None => self.start_object(desc),
        }
    }

    /// Stops the running object of `desc`'s id, if any, and starts `desc`. Shards the
    /// old ingestion wrote and the new one does not (its dropped subsources) are
    /// released once the old dataflow is gone, so they can be finalized.
    fn restart(&mut self, desc: ObjectDesc) {
        let id = desc.id();
        let orphaned = match (self.running.get(&id).map(|r| &r.desc), &desc) {
            (Some(ObjectDesc::Ingestion(old)), ObjectDesc::Ingestion(new)) => {
                let kept = ingestion_shards(new);
                ingestion_shards(old)
                    .into_iter()
                    .filter(|shard| !kept.contains(shard))
                    .collect()
            }
            _ => Vec::new(),
        };
        self.stop_releasing(id, false, orphaned);
        self.start_object(desc);
    }

    fn start_object(&mut self, desc: ObjectDesc) {
        let id = desc.id();
        let stop = Arc::new(AtomicBool::new(false));
        let started = match &desc {
            ObjectDesc::Ingestion(cmd) => plan_ingestion(cmd, &self.connectors)
                .map(|plan| {
                    for meta in cmd.storage_metadata.values() {
                        self.ctx
                            .shards
                            .register_schema(meta.data_shard, &meta.relation_desc);
                    }
                    if !cmd.storage_metadata.contains_key(&plan.remap_id) {
                        self.ctx
                            .shards
                            .register_schema(plan.remap_shard, &crate::remap::remap_desc());
                    }
                    let plan = Arc::new(plan);
                    self.runtime.broadcast(|| WorkerCommand::StartIngestion {
                        id,
                        plan: Arc::clone(&plan),
                        stop: Arc::clone(&stop),
                    });
                })
                .map_err(|e| (e.to_string(), e.hint())),
            ObjectDesc::Sink(cmd) => plan_sink(cmd, &self.connectors)
                .map(|plan| {
                    let meta = &cmd.from_metadata;
                    self.ctx
                        .shards
                        .register_schema(meta.data_shard, &meta.relation_desc);
                    let plan = Arc::new(plan);
                    self.runtime.broadcast(|| WorkerCommand::StartSink {
                        id,
                        plan: Arc::clone(&plan),
                        stop: Arc::clone(&stop),
                    });
                })
                .map_err(|e| (e.to_string(), e.hint())),
        };
        let stop = match started {
            Ok(()) => Some(stop),
            Err((error, hint)) => {
                self.ctx
                    .reporter
                    .status(id, Status::Stalled, Some(error), vec![hint.to_owned()]);
                None
            }
        };
        self.running.insert(id, Running { desc, stop });
    }

    /// Stops `id` if it runs; with `dropped`, reports it (and its collections) dropped
    /// once its dataflow is gone.
    fn stop(&mut self, id: GlobalId, dropped: bool) {
        self.stop_releasing(id, dropped, Vec::new());
    }

    /// As [`Self::stop`], also releasing the shards in `release` once the dataflow is
    /// gone.
    fn stop_releasing(&mut self, id: GlobalId, dropped: bool, mut release: Vec<ShardId>) {
        let Some(running) = self.running.remove(&id) else {
            return;
        };
        let ids: Vec<GlobalId> = match (&running.desc, dropped) {
            (_, false) => Vec::new(),
            (ObjectDesc::Ingestion(cmd), true) => cmd.collection_ids().into_iter().collect(),
            (ObjectDesc::Sink(_), true) => vec![id],
        };
        if let (ObjectDesc::Ingestion(cmd), true) = (&running.desc, dropped) {
            release.extend(ingestion_shards(cmd));
        }
        // A sink only reads its input, whose owner releases it.
        match running.stop {
            Some(stop) => {
                stop.store(true, Ordering::SeqCst);
                self.runtime.broadcast(|| WorkerCommand::Stop {
                    id,
                    dropped: ids.clone(),
                    release: release.clone(),
                });
            }
            None => {
                release.into_iter().for_each(|s| self.ctx.shards.release(s));
                ids.into_iter().for_each(|id| self.ctx.reporter.dropped(id));
            }
        }
        self.compaction.remove(&id);
    }

    fn compact(&mut self, id: GlobalId, frontier: Antichain<Timestamp>) {
        if frontier.is_empty() {
            if self.running.contains_key(&id) {
                self.stop(id, true);
            } else {
                self.confirm_drop(id);
            }
            return;
        }
        self.compaction.insert(id, frontier);
        if self.ctx.writes_allowed() {
            self.downgrade_since(id);
        }
    }

    /// Confirms the final compaction of `id`, which runs as no object here: once no
    /// running ingestion writes it, the replica holds nothing for it (an ingestion
    /// stopped earlier released its shards), so it reports `DroppedId` again. The
    /// confirmation travels behind every earlier `Stop` through the workers, so it
    /// never overtakes the release of a dataflow still shutting down. A collection of a
    /// running ingestion is confirmed when that ingestion stops.
    fn confirm_drop(&mut self, id: GlobalId) {
        self.compaction.remove(&id);
        if self.owned_shard(id).is_some() {
            return;
        }
        self.runtime.broadcast(|| WorkerCommand::Confirm { id });
    }

    /// The shard this replica writes for collection `id`, if any.
    fn owned_shard(&self, id: GlobalId) -> Option<ShardId> {
        self.running
            .values()
            .find_map(|running| match &running.desc {
                ObjectDesc::Ingestion(cmd) => cmd.storage_metadata.get(&id).map(|m| m.data_shard),
                ObjectDesc::Sink(_) => None,
            })
    }

    fn downgrade_since(&mut self, id: GlobalId) {
        let (Some(shard), Some(frontier)) = (self.owned_shard(id), self.compaction.get(&id)) else {
            return;
        };
        if let Err(e) = self.ctx.shards.downgrade_since(shard, frontier) {
            let hint = "the replica retries on the next AllowCompaction".to_owned();
            self.ctx
                .reporter
                .status(id, Status::Stalled, Some(e.to_string()), vec![hint]);
        }
    }

    /// Stops every dataflow and the workers.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    pub(crate) fn shutdown_inner(&mut self) {
        for running in self.running.values() {
            if let Some(stop) = &running.stop {
                stop.store(true, Ordering::SeqCst);
            }
        }
        self.runtime.shutdown();
        self.ctx.shards.close();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

/// Every shard an ingestion's collections live in: their data shards and remap shards.
fn ingestion_shards(cmd: &RunIngestionCommand<Timestamp>) -> Vec<ShardId> {
    let mut shards: Vec<ShardId> = cmd
        .storage_metadata
        .values()
        .flat_map(|m| std::iter::once(m.data_shard).chain(m.remap_shard))
        .collect();
    shards.sort();
    shards.dedup();
    shards
}
