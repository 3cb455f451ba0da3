//! Writing one round to the data shards: one `compare_and_append` per shard.
//!
//! A data shard whose upper is already beyond the round's time holds the round (some
//! replica wrote it; the data is a function of the bindings, so it is the same data).
//! A shard whose upper lies in `[round.lower, round.time]` lacks exactly this round.
//! A shard below `round.lower` lacks an earlier round: that is an inconsistency, and the
//! leader re-reads everything.

use std::sync::atomic::Ordering;

use strata_controller_api::{Antichain, Timestamp};

use super::{IngestError, IngestionPlan};
use crate::context::Ctx;
use crate::remap::Round;
use crate::shard::{Update, frontier_time};

/// How many upper mismatches one shard may see in one round before giving up.
const MAX_ATTEMPTS: usize = 4;

/// Writes `round` to every export; `data[i]` holds the rows and diffs of export `i`.
/// The exports in `joining` are being backfilled in this round: an empty shard of one
/// (upper at the minimum) is written from there, with `backfill[i]` (its contents
/// before the round, handed out at the round's first offset) at the minimum time and
/// the round's updates at its time. So a subsource added to a running source holds
/// its backfilled contents from the source's first time on, as in Materialize, and a
/// read at any time the source had reached when it joined sees them.
#[tracing::instrument(
    level = "debug",
    name = "ingestion.commit",
    skip_all,
    fields(collection = %plan.id, time = %round.time, offsets = ?round.offsets)
)]
pub(crate) fn commit_round(
    ctx: &Ctx,
    plan: &IngestionPlan,
    round: &Round,
    data: Vec<Vec<(strata_controller_api::Row, i64)>>,
    mut backfill: Vec<Vec<(strata_controller_api::Row, i64)>>,
    joining: &[usize],
) -> Result<(), IngestError> {
    let counters = ctx.reporter.source_counters(plan.id);
    let new_upper = Antichain::from_elem(Timestamp::new(round.time.as_millis().saturating_add(1)));
    let mut committed = 0u64;
    // Reported together once every export is written (a failure before that leaves
    // them to the resync that follows it).
    let mut reported = Vec::with_capacity(plan.exports.len());
    for (index, (export, rows)) in plan
        .exports
        .iter()
        .zip(data.into_iter().chain(std::iter::repeat_with(Vec::new)))
        .enumerate()
    {
        let empty_ok = joining.contains(&index);
        let updates: Vec<Update> = rows
            .into_iter()
            .map(|(row, diff)| (row, round.time, diff))
            .collect();
        let backfilled: Vec<Update> = backfill
            .get_mut(index)
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|(row, diff)| (row, Timestamp::new(0), diff))
            .chain(updates.iter().cloned())
            .collect();
        let mut upper = ctx.shards.upper(export.shard)?;
        for attempt in 0.. {
            let Some(current) = frontier_time(&upper) else {
                break;
            };
            if current > round.time {
                break;
            }
            let joins = empty_ok && current == Timestamp::new(0);
            if (current < round.lower && !joins) || attempt >= MAX_ATTEMPTS {
                tracing::warn!(
                    export = %export.id,
                    shard = %export.shard,
                    upper = %current,
                    lower = %round.lower,
                    attempt,
                    "a data shard is behind the round; the leader re-reads the shards"
                );
                return Err(IngestError::Inconsistent {
                    id: export.id,
                    upper: vec![current.as_millis()],
                    lower: round.lower.as_millis(),
                });
            }
            let batch = if joins { &backfilled } else { &updates };
            match ctx
                .shards
                .compare_and_append(export.shard, batch, &upper, &new_upper)?
            {
                Ok(()) => {
                    tracing::debug!(
                        export = %export.id,
                        shard = %export.shard,
                        updates = batch.len(),
                        "committed the round to an export"
                    );
                    committed += batch.len() as u64;
                    if let Some(observer) = &ctx.observer {
                        observer.batch_committed(export.id, batch.len() as u64);
                    }
                    upper = new_upper.clone();
                    break;
                }
                Err(mismatch) => upper = mismatch.current,
            }
        }
        reported.push((export.id, upper));
    }
    ctx.reporter.uppers(reported);
    counters
        .updates_committed
        .fetch_add(committed, Ordering::Relaxed);
    counters
        .offset_committed
        .fetch_max(round.offsets.end, Ordering::Relaxed);
    counters.snapshot_committed.store(true, Ordering::Relaxed);
    Ok(())
}
