//! The sink's timely dataflow: one source operator that only worker 0 keeps alive and
//! that drives the sink's [`SinkWriter`]: it reads the input, hands the writer one batch
//! at a time and keeps the sink's durable frontier.
//!
//! After every step the operator reports the sink's upper in `FrontierUppers`: the
//! frontier its destination durably holds, recovered from the destination or reached
//! by a committed batch, never a batch still in flight. (The reporter sends it only
//! when it advances.) The controller derives the sink's hold on its input from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_controller_api::{Antichain, Timestamp};
use strata_instance_client::Status;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::worker::Worker;

use super::{SinkError, SinkPlan};
use crate::connector::{SinkBatch, SinkCommit, SinkWriter};
use crate::context::{Ctx, FaultPoint};
use crate::shard::frontier_time;

/// What a step of the sink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Wrote a batch (possibly empty) and advanced the frontier, or lost a race and
    /// must recover.
    Advanced,
    /// Nothing new to read yet.
    Idle,
    /// The input is closed and everything is written.
    Done,
}

/// A running sink's state: its writer and the frontier its destination durably holds.
/// Everything here can be rebuilt from the destination.
struct Driver {
    writer: Option<Box<dyn SinkWriter>>,
    /// Every update before this is in the destination, once recovered.
    frontier: Option<Antichain<Timestamp>>,
}

impl Driver {
    /// Forgets what it knew, as a crash would: the next step recovers.
    fn reset(&mut self) {
        self.frontier = None;
    }

    /// The sink's durable upper, `None` until the destination was read.
    fn upper(&self) -> Option<&Antichain<Timestamp>> {
        self.frontier.as_ref()
    }

    /// Does one unit of work: recover, write the snapshot, or write one listen batch.
    fn step(&mut self, ctx: &Ctx, plan: &SinkPlan) -> Result<Step, SinkError> {
        let writer = match &mut self.writer {
            Some(writer) => writer,
            None => self
                .writer
                .insert(plan.connector.open(plan.id, &plan.desc)?),
        };
        let frontier = match &self.frontier {
            Some(frontier) => frontier.clone(),
            None => {
                let start = if plan.with_snapshot {
                    Timestamp::new(0)
                } else {
                    Timestamp::new(plan.as_of.as_millis().saturating_add(1))
                };
                let recovered = writer.recover(start)?;
                self.frontier = Some(recovered.clone());
                recovered
            }
        };
        let Some(lower) = frontier_time(&frontier) else {
            return Ok(Step::Done);
        };
        let (updates, upper) = if lower == Timestamp::new(0) && plan.with_snapshot {
            match ctx.shards.snapshot(plan.shard, plan.as_of)? {
                None => return Ok(Step::Idle),
                Some(updates) => (
                    updates,
                    Antichain::from_elem(Timestamp::new(plan.as_of.as_millis().saturating_add(1))),
                ),
            }
        } else {
            let (updates, upper) = ctx.shards.listen_from(plan.shard, lower)?;
            if frontier_time(&upper).is_some_and(|u| u <= lower) {
                return Ok(Step::Idle);
            }
            (updates, upper)
        };
        let batch = SinkBatch {
            lower,
            upper: &upper,
            updates: &updates,
        };
        let counters = ctx.reporter.sink_counters(plan.id);
        let bytes = writer.write(&batch)?;
        counters
            .messages_staged
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        counters.bytes_staged.fetch_add(bytes, Ordering::Relaxed);
        if ctx.fail_at(FaultPoint::SinkAfterData) {
            self.reset();
            return Err(SinkError::InjectedCrash);
        }
        match writer.commit(&batch)? {
            SinkCommit::Committed => {
                self.frontier = Some(upper.clone());
                counters
                    .messages_committed
                    .fetch_add(updates.len() as u64, Ordering::Relaxed);
                counters.bytes_committed.fetch_add(bytes, Ordering::Relaxed);
            }
            // Another incarnation wrote this range: recover (before reporting anything
            // beyond what was recovered).
            SinkCommit::LostRace => self.reset(),
        }
        Ok(Step::Advanced)
    }
}

/// How often an idle sink polls its input.
const POLL: Duration = Duration::from_millis(5);

/// Builds the sink dataflow on this worker.
pub(crate) fn build(
    worker: &mut Worker,
    ctx: Arc<Ctx>,
    plan: Arc<SinkPlan>,
    stop: Arc<AtomicBool>,
) {
    let index = worker.index();
    let name = format!("sink-{}", plan.id);
    // Entered whenever the sink's operator runs, so its events (and its reads of the
    // input shard) carry the sink's id and its input shard.
    let span = tracing::info_span!(
        "sink",
        collection = %plan.id,
        shard = %plan.shard,
        worker = index,
    );
    let _built = span.enter();
    tracing::debug!("building the sink dataflow");
    let dataflow_span = span.clone();
    worker.dataflow_named::<u64, _, _>(&name, move |scope| {
        let span = dataflow_span;
        source::<_, CapacityContainerBuilder<Vec<()>>, _, _>(scope, "sink", move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = (index == 0).then_some(cap);
            let mut sink = Driver {
                writer: None,
                frontier: None,
            };
            if cap.is_some() {
                ctx.reporter
                    .status(plan.id, Status::Starting, None, Vec::new());
            }
            move |_output| {
                let _entered = span.enter();
                if cap.is_none() {
                    return;
                }
                if stop.load(Ordering::SeqCst) {
                    cap = None;
                    return;
                }
                let stepped = sink.step(&ctx, &plan);
                // A destination that holds nothing yet (upper at the minimum time) has
                // nothing to report.
                if let Some(upper) = sink.upper()
                    && !upper.less_equal(&Timestamp::new(0))
                {
                    ctx.reporter.upper(plan.id, upper);
                }
                match stepped {
                    Ok(Step::Advanced) => {
                        ctx.reporter
                            .status(plan.id, Status::Running, None, Vec::new());
                        activator.activate();
                    }
                    Ok(Step::Idle | Step::Done) => activator.activate_after(POLL),
                    Err(e) => {
                        tracing::warn!(error = %e, "the sink failed a step; retrying after the backoff");
                        sink.reset();
                        let hint = e.hint().to_owned();
                        ctx.reporter.status(
                            plan.id,
                            Status::Stalled,
                            Some(e.to_string()),
                            vec![hint],
                        );
                        activator.activate_after(ctx.retry_backoff);
                    }
                }
            }
        });
    });
}
