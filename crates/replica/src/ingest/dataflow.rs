//! The timely dataflow of an ingestion: leader, read, commit (see the module doc of
//! [`crate::ingest`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_controller_api::Row;
use strata_instance_client::Status;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::progress::frontier::MutableAntichain;
use timely::scheduling::Activator;
use timely::worker::Worker;

use super::leader::Leader;
use super::{IngestError, IngestionPlan, commit};
use crate::connector::{
    ConnectorError, ReaderShare, SourceProgress, SourceReader, SourceStatus, SourceUpdate,
    SourceWaker,
};
use crate::context::Ctx;
use crate::remap::Round;

/// A round addressed to one worker.
type RoundMsg = (usize, Round);

/// What a worker's read of a round sends to the committer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum DataMsg {
    /// An update of export `usize`.
    Update(usize, Row, i64),
    /// An update of export `usize` that backfills it (see `commit::commit_round`).
    Backfill(usize, Row, i64),
    /// The read failed: the round must not be written.
    Failed(String),
}

/// How many bound rounds may be in flight at once. With two, the other workers
/// generate round `n + 1` while worker 0 commits round `n`; rounds still commit in
/// order, each after its binding is minted.
const PIPELINE_DEPTH: usize = 2;

/// State the leader and the committer (both on worker 0) share.
#[derive(Default)]
struct Shared {
    /// The rounds being generated and committed, oldest first, with their timely times.
    inflight: VecDeque<(u64, Round)>,
    /// The outcome of the commits since the leader last looked (an error wins).
    outcome: Option<Result<(), IngestError>>,
    leader: Option<Activator>,
    /// Worker 0's reader: opened and polled by the leader, read by worker 0's read
    /// operator, told what is durable by the committer.
    reader: Option<Box<dyn SourceReader>>,
    /// The reader's resume offset and the exports it backfills there: the round that
    /// starts at that offset may write them from an empty shard.
    backfill: Option<(u64, Vec<usize>)>,
}

impl Shared {
    fn in_flight(&self, seq: u64) -> bool {
        self.inflight.iter().any(|(s, _)| *s == seq)
    }

    /// The exports `round` backfills: those of the reader's backfill, in the round that
    /// starts at its resume offset.
    fn joining(&self, round: &Round) -> &[usize] {
        match &self.backfill {
            Some((offset, exports)) if *offset == round.offsets.start => exports,
            _ => &[],
        }
    }
}

