//! [`Driver`]: the controller with the durable catalog it was opened on, the loop that
//! drives `ready`/`process` while the demo waits, and what that loop has seen
//! (statuses, drops).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use strata_controller_api::{
    Antichain, Collections, GlobalId, Lifecycle, StatusUpdate, StorageMetadata, StorageResponse,
    Timestamp,
};
use strata_controller_core::Controller;
use strata_controller_core::catalog::DurableCatalog;
use strata_introspection::Metrics;
use strata_persist_backend::PersistClient;

use super::plan;
use super::progress::Display;

/// The controller and everything the demo tracks about it.
pub(crate) struct Driver {
    pub(crate) ctl: Controller<Timestamp>,
    pub(crate) catalog: DurableCatalog,
    pub(crate) client: PersistClient,
    pub(crate) display: Display,
    pub(crate) metrics: Metrics,
    /// The latest status of each source and sink.
    pub(crate) statuses: BTreeMap<GlobalId, StatusUpdate>,
    /// How many status updates arrived.
    pub(crate) status_updates: u64,
    /// Ids whose drop the replicas confirmed.
    pub(crate) dropped: BTreeSet<GlobalId>,
    /// How many frontier reports arrived.
    pub(crate) frontier_reports: u64,
    /// The collections the live line shows.
    pub(crate) watched: Vec<GlobalId>,
    /// The sink file the live line shows the progress of, read from the sink's own
    /// progress marker: what is durable in the file, independent of what the replica
    /// reports to the controller.
    pub(crate) sink_path: Option<PathBuf>,
    /// Atomic table writes so far (each commits to both tables at once).
    pub(crate) table_commits: u64,
    /// Where the throughput of the live line is measured from: the time, rows the
    /// source had committed and table writes made then.
    pub(crate) rates_from: std::sync::Mutex<Option<(Instant, u64, u64)>>,
}

/// Per-second throughput over `elapsed`, with one decimal below 10.
pub(crate) fn per_second(count: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "-".to_owned();
    }
    let rate = count as f64 / secs;
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

