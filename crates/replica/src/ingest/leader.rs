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
    #[tracing::instrument(
        level = "debug",
        name = "ingestion.resync",
        skip_all,
        fields(collection = %plan.id, remap_shard = %plan.remap_shard)
    )]
    pub(crate) fn resync(&mut self, ctx: &Ctx, plan: &IngestionPlan) -> Result<(), IngestError> {
        self.invalidate();
        let mut data_upper: Option<Timestamp> = None;
        let mut furthest: Option<Timestamp> = None;
        let mut any_closed = false;
        for export in &plan.exports {
            let upper = ctx.shards.upper(export.shard)?;
            ctx.reporter.upper(export.id, &upper);
            match frontier_time(&upper) {
                Some(t) => {
                    data_upper = Some(data_upper.map_or(t, |d| d.min(t)));
                    furthest = Some(furthest.map_or(t, |f| f.max(t)));
                }
                None => any_closed = true,
            }
        }
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
        self.written_elsewhere =
            prior.is_none() && (any_closed || furthest.is_some_and(|f| f > data_upper));
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
