//! What every dataflow of a replica shares: the shards, the response channel, the
//! write gate, the clock, statistics counters and the report deduplication.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_controller_api::{Antichain, GlobalId, Timestamp, frontier_advances};
use strata_instance_client::{
    ReplicaResponse, SinkStatistics, SourceStatistics, Status, StatusUpdate,
};

use crate::shard::Shards;

/// Where a replica sends its responses: the "response out" half of the command seam.
///
/// # Contract
///
/// `send` never blocks for long and never panics; a closed connection drops responses.
pub trait ResponseSink: Send + Sync {
    /// Sends one response to the controller.
    fn send(&self, response: ReplicaResponse<Timestamp>);
}

impl ResponseSink for Mutex<std::sync::mpsc::Sender<ReplicaResponse<Timestamp>>> {
    fn send(&self, response: ReplicaResponse<Timestamp>) {
        if let Ok(tx) = self.lock() {
            // A closed receiver means the controller went away; dropping is correct.
            let _ = tx.send(response);
        }
    }
}

/// The clock that picks binding timestamps.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// A clock of wall-clock milliseconds since the Unix epoch.
pub fn system_clock() -> Clock {
    Arc::new(|| Timestamp::new(now_millis()))
}

pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Points at which tests may inject a crash that no shard operation models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPoint {
    /// A sink has written a batch to its destination but not yet recorded progress.
    SinkAfterData,
}

/// Decides whether to crash at a [`FaultPoint`]. Production replicas use none.
pub trait FaultHook: Send + Sync {
    /// Whether to fail here.
    fn fail_at(&self, point: FaultPoint) -> bool;
}

/// Watches what a replica does, for metrics. Every method has a default that ignores
/// it; calls come from worker threads and must not block.
pub trait ReplicaObserver: Send + Sync {
    /// A batch of `updates` updates was committed to `collection`'s shard.
    fn batch_committed(&self, collection: GlobalId, updates: u64) {
        let _ = (collection, updates);
    }

    /// Source `source` read `messages` messages from upstream.
    fn messages_received(&self, source: GlobalId, messages: u64) {
        let _ = (source, messages);
    }

    /// The replica now runs `count` dataflows (ingestions and sinks).
    fn dataflows_running(&self, count: usize) {
        let _ = count;
    }
}

/// Counters of one source, shared by the workers of a process.
#[derive(Debug, Default)]
pub(crate) struct SourceCounters {
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) updates_staged: AtomicU64,
    pub(crate) updates_committed: AtomicU64,
    pub(crate) snapshot_committed: AtomicBool,
    pub(crate) offset_known: AtomicU64,
    pub(crate) offset_committed: AtomicU64,
}

/// Counters of one sink.
#[derive(Debug, Default)]
pub(crate) struct SinkCounters {
    pub(crate) messages_staged: AtomicU64,
    pub(crate) messages_committed: AtomicU64,
    pub(crate) bytes_staged: AtomicU64,
    pub(crate) bytes_committed: AtomicU64,
}

/// Sends responses, and only the ones that tell the controller something new.
pub(crate) struct Reporter {
    sink: Arc<dyn ResponseSink>,
    uppers: Mutex<BTreeMap<GlobalId, Antichain<Timestamp>>>,
    statuses: Mutex<BTreeMap<GlobalId, (Status, Option<String>)>>,
    sources: Mutex<BTreeMap<GlobalId, Arc<SourceCounters>>>,
    sinks: Mutex<BTreeMap<GlobalId, Arc<SinkCounters>>>,
}

impl Reporter {
    pub(crate) fn new(sink: Arc<dyn ResponseSink>) -> Self {
        Reporter {
            sink,
            uppers: Mutex::default(),
            statuses: Mutex::default(),
            sources: Mutex::default(),
            sinks: Mutex::default(),
        }
    }

    /// Reports `upper` for `id` if it is beyond the last upper reported.
    pub(crate) fn upper(&self, id: GlobalId, upper: &Antichain<Timestamp>) {
        self.uppers([(id, upper.clone())]);
    }

    /// Reports, in one response, each upper that is beyond the last one reported for
    /// its collection.
    pub(crate) fn uppers(
        &self,
        reports: impl IntoIterator<Item = (GlobalId, Antichain<Timestamp>)>,
    ) {
        let Ok(mut uppers) = self.uppers.lock() else {
            return;
        };
        let advanced: Vec<(GlobalId, Antichain<Timestamp>)> = reports
            .into_iter()
            .filter(|(id, upper)| {
                let advanced = uppers
                    .get(id)
                    .is_none_or(|last| frontier_advances(last, upper));
                if advanced {
                    uppers.insert(*id, upper.clone());
                }
                advanced
            })
            .collect();
        if !advanced.is_empty() {
            self.sink.send(ReplicaResponse::FrontierUppers(advanced));
        }
    }

