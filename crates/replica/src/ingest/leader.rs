//! The leader of an ingestion: decides the next round, by replaying a bound round or by
//! minting a new binding with `compare_and_append` on the remap shard.
//!
//! Plain code over the shard seam, so it runs (and is tested) without timely.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use strata_controller_api::{Antichain, Timestamp};

use super::{IngestError, IngestionPlan};
use crate::connector::Offset;
use crate::context::Ctx;
use crate::remap::{self, Binding, Round};
use crate::shard::frontier_time;

/// What the leader knows about the remap shard.
#[derive(Debug, Default)]
pub(crate) struct Leader {
    /// Bound rounds still to (re)write, oldest first.
    queue: VecDeque<Round>,
    /// The last binding; new bindings continue from it.
    last: Option<Binding>,
    /// The remap shard's upper, or `None` when the leader must re-read the shards.
    remap_upper: Option<Timestamp>,
    /// Some data shard holds more than the one furthest behind, which has nothing
    /// bound before its upper: replaying from the first offset would rewrite what the
    /// others hold (a subsource added to a running source, or a crash between a first
    /// round's writes to its shards).
    written_elsewhere: bool,
    /// The exports, by index in the plan, that hold nothing while others hold data:
    /// a source that is not parallel fills them by a backfill at the resume offset
    /// instead of a replay from its start (see [`Leader::resync`]).
    backfill: Vec<usize>,
    /// The remap shard is closed: the source is finished.
    closed: bool,
}

impl Leader {
    /// Forgets everything; the next round re-reads the shards first.
    pub(crate) fn invalidate(&mut self) {
        *self = Leader::default();
    }

    /// Whether the leader must re-read the shards (and so re-open the reader) first.
    pub(crate) fn needs_resync(&self) -> bool {
        self.remap_upper.is_none()
    }

    /// Whether a replay from the first offset would rewrite what some data shards hold
    /// (see the field's doc): a source that cannot re-read its start exactly must not.
    pub(crate) fn written_elsewhere(&self) -> bool {
        self.written_elsewhere
    }

    /// The exports to backfill when the reader opens (see the field's doc).
    pub(crate) fn backfill(&self) -> &[usize] {
        &self.backfill
    }

    /// The first offset whose data may be missing from the data shards: where a reader
    /// opened now must resume.
    pub(crate) fn resume_offset(&self) -> Offset {
        self.queue.front().map_or_else(
            || self.last.map_or(0, |b| b.offset_upper),
            |round| round.offsets.start,
        )
    }

    /// Re-reads the data shards' uppers and the remap bindings, and plans the rounds
    /// whose data may be missing.
    ///
    /// For a source that is not parallel, an export whose shard holds nothing while
    /// another holds data (a subsource added to a running source, or a crash between a
    /// first round's writes) does not pull the plan back to offset 0, which such a
    /// source cannot re-read as it was: the plan follows the other exports, and the
    /// empty ones are backfilled in the first round it writes.
    #[tracing::instrument(
        level = "debug",
        name = "ingestion.resync",
        skip_all,
        fields(collection = %plan.id, remap_shard = %plan.remap_shard)
    )]
    pub(crate) fn resync(&mut self, ctx: &Ctx, plan: &IngestionPlan) -> Result<(), IngestError> {
        self.invalidate();
        let mut uppers = Vec::with_capacity(plan.exports.len());
        let mut reported = Vec::with_capacity(plan.exports.len());
        for export in &plan.exports {
            let upper = ctx.shards.upper(export.shard)?;
            uppers.push(frontier_time(&upper));
            reported.push((export.id, upper));
        }
        ctx.reporter.uppers(reported);
        let (data_upper, written_elsewhere, backfill) =
            plan_exports(&uppers, plan.connector.parallel());
        self.written_elsewhere = written_elsewhere;
        self.backfill = backfill;
        let Some(data_upper) = data_upper else {
            // Every data shard is closed: nothing left to write.
            self.closed = true;
            return Ok(());
        };
        let prior = match data_upper.as_millis().checked_sub(1) {
            None => None,
            Some(before) => self.binding_at(ctx, plan, Timestamp::new(before))?,
        };
        let (updates, remap_upper) = ctx.shards.listen_from(plan.remap_shard, data_upper)?;
        ctx.reporter.upper(plan.remap_id, &remap_upper);
        let pending = remap::decode_bindings(&updates)?;
        let resume = remap::plan_resume(prior, &pending)?;
        self.written_elsewhere &= prior.is_none();
        self.queue = resume.rounds.into();
        self.last = resume.last;
        tracing::info!(
            data_upper = %data_upper,
            replay = self.queue.len(),
            offset_upper = self.last.as_ref().map(|b| b.offset_upper),
            "resumed from the shards"
        );
        match frontier_time(&remap_upper) {
            Some(t) => self.remap_upper = Some(t),
            None => {
                self.closed = true;
                self.remap_upper = Some(Timestamp::new(u64::MAX));
            }
        }
        Ok(())
    }

    /// The binding in effect at `time`, read as a remap snapshot.
    fn binding_at(
        &self,
        ctx: &Ctx,
        plan: &IngestionPlan,
        time: Timestamp,
    ) -> Result<Option<Binding>, IngestError> {
        let Some(snapshot) = ctx.shards.snapshot(plan.remap_shard, time)? else {
            // The remap shard is behind the data: the data was not written by us.
            return Err(IngestError::Inconsistent {
                id: plan.remap_id,
                upper: Vec::new(),
                lower: time.as_millis(),
            });
        };
        match remap::decode_bindings(&snapshot)?.as_slice() {
            [] => Ok(None),
            [binding] => Ok(Some(Binding {
                time,
                offset_upper: binding.offset_upper,
            })),
            many => Err(remap::RemapError::Ambiguous {
                time,
                count: many.len(),
            }
            .into()),
        }
    }

    /// The next round to write, or `None` if the source has nothing to do now or the
    /// leader must resync (and re-open the reader) first: see [`Leader::needs_resync`].
    /// `frontier` is the reader's: a replayed round waits until the reader has re-read
    /// it, and a new binding stays below it and covers at most `ticks` ticks' worth of
    /// offsets of a paced source.
    pub(crate) fn next_round(
        &mut self,
        ctx: &Ctx,
        plan: &IngestionPlan,
        ticks: u64,
        frontier: Offset,
    ) -> Result<Option<Round>, IngestError> {
        // A resync re-opens the reader too (the leader operator does both), so one
        // here would leave a reader positioned for another plan.
        if self.needs_resync() {
            return Ok(None);
        }
        if let Some(round) = self.queue.front() {
            if round.offsets.end > frontier {
                return Ok(None);
            }
            return Ok(self.queue.pop_front());
        }
        if self.closed {
            return Ok(None);
        }
        let remap_upper = self.remap_upper.unwrap_or_default();
        let step = plan
            .pacing
            .offsets_per_tick
            .map_or(Offset::MAX, |per_tick| {
                per_tick.saturating_mul(ticks.max(1))
            });
        let limit = ctx.offset_limit.map_or(frontier, |l| l.min(frontier));
        let Some((next, round)) = remap::mint(
            self.last.as_ref(),
            remap_upper,
            (ctx.clock)(),
            step,
            Some(limit),
        ) else {
            return Ok(None);
        };
        let updates = remap::binding_updates(self.last.as_ref(), &next);
        let expected = Antichain::from_elem(remap_upper);
        let new_upper =
            Antichain::from_elem(Timestamp::new(next.time.as_millis().saturating_add(1)));
        let result =
            ctx.shards
                .compare_and_append(plan.remap_shard, &updates, &expected, &new_upper);
        match result {
            Ok(Ok(())) => {
                tracing::debug!(
                    collection = %plan.id,
                    remap_shard = %plan.remap_shard,
                    time = %next.time,
                    offset_upper = next.offset_upper,
                    "minted a binding"
                );
                ctx.reporter.upper(plan.remap_id, &new_upper);
                ctx.reporter
                    .source_counters(plan.id)
                    .offset_known
                    .fetch_max(next.offset_upper, Ordering::Relaxed);
                self.remap_upper = Some(Timestamp::new(next.time.as_millis().saturating_add(1)));
                self.last = Some(next);
                Ok(Some(round))
            }
            Ok(Err(mismatch)) => {
                // Another writer bound this range: fast-forward to its bindings, with a
                // reader re-opened where they leave off.
                tracing::debug!(
                    collection = %plan.id,
                    remap_shard = %plan.remap_shard,
                    current = ?mismatch.current,
                    "another replica minted this binding; resyncing"
                );
                self.invalidate();
                Ok(None)
            }
            Err(e) => {
                self.invalidate();
                Err(e.into())
            }
        }
    }
}

