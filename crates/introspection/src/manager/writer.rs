//! The persist side of one managed collection: appends at `max(now, upper)` and reads
//! of the latest contents.

use std::time::Instant;

use strata_controller_api::{Antichain, GlobalId, StorageTimestamp};
use strata_persist_backend::{
    PersistClient, PersistError, SourceData, Update, WriteHandle, time_code,
};

use tokio::sync::watch;

use crate::config::ManagerConfig;
use crate::metrics::ControllerMetrics;

/// What one compare-and-append came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The updates are durable.
    Written,
    /// Nothing to write and the upper is already ahead of the clock.
    Skipped,
    /// Another writer moved the upper; nothing was written.
    Mismatch,
    /// Persist failed; see the error's certainty.
    Failed(PersistError),
}

/// Whether a failure may go away on its own, so that retrying makes sense.
pub(crate) fn retryable(e: &PersistError) -> bool {
    matches!(
        e,
        PersistError::External(_)
            | PersistError::Contention { .. }
            | PersistError::LeaseExpired { .. }
            | PersistError::ReadBeforeSince { .. }
    )
}

pub(crate) struct Writer<T: StorageTimestamp> {
    pub(crate) id: GlobalId,
    pub(crate) label: String,
    pub(crate) client: PersistClient,
    pub(crate) write: WriteHandle<T>,
    pub(crate) cfg: ManagerConfig,
    pub(crate) metrics: ControllerMetrics,
    /// The shard's upper as this handle last saw it, for
    /// [`CollectionManager::watch_upper`](super::CollectionManager::watch_upper).
    pub(crate) upper_tx: watch::Sender<Antichain<T>>,
}

impl<T: StorageTimestamp> Writer<T> {
    fn now(&self) -> T {
        T::from_epoch_millis(self.cfg.now_ms())
    }

    /// Appends `updates` at `max(now, upper)`, moving the upper one past it, if the
    /// shard's upper is still the one this handle last saw. With nothing to write and
    /// the upper ahead of the clock it skips, unless `force` (which confirms that no
    /// other writer moved the upper).
    pub(crate) async fn write_at_upper(
        &mut self,
        updates: &[(SourceData, i64)],
        force: bool,
    ) -> Outcome {
        let Some(upper) = self.write.upper().as_option().copied() else {
            let msg = format!("managed collection {} is closed", self.id);
            return Outcome::Failed(PersistError::InvalidUsage(msg));
        };
        let now = self.now();
        if updates.is_empty() && now < upper && !force {
            return Outcome::Skipped;
        }
        let ts = now.max(upper);
        let batch: Vec<Update<T>> = updates.iter().map(|(d, r)| (d.clone(), ts, *r)).collect();
        let start = Instant::now();
        let res = self
            .write
            .compare_and_append(
                &batch,
                Antichain::from_elem(upper),
                Antichain::from_elem(ts.step_forward()),
            )
            .await;
        self.metrics
            .observe_persist_op("compare_and_append", start.elapsed());
        let outcome = match res {
            Ok(Ok(())) => Outcome::Written,
            Ok(Err(_)) => Outcome::Mismatch,
            Err(e) => Outcome::Failed(e),
        };
        self.record(&outcome);
        outcome
    }

    /// Tells watchers the upper this handle last saw, if it moved.
    fn publish_upper(&self) {
        let upper = self.write.upper();
        self.upper_tx.send_if_modified(|seen| {
            let moved = seen != upper;
            if moved {
                seen.clone_from(upper);
            }
            moved
        });
    }

    fn record(&self, outcome: &Outcome) {
        self.publish_upper();
        let label = &self.label;
        match outcome {
            Outcome::Written => self.metrics.managed_write(label, "ok"),
            Outcome::Skipped => {}
            Outcome::Mismatch => {
                self.metrics.managed_write(label, "upper_mismatch");
                self.metrics.cas_retry(label);
            }
            Outcome::Failed(_) => self.metrics.managed_write(label, "error"),
        }
        if let Some(upper) = self.write.upper().as_option() {
            self.metrics
                .set_frontier_lag(label, self.cfg.now_ms(), time_code(upper));
        }
    }

    /// The consolidated contents at `upper - 1`, with this handle's upper set to the
    /// `upper` they were read at. If the shard's since has caught up with its upper and
    /// `may_advance`, the upper is moved past the since first (contents unchanged).
    pub(crate) async fn read_latest(
        &mut self,
        may_advance: bool,
    ) -> Result<Vec<(SourceData, i64)>, PersistError> {
        let start = Instant::now();
        let shard = self.write.shard_id();
        let desc = self.write.desc().clone();
        for _ in 0..3 {
            let upper = self.write.fetch_recent_upper().await?.clone();
            self.publish_upper();
            let Some(upper) = upper.as_option().copied() else {
                let msg = format!("managed collection {} is closed", self.id);
                return Err(PersistError::InvalidUsage(msg));
            };
            let Some(as_of) = upper.step_back() else {
                return Ok(Vec::new());
            };
            let mut reader = self
                .client
                .open_leased_reader::<T>(shard, desc.clone())
                .await?;
            let since = reader.since().as_option().copied();
            let res = match since {
                Some(since) if since <= as_of => Some(reader.snapshot(&as_of).await),
                _ => None,
            };
            if let Err(error) = reader.expire().await {
                tracing::debug!(id = %self.id, %error, "expiring a snapshot reader failed");
            }
            match (res, since) {
                (Some(res), _) => {
                    self.metrics.observe_persist_op("snapshot", start.elapsed());
                    return res.map(|ups| ups.into_iter().map(|(d, _, r)| (d, r)).collect());
                }
                (None, Some(since)) if may_advance => {
                    let (from, to) = (
                        Antichain::from_elem(upper),
                        Antichain::from_elem(since.step_forward()),
                    );
                    if let Err(error) = self.write.compare_and_append(&[], from, to).await? {
                        tracing::debug!(id = %self.id, %error, "advancing past the since raced another writer");
                    }
                }
                (None, since) => {
                    let since = since.map_or_else(|| "[]".to_owned(), |s| s.to_string());
                    return Err(PersistError::ReadBeforeSince {
                        shard,
                        as_of: as_of.to_string(),
                        since,
                    });
                }
            }
        }
        Err(PersistError::Contention { shard, attempts: 3 })
    }
}
