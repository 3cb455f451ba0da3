//! The background applier: links committed table writes into their data shards off the
//! acknowledgement path.
//!
//! A table commit is one CAS of the txns shard; its batches still have to be linked
//! into each data shard before a reader of that shard (a sink, a replica, an
//! inspection) sees them without going through the txns shard. The storage task tells
//! the applier the latest commit time after every commit (a `watch`, so a burst of
//! commits wakes it once), and the applier applies everything at or before it with its
//! own txns handle: one compare-and-append per data shard per round, however many
//! commits the round carries. It then tells the storage task which shards it applied,
//! so the next commit retracts their rows from the txns shard for free and the txns
//! shard's live rows stay bounded.
//!
//! Rounds start at most every [`ROUND_INTERVAL`]: under steady load a round then carries
//! every commit of the interval, so each data shard costs one compare-and-append per
//! interval instead of one per commit, which leaves the disk (two fsyncs per commit on
//! local files) to the commits that callers wait for. An idle applier starts a round at
//! once, so a lone commit is applied without delay.
//!
//! Applying is idempotent and safe beside readers that apply on demand; a failed round
//! is retried with backoff, and a later round covers it.

use std::time::Duration;

use strata_controller_api::retry::{Backoff, BackoffConfig};
use tokio::time::Instant;

use strata_controller_api::{ShardId, StorageTimestamp};
use strata_persist_backend::txns::TxnsHandle;
use tokio::sync::watch;

/// The least time between the starts of two rounds: well inside the 1 s within which a
/// commit must reach its data shards.
pub(crate) const ROUND_INTERVAL: Duration = Duration::from_millis(100);

/// Where the applier reports a round; returns false once nobody listens.
pub(crate) type Report<T> = Box<dyn Fn(Applied<T>) -> bool + Send>;

/// What the applier reports: every commit of these shards at or before `ts` is applied.
#[derive(Debug)]
pub(crate) struct Applied<T> {
    pub(crate) ts: T,
    pub(crate) shards: Vec<ShardId>,
}

/// The storage task's end: `notify` after each commit.
#[derive(Debug)]
pub(crate) struct ApplierHandle<T> {
    latest: watch::Sender<Option<T>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T: StorageTimestamp> ApplierHandle<T> {
    /// Asks for every commit at or before `ts` to be applied.
    pub(crate) fn notify(&self, ts: T) {
        self.latest.send_if_modified(|cur| match cur {
            Some(c) if *c >= ts => false,
            _ => {
                *cur = Some(ts);
                true
            }
        });
    }

    /// Stops the applier once it has applied what it was told about, waiting up to
    /// `bound` for the round in flight.
    pub(crate) async fn stop(self, bound: Duration) {
        let ApplierHandle { latest, task } = self;
        drop(latest);
        if tokio::time::timeout(bound, task).await.is_err() {
            tracing::warn!(
                ?bound,
                "the applier's round outlasts close; the next controller applies it"
            );
        }
    }
}

/// Starts the applier with its own handle of the txns shard (opened by the caller, so
/// that its registration is done before the first commit); it ends when the returned
/// handle is dropped.
pub(crate) fn spawn<T: StorageTimestamp>(
    handle: TxnsHandle<T>,
    applied: Report<T>,
) -> ApplierHandle<T> {
    let (latest, rx) = watch::channel(None);
    let task = tokio::spawn(run(handle, rx, applied));
    ApplierHandle { latest, task }
}

async fn run<T: StorageTimestamp>(
    mut handle: TxnsHandle<T>,
    mut rx: watch::Receiver<Option<T>>,
    applied: Report<T>,
) {
    let mut backoff = Backoff::new(BackoffConfig::PEER);
    let mut last_round: Option<Instant> = None;
    while rx.changed().await.is_ok() {
        if let Some(last) = last_round {
            // Let the commits of the rest of the interval join this round.
            tokio::time::sleep_until(last + ROUND_INTERVAL).await;
        }
        last_round = Some(Instant::now());
        let Some(ts) = *rx.borrow_and_update() else {
            continue;
        };
        match handle.apply_le(ts).await {
            Ok(shards) => {
                backoff.reset();
                if !shards.is_empty() && !applied(Applied { ts, shards }) {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(txns = %handle.txns_id(), error = %e, "an apply round failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                // Try again even if no commit comes: what is committed must be applied.
                rx.mark_changed();
            }
        }
    }
}