/// Builds the ingestion dataflow on this worker.
pub(crate) fn build(
    worker: &mut Worker,
    ctx: Arc<Ctx>,
    plan: Arc<IngestionPlan>,
    stop: Arc<AtomicBool>,
) {
    let index = worker.index();
    let peers = worker.peers();
    let name = format!("ingestion-{}", plan.id);
    // Entered by every operator of the dataflow whenever it runs, so each event of the
    // ingestion (and of the persist calls it makes) carries its collection id.
    let span = tracing::info_span!(
        "ingestion",
        collection = %plan.id,
        remap_shard = %plan.remap_shard,
        worker = index,
    );
    let _built = span.enter();
    tracing::debug!(
        exports = plan.exports.len(),
        "building the ingestion dataflow"
    );
    let dataflow_span = span.clone();
    worker.dataflow_named::<u64, _, _>(&name, move |scope| {
        let span = dataflow_span;
        let shared = Rc::new(RefCell::new(Shared::default()));
        let leader_shared = Rc::clone(&shared);
        let leader_ctx = Arc::clone(&ctx);
        let leader_plan = Arc::clone(&plan);
        let leader_span = span.clone();
        let rounds = source::<_, CapacityContainerBuilder<Vec<RoundMsg>>, _, _>(
            scope,
            "leader",
            move |cap, info| {
                // The reader wakes the leader from its own threads when it has news.
                let sync = scope.worker().sync_activator_for(info.address.to_vec());
                let waker = SourceWaker::new(move || {
                    // An error means the dataflow is gone: nothing to wake.
                    let _ = sync.activate();
                });
                let activator = scope.activator_for(info.address);
                leader_shared.borrow_mut().leader = Some(activator.clone());
                let mut state = LeaderOp {
                    cap: (index == 0).then_some(cap),
                    seq: 0,
                    leader: Leader::default(),
                    next_tick: Instant::now(),
                    activator,
                    shared: leader_shared,
                    ctx: leader_ctx,
                    plan: leader_plan,
                    stop,
                    peers,
                    waker,
                };
                state.starting();
                move |output| {
                    let _entered = leader_span.enter();
                    state.step(output);
                }
            },
        );
        let read_plan = Arc::clone(&plan);
        let read_ctx = Arc::clone(&ctx);
        let read_span = span.clone();
        let read_shared = Rc::clone(&shared);
        // The reader of a worker other than 0 (parallel connectors only), opened at the
        // first round it reads.
        let mut own_reader: Option<Box<dyn SourceReader>> = None;
        let data = rounds.unary::<CapacityContainerBuilder<Vec<DataMsg>>, _, _, _>(
            Exchange::new(|(w, _): &RoundMsg| *w as u64),
            "read",
            move |_, _| {
                move |input, output| {
                    let _entered = read_span.enter();
                    input.for_each(|cap, batch| {
                        let Some(&seq) = cap.least() else { return };
                        let mut session = output.session(&cap);
                        for (_, round) in batch.drain(..) {
                            let mut give = |m| session.give(m);
                            if index == 0 {
                                let mut shared = read_shared.borrow_mut();
                                // A round abandoned after a failure is not read: the
                                // reader may have been re-opened since.
                                if !shared.in_flight(seq) {
                                    continue;
                                }
                                let joining = shared.joining(&round).to_vec();
                                read_round(
                                    &read_ctx,
                                    &read_plan,
                                    &round,
                                    shared.reader.as_deref_mut(),
                                    &mut give,
                                    &joining,
                                );
                            } else {
                                if own_reader.is_none() {
                                    let share = ReaderShare {
                                        worker: index,
                                        peers,
                                    };
                                    match read_plan.connector.open(
                                        round.offsets.start,
                                        share,
                                        SourceWaker::noop(),
                                    ) {
                                        Ok(reader) => own_reader = Some(reader),
                                        Err(e) => {
                                            give(DataMsg::Failed(e.to_string()));
                                            continue;
                                        }
                                    }
                                }
                                read_round(
                                    &read_ctx,
                                    &read_plan,
                                    &round,
                                    own_reader.as_deref_mut(),
                                    &mut give,
                                    &[],
                                );
                            }
                        }
                    });
                }
            },
        );
        let mut stash: BTreeMap<u64, Vec<DataMsg>> = BTreeMap::new();
        data.sink(
            Exchange::new(|_: &DataMsg| 0),
            "commit",
            move |(input, frontier)| {
                let _entered = span.enter();
                input.for_each(|cap, batch| {
                    if let Some(time) = cap.least() {
                        stash.entry(*time).or_default().append(batch);
                    }
                });
                commit_if_complete(&ctx, &plan, &shared, &mut stash, frontier);
            },
        );
    });
}

/// Commits the in-flight rounds, oldest first, once every worker's data for them has
/// arrived, and hands the outcome to the leader. After a failed commit the later rounds
/// are abandoned (the leader re-reads the shards and replays them).
fn commit_if_complete(
    ctx: &Ctx,
    plan: &IngestionPlan,
    shared: &RefCell<Shared>,
    stash: &mut BTreeMap<u64, Vec<DataMsg>>,
    frontier: &MutableAntichain<u64>,
) {
    let mut shared = shared.borrow_mut();
    let mut committed = false;
    while let Some((seq, _)) = shared.inflight.front() {
        if frontier.less_equal(seq) {
            break;
        }
        let Some((seq, round)) = shared.inflight.pop_front() else {
            break;
        };
        let msgs = stash.remove(&seq).unwrap_or_default();
        committed = true;
        let outcome = commit_msgs(ctx, plan, &round, msgs, shared.joining(&round));
        match (&outcome, shared.reader.as_mut()) {
            (Ok(()), Some(reader)) => reader.durable(round.offsets.end),
            (Ok(()), None) => {}
            (Err(_), _) => shared.inflight.clear(),
        }
        if outcome.is_ok() {
            shared.backfill = None;
        }
        if !matches!(shared.outcome, Some(Err(_))) {
            shared.outcome = Some(outcome);
        }
    }
    // Data of complete rounds that are no longer in flight belongs to abandoned rounds.
    stash.retain(|time, _| frontier.less_equal(time));
    if committed && let Some(leader) = &shared.leader {
        leader.activate();
    }
}

