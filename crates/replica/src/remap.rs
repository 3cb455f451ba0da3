//! Remap bindings: which source offsets are committed at which timestamps.
//!
//! The remap collection of an ingestion holds, at every time `t`, exactly one row: the
//! *offset upper* bound at `t`. A binding `(t, o)` says "every offset below `o` has its
//! data at a time not beyond `t`". Minting a binding is a `compare_and_append` on the
//! remap shard that retracts the previous offset upper and inserts the new one at `t`.
//!
//! Data is a pure function of offsets (see [`crate::generator`]), so the bindings alone
//! determine the contents of every data shard: round `i` writes the data of offsets
//! `[o_{i-1}, o_i)` at time `t_i`. That gives exactly-once on restart and under races:
//! - a binding is minted before its data is written, so a crash between the two leaves
//!   a binding whose data a restart regenerates ([`plan_resume`]);
//! - with several replicas, the remap CAS picks one binding per time range; a loser
//!   sees `UpperMismatch`, reads the winner's bindings and fast-forwards;
//! - the data CAS picks one writer per round; since every writer writes the same
//!   updates, which one wins does not matter.
//!
//! Everything here is pure.

use std::ops::Range;

use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, Timestamp};

use crate::shard::Update;

/// A binding of a source offset upper to a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Binding {
    /// The time the binding's data is written at.
    pub time: Timestamp,
    /// Every offset below this one is written at or before `time`.
    pub offset_upper: u64,
}

/// The data of one binding: write `offsets` at `time`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Round {
    /// The least data upper from which this round may be written: the previous
    /// binding's time plus one (or the minimum time for the first binding). A data shard
    /// whose upper is below this lacks an earlier round.
    pub lower: Timestamp,
    /// The time every update of the round is written at.
    pub time: Timestamp,
    /// The source offsets whose data the round holds.
    pub offsets: Range<u64>,
}

/// What a (re)starting source does: replay `rounds`, then mint after `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// Rounds that are bound but whose data may be missing, in time order.
    pub rounds: Vec<Round>,
    /// The last binding, if any: new bindings continue from it.
    pub last: Option<Binding>,
}

impl ResumePlan {
    /// The offset the next minted binding starts at.
    pub fn next_offset(&self) -> u64 {
        self.last.map_or(0, |b| b.offset_upper)
    }
}

/// A remap collection that does not describe a sequence of bindings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemapError {
    /// A row is not a single unsigned offset.
    #[error("remap row {row} is not an offset upper")]
    BadRow {
        /// The offending row, as text.
        row: String,
    },
    /// A time has no single new offset upper.
    #[error("remap collection has {count} offset uppers at {time}")]
    Ambiguous {
        /// The time.
        time: Timestamp,
        /// How many rows were added at that time.
        count: usize,
    },
    /// Bindings go backwards.
    #[error("remap binding {next:?} does not follow {previous:?}")]
    OutOfOrder {
        /// The earlier binding.
        previous: Binding,
        /// The later binding.
        next: Binding,
    },
}

/// The schema of a remap collection.
pub fn remap_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("offset_upper", ScalarType::UInt64.nullable(false))
        .finish()
}

fn offset_row(offset: u64) -> Row {
    Row::pack(&[Datum::UInt64(offset)])
}

/// The remap updates that move from `previous` to `next`.
pub fn binding_updates(previous: Option<&Binding>, next: &Binding) -> Vec<Update> {
    let mut updates = vec![(offset_row(next.offset_upper), next.time, 1)];
    if let Some(previous) = previous {
        updates.push((offset_row(previous.offset_upper), next.time, -1));
    }
    updates
}

/// Decodes remap updates (in any order) into bindings in time order. Times whose
/// updates cancel out are skipped.
pub fn decode_bindings(updates: &[Update]) -> Result<Vec<Binding>, RemapError> {
    let mut by_time: std::collections::BTreeMap<Timestamp, Vec<(Row, i64)>> = Default::default();
    for (row, time, diff) in updates {
        by_time.entry(*time).or_default().push((row.clone(), *diff));
    }
    let mut bindings: Vec<Binding> = Vec::with_capacity(by_time.len());
    for (time, rows) in by_time {
        let added: Vec<(Row, i64)> = crate::shard::consolidate_rows(rows)
            .into_iter()
            .filter(|(_, diff)| *diff > 0)
            .collect();
        let (row, diff) = match added.as_slice() {
            [] => continue,
            [one] => one.clone(),
            many => {
                return Err(RemapError::Ambiguous {
                    time,
                    count: many.len(),
                });
            }
        };
        let offset_upper = match (row.unpack().as_slice(), diff) {
            ([Datum::UInt64(offset)], 1) => *offset,
            _ => {
                return Err(RemapError::BadRow {
                    row: row.to_string(),
                });
            }
        };
        bindings.push(Binding { time, offset_upper });
    }
    Ok(bindings)
}

/// Plans a restart: `prior` is the binding in effect just before the data shards'
/// upper, `pending` every binding at or beyond it. The plan replays each pending
/// binding as a round.
pub fn plan_resume(prior: Option<Binding>, pending: &[Binding]) -> Result<ResumePlan, RemapError> {
    let mut last = prior;
    let mut rounds = Vec::with_capacity(pending.len());
    for next in pending {
        if let Some(previous) = last
            && (next.time <= previous.time || next.offset_upper < previous.offset_upper)
        {
            return Err(RemapError::OutOfOrder {
                previous,
                next: *next,
            });
        }
        rounds.push(round_between(last.as_ref(), next));
        last = Some(*next);
    }
    Ok(ResumePlan { rounds, last })
}

fn round_between(previous: Option<&Binding>, next: &Binding) -> Round {
    Round {
        lower: previous.map_or(Timestamp::new(0), |b| {
            Timestamp::new(b.time.as_millis().saturating_add(1))
        }),
        time: next.time,
        offsets: previous.map_or(0, |b| b.offset_upper)..next.offset_upper,
    }
}

/// The next binding after `last`: `step` more offsets (capped at `limit`) at the later
/// of the remap shard's upper and `now`. `None` once `limit` is reached.
pub fn mint(
    last: Option<&Binding>,
    remap_upper: Timestamp,
    now: Timestamp,
    step: u64,
    limit: Option<u64>,
) -> Option<(Binding, Round)> {
    let start = last.map_or(0, |b| b.offset_upper);
    let mut end = start.saturating_add(step.max(1));
    if let Some(limit) = limit {
        if start >= limit {
            return None;
        }
        end = end.min(limit);
    }
    let floor = last.map_or(remap_upper, |b| {
        remap_upper.max(Timestamp::new(b.time.as_millis().saturating_add(1)))
    });
    let next = Binding {
        time: floor.max(now),
        offset_upper: end,
    };
    Some((next, round_between(last, &next)))
}

#[cfg(test)]
mod tests;
