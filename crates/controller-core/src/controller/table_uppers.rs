//! Which tables' frontiers move when the tables' shared upper moves.
//!
//! Every table registered with the txns shard has the txns upper as its upper, so one
//! commit moves them all. Moving each table's frontiers (and reporting each) on every
//! commit costs O(tables) per write: at 100k tables one 1-row write cost a 160 ms
//! `process` round. Instead:
//! - the tables a commit wrote move at once (a host waiting to read its write hears of
//!   it in the next `process` round);
//! - every other table moves in a sweep, at most once per
//!   [`ControllerConfig::table_upper_sweep_interval`](super::ControllerConfig), to the
//!   latest shared upper however many commits passed in between.
//!
//! `collection_frontiers` of a table is exact at any time (it reads the shared upper);
//! only the `FrontierUpdates` of tables nobody wrote, and the since that follows their
//! upper, lag by at most one interval. The reference moves every table on every
//! commit.
//!
//! Pure bookkeeping: the controller feeds it writes and upper moves, and applies what
//! it says.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use strata_controller_api::GlobalId;

/// What to move after the shared upper moved (or a sweep fell due).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Move {
    /// Nothing is behind, or the next sweep is not due.
    Nothing,
    /// These tables (written since the last move) only.
    Written(Vec<GlobalId>),
    /// Every table.
    All,
}

/// The sweep state.
#[derive(Debug)]
pub(crate) struct TableUppers {
    interval: Duration,
    /// Tables written since they last moved.
    written: BTreeSet<GlobalId>,
    /// Whether some table's frontiers are behind the shared upper.
    behind: bool,
    last_sweep: Option<Instant>,
}

impl TableUppers {
    pub(crate) fn new(interval: Duration) -> TableUppers {
        TableUppers {
            interval,
            written: BTreeSet::new(),
            behind: false,
            last_sweep: None,
        }
    }

    /// `ids` were written by an `append_table` (committed or about to be).
    pub(crate) fn note_written(&mut self, ids: impl IntoIterator<Item = GlobalId>) {
        self.written.extend(ids);
    }

    /// What to move at `now`, given whether the shared upper moved since the last call.
    pub(crate) fn on_drain(&mut self, moved: bool, now: Instant) -> Move {
        self.behind |= moved;
        if !self.behind {
            return Move::Nothing;
        }
        let due = self
            .last_sweep
            .is_none_or(|at| now.saturating_duration_since(at) >= self.interval);
        if due {
            self.behind = false;
            self.last_sweep = Some(now);
            self.written.clear();
            return Move::All;
        }
        if moved && !self.written.is_empty() {
            return Move::Written(std::mem::take(&mut self.written).into_iter().collect());
        }
        Move::Nothing
    }

    /// When the next sweep falls due, if some table is behind.
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        if !self.behind {
            return None;
        }
        Some(
            self.last_sweep
                .map_or_else(Instant::now, |at| at + self.interval),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> GlobalId {
        GlobalId::User(i)
    }

    /// Steps: (ms since start, ids written before, whether the upper moved, expected
    /// move, expected next sweep in ms since start).
    type Step = (u64, &'static [u64], bool, Move, Option<u64>);

    #[test]
    fn written_tables_move_at_once_and_the_rest_once_per_interval() {
        let start = Instant::now();
        let ms = |m: u64| start + Duration::from_millis(m);
        let table: &[Step] = &[
            // Nothing moved: nothing to do.
            (0, &[], false, Move::Nothing, None),
            // The first move sweeps at once.
            (1, &[1], true, Move::All, None),
            // Within the interval: only the written tables; the rest wait for 1001.
            (
                10,
                &[2, 3],
                true,
                Move::Written(vec![id(2), id(3)]),
                Some(1001),
            ),
            (20, &[], true, Move::Nothing, Some(1001)),
            (30, &[3], false, Move::Nothing, Some(1001)),
            // Written before a move that comes later: moved with it.
            (40, &[], true, Move::Written(vec![id(3)]), Some(1001)),
            // Due: everything, once.
            (1001, &[4], false, Move::All, None),
            (1002, &[], false, Move::Nothing, None),
            // The next move after a quiet spell sweeps at once (the interval passed).
            (5000, &[], true, Move::All, None),
        ];
        let mut state = TableUppers::new(Duration::from_secs(1));
        for (i, (at, written, moved, want, next)) in table.iter().enumerate() {
            state.note_written(written.iter().map(|i| id(*i)));
            assert_eq!(&state.on_drain(*moved, ms(*at)), want, "step {i}");
            assert_eq!(state.next_sweep(), next.map(ms), "step {i}: next sweep");
        }
    }
}