/// Reads `round`'s updates from `reader` and gives each to its exports; an error, or
/// an update outside the round's offsets, gives a [`DataMsg::Failed`] instead, so the
/// round is not written. Updates at the round's first offset for the exports in
/// `joining` are their backfill.
fn read_round(
    ctx: &Ctx,
    plan: &IngestionPlan,
    round: &Round,
    reader: Option<&mut (dyn SourceReader + 'static)>,
    give: &mut impl FnMut(DataMsg),
    joining: &[usize],
) {
    let Some(reader) = reader else {
        give(DataMsg::Failed("the source's reader is not open".into()));
        return;
    };
    let counters = ctx.reporter.source_counters(plan.id);
    let (mut messages, mut bytes, mut staged) = (0u64, 0u64, 0u64);
    let mut last_offset = None;
    let mut stray = None;
    let read = reader.read(round.offsets.clone(), &mut |update: SourceUpdate| {
        if !round.offsets.contains(&update.offset) {
            stray.get_or_insert(update.offset);
            return;
        }
        if last_offset != Some(update.offset) {
            messages += 1;
            last_offset = Some(update.offset);
        }
        bytes += update.row.as_bytes().len() as u64;
        for (i, export) in plan.exports.iter().enumerate() {
            if export.output == update.output {
                staged += 1;
                let (row, diff) = (update.row.clone(), update.diff);
                if update.offset == round.offsets.start && joining.contains(&i) {
                    give(DataMsg::Backfill(i, row, diff));
                } else {
                    give(DataMsg::Update(i, row, diff));
                }
            }
        }
    });
    if let Err(e) = read {
        give(DataMsg::Failed(e.to_string()));
    } else if let Some(offset) = stray {
        let e = ConnectorError::Contract {
            kind: plan.connector.kind().to_owned(),
            reason: format!(
                "asked for offsets {:?}, it handed out offset {offset}",
                round.offsets
            ),
        };
        give(DataMsg::Failed(e.to_string()));
    }
    counters
        .messages_received
        .fetch_add(messages, Ordering::Relaxed);
    if let Some(observer) = &ctx.observer {
        observer.messages_received(plan.id, messages);
    }
    counters.bytes_received.fetch_add(bytes, Ordering::Relaxed);
    counters.updates_staged.fetch_add(staged, Ordering::Relaxed);
}

fn commit_msgs(
    ctx: &Ctx,
    plan: &IngestionPlan,
    round: &Round,
    msgs: Vec<DataMsg>,
    joining: &[usize],
) -> Result<(), IngestError> {
    let mut data: Vec<Vec<(Row, i64)>> = vec![Vec::new(); plan.exports.len()];
    let mut backfill: Vec<Vec<(Row, i64)>> = vec![Vec::new(); plan.exports.len()];
    for msg in msgs {
        match msg {
            DataMsg::Update(i, row, diff) => {
                if let Some(rows) = data.get_mut(i) {
                    rows.push((row, diff));
                }
            }
            DataMsg::Backfill(i, row, diff) => {
                if let Some(rows) = backfill.get_mut(i) {
                    rows.push((row, diff));
                }
            }
            DataMsg::Failed(reason) => return Err(IngestError::ReadFailed { reason }),
        }
    }
    commit::commit_round(ctx, plan, round, data, backfill, joining)
}

/// How many ticks' worth of offsets the next round binds: a source without a tick
/// interval is always under load and binds `max`; otherwise one tick plus those it is
/// `behind` its schedule, capped at `max`.
pub(crate) fn ticks_owed(tick_interval_ms: u64, behind: Duration, max: u64) -> u64 {
    let max = max.max(1);
    if tick_interval_ms == 0 {
        return max;
    }
    let missed =
        u64::try_from(behind.as_millis() / u128::from(tick_interval_ms)).unwrap_or(u64::MAX);
    missed.saturating_add(1).min(max)
}

/// The outputs of the exports `backfill`, or `None` if another export has one of
/// them too: a backfill's updates cannot be told from the round's own, so that export
/// would get them twice.
fn backfill_outputs(
    plan: &IngestionPlan,
    backfill: &[usize],
) -> Option<Vec<strata_controller_api::SourceOutput>> {
    let mut outputs = Vec::new();
    for (i, export) in plan.exports.iter().enumerate() {
        let joining = backfill.contains(&i);
        let shared = plan
            .exports
            .iter()
            .enumerate()
            .any(|(j, other)| !backfill.contains(&j) && other.output == export.output);
        if joining && shared {
            return None;
        }
        if joining && !outputs.contains(&export.output) {
            outputs.push(export.output.clone());
        }
    }
    Some(outputs)
}

/// The leader operator's state (worker 0 holds the capability; others drop it).
struct LeaderOp {
    cap: Option<Capability<u64>>,
    seq: u64,
    leader: Leader,
    next_tick: Instant,
    activator: Activator,
    shared: Rc<RefCell<Shared>>,
    ctx: Arc<Ctx>,
    plan: Arc<IngestionPlan>,
    stop: Arc<AtomicBool>,
    peers: usize,
    /// Given to worker 0's reader, to wake this operator.
    waker: SourceWaker,
}

impl LeaderOp {
    fn starting(&self) {
        if self.cap.is_some() {
            self.ctx
                .reporter
                .status(self.plan.id, Status::Starting, None, Vec::new());
        }
    }

    /// Reports `error`, forgets what the leader knew (the reader is re-opened after a
    /// resync) and retries after the backoff.
    fn stalled(&mut self, error: &IngestError) {
        self.report_stalled(error.to_string(), error.hint());
        self.leader.invalidate();
        self.activator.activate_after(self.ctx.retry_backoff);
    }

    fn report_stalled(&self, error: String, hint: &str) {
        self.ctx.reporter.status(
            self.plan.id,
            Status::Stalled,
            Some(error),
            vec![hint.to_owned()],
        );
    }

    /// Re-reads the shards if needed and opens worker 0's reader where the data shards'
    /// bindings leave off. Only called with no round in flight.
    fn open_reader(&mut self) -> Result<(), IngestError> {
        {
            let mut shared = self.shared.borrow_mut();
            shared.reader = None;
            shared.backfill = None;
        }
        if self.leader.needs_resync() {
            self.leader.resync(&self.ctx, &self.plan)?;
        }
        let share = if self.plan.connector.parallel() {
            ReaderShare {
                worker: 0,
                peers: self.peers,
            }
        } else {
            ReaderShare::WHOLE
        };
        let resume = self.leader.resume_offset();
        let backfill = self.leader.backfill().to_vec();
        let cannot_replay = || IngestError::CannotReplay {
            kind: self.plan.connector.kind().to_owned(),
        };
        let parallel = self.plan.connector.parallel();
        if resume == 0 && !parallel && (self.leader.written_elsewhere() || !backfill.is_empty()) {
            // A re-read from the start (a new snapshot) would not be the data the other
            // shards hold: refuse loudly instead of writing an inconsistent collection.
            return Err(cannot_replay());
        }
        let reader = if backfill.is_empty() {
            tracing::debug!(resume, "opening the source's reader");
            self.plan
                .connector
                .open(resume, share, self.waker.clone())?
        } else {
            let outputs = backfill_outputs(&self.plan, &backfill).ok_or_else(cannot_replay)?;
            tracing::info!(
                resume,
                ?outputs,
                "opening the source's reader with a backfill"
            );
            match self.plan.connector.open_with_backfill(
                resume,
                share,
                self.waker.clone(),
                &outputs,
            ) {
                Err(ConnectorError::CannotBackfill { .. }) => return Err(cannot_replay()),
                reader => reader?,
            }
        };
        let mut shared = self.shared.borrow_mut();
        shared.reader = Some(reader);
        shared.backfill = (!backfill.is_empty()).then_some((resume, backfill));
        Ok(())
    }

    /// Polls worker 0's reader; `None` if the source cannot give a round now (its
    /// status is reported and the leader retries later).
    fn poll(&mut self) -> Result<Option<SourceProgress>, IngestError> {
        let progress = match self.shared.borrow_mut().reader.as_mut() {
            Some(reader) => reader.poll()?,
            None => return Ok(None),
        };
        if let Some(upstream) = progress.upstream {
            self.ctx
                .reporter
                .source_counters(self.plan.id)
                .offset_known
                .fetch_max(upstream, Ordering::Relaxed);
        }
        match &progress.status {
            SourceStatus::Running => Ok(Some(progress)),
            SourceStatus::Starting => {
                self.ctx
                    .reporter
                    .status(self.plan.id, Status::Starting, None, Vec::new());
                Ok(Some(progress))
            }
            SourceStatus::Stalled(reason) => {
                self.report_stalled(reason.clone(), "the source retries; check its upstream");
                self.activator.activate_after(self.ctx.retry_backoff);
                Ok(None)
            }
            SourceStatus::Ceased(reason) => {
                self.report_stalled(
                    format!("the source ceased: {reason}"),
                    "the source cannot go on; drop it and create it again",
                );
                self.activator.activate_after(self.ctx.retry_backoff);
                Ok(None)
            }
        }
    }

    fn step(
        &mut self,
        output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<RoundMsg>>>,
    ) {
        if self.cap.is_none() {
            return;
        }
        if self.stop.load(Ordering::SeqCst) {
            self.cap = None;
            return;
        }
        let outcome = self.shared.borrow_mut().outcome.take();
        match outcome {
            Some(Err(e)) => {
                // Rounds in flight were abandoned with the failed one.
                self.shared.borrow_mut().inflight.clear();
                return self.stalled(&e);
            }
            Some(Ok(())) => {
                self.ctx
                    .reporter
                    .status(self.plan.id, Status::Running, None, Vec::new());
            }
            None => {}
        }
        if self.shared.borrow().inflight.len() >= PIPELINE_DEPTH {
            return;
        }
        if !self.ctx.writes_allowed() {
            self.activator.activate_after(Duration::from_millis(20));
            return;
        }
        let now = Instant::now();
        if now < self.next_tick {
            self.activator.activate_after(self.next_tick - now);
            return;
        }
        if self.leader.needs_resync() || self.shared.borrow().reader.is_none() {
            if !self.shared.borrow().inflight.is_empty() {
                // The committer wakes the leader once the rounds in flight are done.
                return;
            }
            if let Err(e) = self.open_reader() {
                return self.stalled(&e);
            }
        }
        let progress = match self.poll() {
            Ok(Some(progress)) => progress,
            Ok(None) => return,
            Err(e) => return self.stalled(&e),
        };
        let tick_interval = self.plan.pacing.tick_interval;
        let ticks = ticks_owed(
            u64::try_from(tick_interval.as_millis()).unwrap_or(u64::MAX),
            now.saturating_duration_since(self.next_tick),
            self.ctx.max_ticks_per_round,
        );
        match self
            .leader
            .next_round(&self.ctx, &self.plan, ticks, progress.frontier)
        {
            Ok(Some(round)) => self.emit(round, output),
            Ok(None) if self.leader.needs_resync() => self.activator.activate(),
            Ok(None) => {
                if progress.status == SourceStatus::Running {
                    self.ctx
                        .reporter
                        .status(self.plan.id, Status::Running, None, Vec::new());
                }
                self.activator
                    .activate_after(tick_interval.max(Duration::from_millis(10)));
            }
            Err(e) => self.stalled(&e),
        }
    }

    fn emit(
        &mut self,
        round: Round,
        output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<RoundMsg>>>,
    ) {
        let Some(cap) = self.cap.as_mut() else { return };
        {
            let mut session = output.session(&*cap);
            let readers = if self.plan.connector.parallel() {
                self.peers
            } else {
                1
            };
            for w in 0..readers {
                session.give((w, round.clone()));
            }
        }
        let mut shared = self.shared.borrow_mut();
        shared.inflight.push_back((self.seq, round));
        let room = shared.inflight.len() < PIPELINE_DEPTH;
        drop(shared);
        self.seq += 1;
        cap.downgrade(&self.seq);
        if room {
            // Mint the next round while this one is generated and committed.
            self.activator.activate();
        }
        self.next_tick = Instant::now() + self.plan.pacing.tick_interval;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ticks_owed;

    fn check(interval_ms: u64, behind_ms: u64, max: u64, expected: u64) {
        assert_eq!(
            ticks_owed(interval_ms, Duration::from_millis(behind_ms), max),
            expected,
            "interval {interval_ms}ms, behind {behind_ms}ms, max {max}"
        );
    }

    #[test]
    fn ticks_owed_table() {
        check(0, 0, 16, 16); // no interval: always under load
        check(0, 0, 0, 1); // max is at least one tick
        check(100, 0, 16, 1); // on schedule
        check(100, 99, 16, 1);
        check(100, 100, 16, 2); // one tick behind
        check(100, 350, 16, 4);
        check(100, 100_000, 16, 16); // capped
        check(100, 350, 1, 1); // batching off
        check(1, u64::MAX, 8, 8);
    }
}
