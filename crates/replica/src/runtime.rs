//! The timely runtime of a replica: `W` worker threads (optionally in several processes)
//! that build and drop dataflows as the command handler tells them.
//!
//! The handler sends every [`WorkerCommand`] to every local worker in the same order,
//! so all workers build the same dataflows in the same order, as timely requires. In
//! cluster mode every process runs its own handler on the same command stream.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_controller_api::{GlobalId, ShardId};
use timely::communication::WorkerGuards;
use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

use crate::context::Ctx;
use crate::ingest::{self, IngestionPlan};
use crate::sink::{self, SinkPlan};

/// What a worker does next.
pub(crate) enum WorkerCommand {
    /// Build an ingestion dataflow.
    StartIngestion {
        id: GlobalId,
        plan: Arc<IngestionPlan>,
        stop: Arc<AtomicBool>,
    },
    /// Build a sink dataflow.
    StartSink {
        id: GlobalId,
        plan: Arc<SinkPlan>,
        stop: Arc<AtomicBool>,
    },
    /// Drop the dataflow of `id`; worker 0 then releases the handles on `release` and
    /// reports `dropped` as dropped.
    Stop {
        id: GlobalId,
        dropped: Vec<GlobalId>,
        release: Vec<ShardId>,
    },
    /// Report `id` dropped (worker 0), with no dataflow to drop: see
    /// `Replica::confirm_drop`.
    Confirm { id: GlobalId },
    /// Drop everything and exit.
    Shutdown,
}

/// Where the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This process's index into `addresses`.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
}

/// The running workers of this process.
pub(crate) struct Runtime {
    senders: Vec<Sender<WorkerCommand>>,
    guards: Option<WorkerGuards<()>>,
}

impl Runtime {
    pub(crate) fn start(
        workers: usize,
        cluster: Option<&ClusterConfig>,
        ctx: Arc<Ctx>,
    ) -> Result<Runtime, String> {
        let workers = workers.max(1);
        let communication = match cluster {
            None if workers == 1 => CommunicationConfig::Thread,
            None => CommunicationConfig::Process(workers),
            Some(c) => CommunicationConfig::Cluster {
                threads: workers,
                process: c.process,
                addresses: c.addresses.clone(),
                report: false,
                zerocopy: false,
            },
        };
        let first = cluster.map_or(0, |c| c.process * workers);
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = BTreeMap::new();
        for i in 0..workers {
            let (tx, rx) = std::sync::mpsc::channel();
            senders.push(tx);
            receivers.insert(first + i, rx);
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let config = timely::Config {
            communication,
            worker: WorkerConfig::default(),
        };
        let guards = timely::execute(config, move |worker| {
            let rx = receivers
                .lock()
                .ok()
                .and_then(|mut r| r.remove(&worker.index()));
            if let Some(rx) = rx {
                worker_loop(worker, &ctx, &rx);
            }
        })?;
        Ok(Runtime {
            senders,
            guards: Some(guards),
        })
    }

    /// Sends a command to every local worker.
    pub(crate) fn broadcast(&self, make: impl Fn() -> WorkerCommand) {
        for tx in &self.senders {
            // A worker that exited (shutdown) needs no more commands.
            let _ = tx.send(make());
        }
    }

    /// Stops every worker and waits for them.
    pub(crate) fn shutdown(&mut self) {
        self.broadcast(|| WorkerCommand::Shutdown);
        if let Some(guards) = self.guards.take() {
            // A worker that panicked has already stopped; there is nothing more to do.
            let _ = guards.join();
        }
    }
}

fn worker_loop(worker: &mut Worker, ctx: &Arc<Ctx>, rx: &Receiver<WorkerCommand>) {
    let mut dataflows: BTreeMap<GlobalId, usize> = BTreeMap::new();
    let mut next_stats = Instant::now() + ctx.statistics_interval;
    loop {
        loop {
            match rx.try_recv() {
                Ok(WorkerCommand::Shutdown) | Err(TryRecvError::Disconnected) => {
                    for (_, index) in std::mem::take(&mut dataflows) {
                        worker.drop_dataflow(index);
                    }
                    return;
                }
                Ok(command) => apply(worker, ctx, &mut dataflows, command),
                Err(TryRecvError::Empty) => break,
            }
        }
        worker.step_or_park(Some(Duration::from_millis(2)));
        if worker.index() == 0 && Instant::now() >= next_stats {
            ctx.reporter.statistics();
            next_stats = Instant::now() + ctx.statistics_interval;
        }
    }
}

#[tracing::instrument(level = "debug", name = "replica.worker", skip_all, fields(worker = worker.index()))]
fn apply(
    worker: &mut Worker,
    ctx: &Arc<Ctx>,
    dataflows: &mut BTreeMap<GlobalId, usize>,
    command: WorkerCommand,
) {
    match command {
        WorkerCommand::StartIngestion { id, plan, stop } => {
            let index = worker.next_dataflow_index();
            ingest::dataflow::build(worker, Arc::clone(ctx), plan, stop);
            started(worker, ctx, dataflows, id, index);
        }
        WorkerCommand::StartSink { id, plan, stop } => {
            let index = worker.next_dataflow_index();
            sink::dataflow::build(worker, Arc::clone(ctx), plan, stop);
            started(worker, ctx, dataflows, id, index);
        }
        WorkerCommand::Stop {
            id,
            dropped,
            release,
        } => {
            if let Some(index) = dataflows.remove(&id) {
                worker.drop_dataflow(index);
            }
            if worker.index() == 0 {
                for shard in release {
                    ctx.shards.release(shard);
                }
                for id in dropped {
                    ctx.reporter.dropped(id);
                }
            }
        }
        WorkerCommand::Confirm { id } => {
            if worker.index() == 0 {
                ctx.reporter.confirm_dropped(id);
            }
        }
        WorkerCommand::Shutdown => {}
    }
}

fn started(
    worker: &Worker,
    ctx: &Ctx,
    dataflows: &mut BTreeMap<GlobalId, usize>,
    id: GlobalId,
    index: usize,
) {
    if let Some(previous) = dataflows.insert(id, index) {
        // The handler always stops before it restarts; keep the newest regardless.
        let _ = previous;
    }
    if worker.index() == 0 {
        ctx.dataflow_starts.fetch_add(1, Ordering::SeqCst);
    }
}
