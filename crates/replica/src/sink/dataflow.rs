//! The sink's timely dataflow: one source operator that only worker 0 keeps alive and
//! that drives a [`FileSink`](super::file::FileSink) (or an object-store sink).
//!
//! After every step the operator reports the sink's upper as `FrontierUpper`: the
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

use super::file::{FileSink, Step};
use super::{SinkError, SinkPlan, SinkTarget};
use crate::context::Ctx;

/// The destination-specific state of a running sink.
enum Destination {
    File(FileSink),
    #[cfg(feature = "persist")]
    Object(super::object_store::ObjectStoreSink),
}

impl Destination {
    fn new(plan: &SinkPlan) -> Self {
        match &plan.target {
            SinkTarget::File(_) => Destination::File(FileSink::new()),
            #[cfg(feature = "persist")]
            SinkTarget::Object(_) => {
                Destination::Object(super::object_store::ObjectStoreSink::new())
            }
        }
    }

    fn step(&mut self, ctx: &Ctx, plan: &SinkPlan) -> Result<Step, SinkError> {
        match (self, &plan.target) {
            (Destination::File(sink), SinkTarget::File(path)) => sink.step(ctx, plan, path),
            #[cfg(feature = "persist")]
            (Destination::Object(sink), SinkTarget::Object(target)) => sink.step(ctx, plan, target),
            #[cfg(feature = "persist")]
            _ => Err(SinkError::Unsupported(
                "destination changed under a running sink".into(),
            )),
        }
    }

    fn reset(&mut self) {
        match self {
            Destination::File(sink) => sink.reset(),
            #[cfg(feature = "persist")]
            Destination::Object(sink) => sink.reset(),
        }
    }

    /// The sink's durable upper: every update before it is in the destination, as
    /// recovered from it or written since. `None` until the destination was read.
    fn upper(&self) -> Option<Antichain<Timestamp>> {
        match self {
            Destination::File(sink) => sink.upper(),
            #[cfg(feature = "persist")]
            Destination::Object(sink) => sink.upper(),
        }
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
            let mut sink = Destination::new(&plan);
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
                if let Some(upper) = sink.upper() {
                    ctx.reporter.upper(plan.id, &upper);
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
