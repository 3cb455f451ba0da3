//! The sink's timely dataflow: one source operator that only worker 0 keeps alive and
//! that drives a [`FileSink`](super::file::FileSink).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_instance_client::Status;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::worker::Worker;

use super::SinkPlan;
use super::file::{FileSink, Step};
use crate::context::Ctx;

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
    worker.dataflow_named::<u64, _, _>(&name, move |scope| {
        source::<_, CapacityContainerBuilder<Vec<()>>, _, _>(
            scope,
            "file-sink",
            move |cap, info| {
                let activator = scope.activator_for(info.address);
                let mut cap = (index == 0).then_some(cap);
                let mut sink = FileSink::new();
                if cap.is_some() {
                    ctx.reporter
                        .status(plan.id, Status::Starting, None, Vec::new());
                }
                move |_output| {
                    if cap.is_none() {
                        return;
                    }
                    if stop.load(Ordering::SeqCst) {
                        cap = None;
                        return;
                    }
                    match sink.step(&ctx, &plan) {
                        Ok(Step::Advanced) => {
                            ctx.reporter
                                .status(plan.id, Status::Running, None, Vec::new());
                            activator.activate();
                        }
                        Ok(Step::Idle | Step::Done) => activator.activate_after(POLL),
                        Err(e) => {
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
            },
        );
    });
}
