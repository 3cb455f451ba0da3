//! [`StatisticsScraper`]: consolidates replica statistics per `(id, replica)` and
//! writes them to a differential statistics collection every `statistics_interval`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use strata_controller_api::{
    GlobalId, ReplicaId, Row, StorageError, StorageTimestamp, StorageWriteOp,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Consolidated, StatisticsKind};
use crate::manager::CollectionManager;

/// How a scraper runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatisticsConfig {
    /// How often the collection is written; change it at runtime with
    /// [`StatisticsScraper::set_interval`].
    pub interval: Duration,
    /// An entry with no report for this long is evicted (its rows retracted).
    pub evict_after: Duration,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        StatisticsConfig {
            interval: strata_controller_api::StorageParameters::DEFAULT_STATISTICS_INTERVAL,
            evict_after: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug)]
struct Entry<S> {
    stats: Consolidated<S>,
    updated: Instant,
}

type Entries<S> = BTreeMap<(GlobalId, ReplicaId), Entry<S>>;

/// Scrapes statistics of kind `S` into one differential collection. Dropping it stops
/// the scraping; the rows stay as they were last written.
#[derive(Debug)]
pub struct StatisticsScraper<S: StatisticsKind, T: StorageTimestamp> {
    entries: Arc<Mutex<Entries<S>>>,
    interval: watch::Sender<Duration>,
    manager: CollectionManager<T>,
    collection: GlobalId,
    evict_after: Duration,
    task: JoinHandle<()>,
}

impl<S: StatisticsKind, T: StorageTimestamp> Drop for StatisticsScraper<S, T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<S>(entries: &Mutex<Entries<S>>) -> MutexGuard<'_, Entries<S>> {
    // Every update is a single insert, remove or field write: valid after a panic.
    entries.lock().unwrap_or_else(|p| p.into_inner())
}

/// Evicts stale entries and renders the rest as rows.
fn rows_of<S: StatisticsKind>(
    entries: &Mutex<Entries<S>>,
    evict_after: Duration,
) -> Vec<(Row, i64)> {
    let mut entries = lock(entries);
    let now = Instant::now();
    entries.retain(|_, e| now.saturating_duration_since(e.updated) < evict_after);
    entries
        .iter()
        .map(|((id, replica), e)| (e.stats.shown().to_row(*id, *replica), 1))
        .collect()
}

impl<S: StatisticsKind, T: StorageTimestamp> StatisticsScraper<S, T> {
    /// Starts scraping into `collection`, a differential collection the manager manages
    /// (registered as [`CollectionKind::DifferentialSeeded`](crate::CollectionKind)),
    /// seeded from its current contents.
    pub async fn start(
        manager: CollectionManager<T>,
        collection: GlobalId,
        cfg: StatisticsConfig,
    ) -> Result<Self, StorageError<T>> {
        let seed = manager.snapshot_latest(collection).await?;
        let now = Instant::now();
        let mut entries = Entries::new();
        for (row, diff) in seed {
            match S::from_row(&row) {
                Some((id, replica, stats)) if diff > 0 => {
                    entries.insert(
                        (id, replica),
                        Entry {
                            stats: Consolidated::seeded(stats),
                            updated: now,
                        },
                    );
                }
                _ => tracing::debug!(%collection, %row, diff, "ignoring a statistics row"),
            }
        }
        let entries = Arc::new(Mutex::new(entries));
        let (interval, interval_rx) = watch::channel(cfg.interval);
        let task = tokio::spawn(run(
            Arc::clone(&entries),
            interval_rx,
            manager.clone(),
            collection,
            cfg.evict_after,
        ));
        Ok(StatisticsScraper {
            entries,
            interval,
            manager,
            collection,
            evict_after: cfg.evict_after,
            task,
        })
    }

    /// Folds a replica's report for `id` into its entry.
    pub fn update(&self, id: GlobalId, replica: ReplicaId, report: S) {
        let mut entries = lock(&self.entries);
        let entry = entries.entry((id, replica)).or_insert_with(|| Entry {
            stats: Consolidated::default(),
            updated: Instant::now(),
        });
        entry.stats.absorb(report);
        entry.updated = Instant::now();
    }

    /// Forgets every entry of `id` (a dropped source or sink).
    pub fn drop_id(&self, id: GlobalId) {
        lock(&self.entries).retain(|(key, _), _| *key != id);
    }

    /// Forgets every entry of `replica` (a dropped replica).
    pub fn drop_replica(&self, replica: ReplicaId) {
        lock(&self.entries).retain(|(_, key), _| *key != replica);
    }

    /// Keeps only the entries whose id `keep` accepts.
    pub fn retain_ids(&self, keep: impl Fn(GlobalId) -> bool) {
        lock(&self.entries).retain(|(id, _), _| keep(*id));
    }

    /// The consolidated statistics, as they will be written next.
    pub fn current(&self) -> Vec<(GlobalId, ReplicaId, S)> {
        lock(&self.entries)
            .iter()
            .map(|((id, replica), e)| (*id, *replica, e.stats.shown()))
            .collect()
    }

    /// Changes the scrape interval; the next scrape is one new interval from now.
    pub fn set_interval(&self, interval: Duration) {
        self.interval.send_replace(interval);
    }

    /// The current scrape interval.
    pub fn interval(&self) -> Duration {
        *self.interval.borrow()
    }

    /// Writes the current statistics to the collection's desired state now.
    pub fn scrape_now(&self) -> Result<(), StorageError<T>> {
        let rows = rows_of(&self.entries, self.evict_after);
        self.manager
            .update_desired(self.collection, StorageWriteOp::Set(rows))
    }
}

async fn run<S: StatisticsKind, T: StorageTimestamp>(
    entries: Arc<Mutex<Entries<S>>>,
    mut interval: watch::Receiver<Duration>,
    manager: CollectionManager<T>,
    collection: GlobalId,
    evict_after: Duration,
) {
    let mut next = Instant::now() + *interval.borrow();
    let mut last_written: Option<Vec<(Row, i64)>> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {
                let rows = rows_of(&entries, evict_after);
                if last_written.as_ref() != Some(&rows) {
                    if let Err(error) = manager.update_desired(collection, StorageWriteOp::Set(rows.clone())) {
                        tracing::info!(%collection, %error, "statistics collection is gone; scraper stops");
                        return;
                    }
                    last_written = Some(rows);
                }
                next = Instant::now() + *interval.borrow();
            }
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                next = Instant::now() + *interval.borrow_and_update();
            }
        }
    }
}