    /// Reports a status change; repeats of the same status and error are dropped.
    pub(crate) fn status(
        &self,
        id: GlobalId,
        status: Status,
        error: Option<String>,
        hints: Vec<String>,
    ) {
        let Ok(mut statuses) = self.statuses.lock() else {
            return;
        };
        let key = (status, error.clone());
        if statuses.get(&id) == Some(&key) {
            return;
        }
        statuses.insert(id, key);
        match &error {
            Some(error) => {
                tracing::warn!(collection = %id, ?status, %error, "status changed");
            }
            None => tracing::info!(collection = %id, ?status, "status changed"),
        }
        self.sink.send(ReplicaResponse::StatusUpdate(StatusUpdate {
            id,
            status,
            timestamp_ms: now_millis(),
            error,
            hints,
            replica_id: None,
        }));
    }

    /// Re-sends every known upper and status, for a newly connected controller.
    pub(crate) fn resend(&self) {
        if let Ok(uppers) = self.uppers.lock()
            && !uppers.is_empty()
        {
            let all = uppers.iter().map(|(id, u)| (*id, u.clone())).collect();
            self.sink.send(ReplicaResponse::FrontierUppers(all));
        }
        if let Ok(statuses) = self.statuses.lock() {
            for (id, (status, error)) in statuses.iter() {
                self.sink.send(ReplicaResponse::StatusUpdate(StatusUpdate {
                    id: *id,
                    status: *status,
                    timestamp_ms: now_millis(),
                    error: error.clone(),
                    hints: Vec::new(),
                    replica_id: None,
                }));
            }
        }
    }

    /// Confirms again that `id` is dropped, with no status: its `Dropped` status went
    /// out when the replica let go of it.
    pub(crate) fn confirm_dropped(&self, id: GlobalId) {
        self.sink.send(ReplicaResponse::DroppedId(id));
    }

    pub(crate) fn dropped(&self, id: GlobalId) {
        tracing::debug!(collection = %id, "reporting the collection dropped");
        self.status(id, Status::Dropped, None, Vec::new());
        self.sink.send(ReplicaResponse::DroppedId(id));
        for map in [&self.uppers] {
            if let Ok(mut map) = map.lock() {
                map.remove(&id);
            }
        }
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.remove(&id);
        }
        if let Ok(mut sources) = self.sources.lock() {
            sources.remove(&id);
        }
        if let Ok(mut sinks) = self.sinks.lock() {
            sinks.remove(&id);
        }
    }

    pub(crate) fn source_counters(&self, id: GlobalId) -> Arc<SourceCounters> {
        match self.sources.lock() {
            Ok(mut sources) => Arc::clone(sources.entry(id).or_default()),
            Err(_) => Arc::default(),
        }
    }

    pub(crate) fn sink_counters(&self, id: GlobalId) -> Arc<SinkCounters> {
        match self.sinks.lock() {
            Ok(mut sinks) => Arc::clone(sinks.entry(id).or_default()),
            Err(_) => Arc::default(),
        }
    }

    /// Sends the current value of every counter.
    pub(crate) fn statistics(&self) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let sources: Vec<(GlobalId, SourceStatistics)> = self
            .sources
            .lock()
            .map(|sources| {
                sources
                    .iter()
                    .map(|(id, c)| {
                        let statistics = SourceStatistics {
                            messages_received: load(&c.messages_received),
                            bytes_received: load(&c.bytes_received),
                            updates_staged: load(&c.updates_staged),
                            updates_committed: load(&c.updates_committed),
                            snapshot_committed: c.snapshot_committed.load(Ordering::Relaxed),
                            offset_known: Some(load(&c.offset_known)),
                            offset_committed: Some(load(&c.offset_committed)),
                        };
                        (*id, statistics)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sinks: Vec<(GlobalId, SinkStatistics)> = self
            .sinks
            .lock()
            .map(|sinks| {
                sinks
                    .iter()
                    .map(|(id, c)| {
                        let statistics = SinkStatistics {
                            messages_staged: load(&c.messages_staged),
                            messages_committed: load(&c.messages_committed),
                            bytes_staged: load(&c.bytes_staged),
                            bytes_committed: load(&c.bytes_committed),
                        };
                        (*id, statistics)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !sources.is_empty() || !sinks.is_empty() {
            self.sink
                .send(ReplicaResponse::StatisticsUpdates { sources, sinks });
        }
    }
}

/// Shared state of one replica process.
pub(crate) struct Ctx {
    pub(crate) shards: Arc<dyn Shards>,
    pub(crate) reporter: Reporter,
    pub(crate) writes_allowed: AtomicBool,
    pub(crate) clock: Clock,
    pub(crate) offset_limit: Option<u64>,
    pub(crate) retry_backoff: Duration,
    pub(crate) statistics_interval: Duration,
    pub(crate) dataflow_starts: AtomicU64,
    pub(crate) faults: Option<Arc<dyn FaultHook>>,
    pub(crate) observer: Option<Arc<dyn ReplicaObserver>>,
    /// At least 1.
    pub(crate) max_ticks_per_round: u64,
}

impl Ctx {
    pub(crate) fn writes_allowed(&self) -> bool {
        self.writes_allowed.load(Ordering::SeqCst)
    }

    pub(crate) fn fail_at(&self, point: FaultPoint) -> bool {
        self.faults.as_ref().is_some_and(|f| f.fail_at(point))
    }
}