/// From the exports' upper times (`None`: closed), the upper the plan follows (the
/// least; `None` if every export is closed), whether some export holds data beyond
/// it, and which exports to backfill: for a source that is not `parallel`, the empty
/// ones (upper at the minimum) while another holds data; they are left out of the
/// least upper.
pub(crate) fn plan_exports(
    uppers: &[Option<Timestamp>],
    parallel: bool,
) -> (Option<Timestamp>, bool, Vec<usize>) {
    let empty = |u: &Option<Timestamp>| *u == Some(Timestamp::new(0));
    let written = uppers.iter().any(|u| !empty(u));
    let backfill: Vec<usize> = if parallel || !written {
        Vec::new()
    } else {
        (0..uppers.len()).filter(|i| empty(&uppers[*i])).collect()
    };
    let followed = || {
        uppers
            .iter()
            .enumerate()
            .filter(|(i, _)| !backfill.contains(i))
            .map(|(_, u)| u)
    };
    let data_upper = followed().flatten().min().copied();
    let furthest = followed()
        .map(|u| u.unwrap_or(Timestamp::new(u64::MAX)))
        .max();
    let written_elsewhere = match (data_upper, furthest) {
        (Some(least), Some(furthest)) => furthest > least,
        _ => false,
    };
    (data_upper, written_elsewhere, backfill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_exports_of_a_running_source_are_backfilled_unless_it_is_parallel() {
        let t = |ms| Some(Timestamp::new(ms));
        // (uppers, parallel) => (followed upper, written elsewhere, backfill)
        type Planned = (Option<Timestamp>, bool, Vec<usize>);
        let cases: Vec<(Vec<Option<Timestamp>>, bool, Planned)> = vec![
            // A new source: everything from the start.
            (vec![t(0), t(0)], false, (t(0), false, vec![])),
            // In step, or one export a round behind: follow the least.
            (vec![t(5), t(5)], false, (t(5), false, vec![])),
            (vec![t(5), t(3)], false, (t(3), true, vec![])),
            // A subsource added to a running source.
            (vec![t(5), t(0), t(5)], false, (t(5), false, vec![1])),
            (vec![t(5), t(0), t(3)], false, (t(3), true, vec![1])),
            // A parallel source re-reads its start instead.
            (vec![t(5), t(0)], true, (t(0), true, vec![])),
            // Closed exports are past everything.
            (vec![None, t(4)], false, (t(4), true, vec![])),
            (vec![None, None], false, (None, false, vec![])),
            (vec![None, t(0)], false, (None, false, vec![1])),
        ];
        for (uppers, parallel, expected) in cases {
            assert_eq!(
                plan_exports(&uppers, parallel),
                expected,
                "{uppers:?} parallel={parallel}"
            );
        }
    }
}
