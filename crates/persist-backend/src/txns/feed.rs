//! How a [`TxnsHandle`] follows the txns shard without re-reading it: it catches up
//! with other handles' commits through a change feed (a `Listen` from where it last read
//! the shard in full), and lets its reader's since follow its view, so compaction can
//! consolidate what was committed and tidied before it.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{Row, StorageTimestamp};

use super::error::{TxnsError, TxnsResult};
use super::handle::TxnsHandle;
use crate::error::PersistError;
use crate::read::ListenEvent;
use crate::update::{frontier_code, frontier_of, time_code};

/// How many commits a handle sees (its own, or others' it caught up with) before its
/// reader's since follows its view's upper (one CAS of the txns shard).
const SINCE_RELEASE_MOVES: usize = 16;

/// ... or on its first move after this long, whatever the count (a handle that
/// refreshes rarely must not hold the since back for long).
const SINCE_RELEASE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl<T: StorageTimestamp> TxnsHandle<T> {
    /// Moves the cached view to `upper` by the rows other handles added and retracted
    /// since it was last exact (through `changes`), not by reading every live row
    /// again: a commit of one row by the controller costs its applier one row, not one
    /// per registered table. Rows below the view's upper are skipped: this handle's
    /// own commits are in the view already. Returns how many commits (distinct times)
    /// it caught up with.
    pub(super) async fn catch_up(&mut self, upper: u64) -> TxnsResult<usize> {
        let from = self.view.upper;
        // Net per row over the window: a row committed and tidied within it nets out.
        let mut net: BTreeMap<Row, i64> = BTreeMap::new();
        let mut commits = BTreeSet::new();
        let changes = self
            .changes
            .as_mut()
            .ok_or_else(|| TxnsError::InvalidUsage("no change feed".into()))?;
        // The feed may pass `upper` (a commit landed since it was read): the view then
        // moves to wherever the feed's updates are complete.
        let mut reached = frontier_code(&changes.frontier());
        while reached.is_some_and(|f| f < upper) {
            for event in changes.next().await? {
                let ListenEvent::Updates(updates) = event else {
                    continue;
                };
                for (data, ts, diff) in updates {
                    if time_code(&ts) < from {
                        continue;
                    }
                    commits.insert(time_code(&ts));
                    let row =
                        data.map_err(|e| TxnsError::InvalidUsage(format!("error row {e:?}")))?;
                    *net.entry(row).or_default() += diff;
                }
            }
            reached = frontier_code(&changes.frontier());
        }
        let Some(upper) = reached else {
            return Err(TxnsError::InvalidUsage("the txns shard was closed".into()));
        };
        let mut added = Vec::new();
        let mut retracted = Vec::new();
        for (row, diff) in net {
            match diff {
                0 => {}
                1 if !self.live.contains(&row) => added.push(row),
                -1 if self.live.contains(&row) => retracted.push(row),
                d => {
                    return Err(TxnsError::InvalidUsage(format!(
                        "a change of {d} to a row that is {}live",
                        if self.live.contains(&row) { "" } else { "not " }
                    )));
                }
            }
        }
        for row in &retracted {
            self.live.remove(row);
        }
        self.live.extend(added.iter().cloned());
        self.view
            .apply(upper, &added, &retracted)
            .map_err(TxnsError::InvalidUsage)?;
        let live = &self.live;
        self.tidy.retain(|r| live.contains(r));
        Ok(commits.len())
    }

    /// Lets this handle's reader since follow the view's upper, every
    /// [`SINCE_RELEASE_MOVES`] commits it saw (`commits` more now), or on the first move after
    /// [`SINCE_RELEASE_INTERVAL`] (one CAS each), so that compaction can
    /// consolidate the rows committed and tidied before it: the txns shard then keeps
    /// about its live rows, not every commit ever made. The handle reads the shard
    /// only at its latest time and from its change feed, both at or past it.
    pub(super) async fn release_since(&mut self, commits: usize) -> TxnsResult<()> {
        self.moves_since_release += commits;
        let a_while = self.last_release.elapsed() >= SINCE_RELEASE_INTERVAL;
        if self.moves_since_release < SINCE_RELEASE_MOVES && !a_while {
            return Ok(());
        }
        let Some(hold) = self.view.upper.checked_sub(1) else {
            return Ok(());
        };
        let hold = hold.min(
            self.changes
                .as_ref()
                .and_then(|c| frontier_code(&c.frontier()))
                .map_or(hold, |f| f.saturating_sub(1)),
        );
        if frontier_code(self.txns_read.since()).is_some_and(|s| s >= hold) {
            return Ok(());
        }
        self.moves_since_release = 0;
        self.last_release = std::time::Instant::now();
        match self
            .txns_read
            .downgrade_since(&frontier_of(Some(hold)))
            .await
        {
            // A lapsed lease: the next snapshot opens a new reader.
            Err(PersistError::LeaseExpired { .. }) => Ok(()),
            other => Ok(other?),
        }
    }
}