/// Wall-clock milliseconds since the Unix epoch, the demo's timeline.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The frontier a file sink has written up to, from its progress marker: 0 before its
/// first batch, `u64::MAX` once its input closed.
pub(crate) fn sink_frontier(path: &std::path::Path) -> u64 {
    let marker = strata_replica::sink::file::progress_path(path);
    let Ok(bytes) = std::fs::read(marker) else {
        return 0;
    };
    match serde_json::from_slice::<strata_replica::sink::file::Progress>(&bytes) {
        Ok(progress) => progress.frontier.unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// The first time of a frontier; `None` for the empty (closed) frontier.
pub(crate) fn first(frontier: &Antichain<Timestamp>) -> Option<u64> {
    frontier.elements().first().map(Timestamp::as_millis)
}

/// A frontier as text: `[]` when closed.
pub(crate) fn show(frontier: Option<u64>) -> String {
    frontier.map_or_else(|| "[]".to_owned(), |t| t.to_string())
}

impl Driver {
    /// The catalog's mapping, as hosts pass it to the controller.
    pub(crate) fn metadata(&self) -> StorageMetadata {
        StorageMetadata::from_txn(&self.catalog.begin::<Timestamp>())
    }

    /// Records what one response says.
    fn absorb(&mut self, response: StorageResponse<Timestamp>) {
        match response {
            StorageResponse::FrontierUpdates(updates) => {
                self.frontier_reports += updates.len() as u64;
            }
            StorageResponse::DroppedIds(ids) => self.dropped.extend(ids),
            StorageResponse::StatusUpdates(updates) => {
                for update in updates {
                    self.status_updates += 1;
                    self.statuses.insert(update.id, update);
                }
            }
            // A response kind added later is not the demo's business.
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Waits up to `max_wait` for the controller to have work, then processes it.
    pub(crate) async fn pump(&mut self, max_wait: Duration) -> anyhow::Result<()> {
        let _ = tokio::time::timeout(max_wait, self.ctl.ready()).await;
        while let Some(response) = self
            .ctl
            .process()
            .context("the controller failed to process replica responses")?
        {
            self.absorb(response);
        }
        self.ctl.apply_pending();
        Ok(())
    }

    /// The `(since, upper)` of `id` in milliseconds, if the controller knows it.
    pub(crate) fn frontiers(&self, id: GlobalId) -> Option<(Option<u64>, Option<u64>)> {
        let f = self.ctl.collection_frontiers(id).ok()?;
        Some((first(&f.since), first(&f.upper)))
    }

    /// The upper of `id` in milliseconds (0 if unknown, `u64::MAX` if closed).
    pub(crate) fn upper(&self, id: GlobalId) -> u64 {
        match self.frontiers(id) {
            Some((_, Some(upper))) => upper,
            Some((_, None)) => u64::MAX,
            None => 0,
        }
    }

    /// The live line: each watched collection's upper and lag behind the wall clock.
    /// Also updates the lag gauges of the metrics endpoint.
    pub(crate) fn live_message(&self) -> String {
        let now = now_ms();
        let mut parts = Vec::new();
        for id in &self.watched {
            let Some((_, upper)) = self.frontiers(*id) else {
                continue;
            };
            let name = plan::name(*id);
            match upper {
                Some(0) => parts.push(format!("{name} starting")),
                Some(upper) => {
                    self.metrics.controller.set_frontier_lag(&name, now, upper);
                    let lag = now.saturating_sub(upper);
                    parts.push(format!("{name} {upper} (lag {lag} ms)"));
                }
                None => parts.push(format!("{name} closed")),
            }
        }
        // Rows the in-process replicas committed for the source's collections (a
        // `strata replica` process counts its own: see its --metrics-addr).
        let rows: u64 = plan::SOURCE
            .iter()
            .map(|id| self.metrics.replica.updates_written(&id.to_string()))
            .sum();
        if let Ok(mut from) = self.rates_from.lock() {
            let (at, rows0, commits0) =
                *from.get_or_insert((Instant::now(), rows, self.table_commits));
            let elapsed = at.elapsed();
            if rows > rows0 {
                parts.push(format!(
                    "auction {} rows/s",
                    per_second(rows - rows0, elapsed)
                ));
            }
            parts.push(format!(
                "tables {} commits/s",
                per_second(self.table_commits - commits0, elapsed)
            ));
        }
        if let Some(path) = &self.sink_path {
            match sink_frontier(path) {
                0 => parts.push("sink starting".to_owned()),
                u64::MAX => parts.push("sink done".to_owned()),
                frontier => {
                    let lag = now.saturating_sub(frontier);
                    parts.push(format!("sink file {frontier} (lag {lag} ms)"));
                }
            }
        }
        parts.join(" · ")
    }

    /// Drives the controller until `done` holds or `limit` passes, showing `label` and
    /// the live line meanwhile. Returns whether `done` held.
    pub(crate) async fn wait_until(
        &mut self,
        label: &str,
        limit: Duration,
        mut done: impl FnMut(&mut Driver) -> bool,
    ) -> anyhow::Result<bool> {
        let start = Instant::now();
        loop {
            self.ctl.apply_pending();
            if done(self) {
                return Ok(true);
            }
            if start.elapsed() >= limit {
                return Ok(false);
            }
            let message = self.live_message();
            self.display.live(label, None, &message);
            self.pump(Duration::from_millis(50)).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_per_second() {
        for (count, ms, want) in [
            (0, 1000, "0.0"),
            (5, 2000, "2.5"),
            (95, 1000, "95"),
            (1234, 500, "2468"),
            (7, 0, "-"),
        ] {
            assert_eq!(
                per_second(count, Duration::from_millis(ms)),
                want,
                "{count}/{ms}"
            );
        }
    }
}
