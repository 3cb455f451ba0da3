//! The task that owns one managed collection: it applies commands, batches writes,
//! ticks the upper, retries with backoff and truncates history.

use std::time::Duration;

use strata_controller_api::retry::random_fraction;
use strata_controller_api::{
    Certainty, Row, StatusUpdate, StorageError, StorageTimestamp, StorageWriteOp,
};
use strata_persist_backend::{PersistError, SourceData};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::desired::DesiredState;
use super::history::{HistoryPolicy, latest_statuses};
use super::writer::{Outcome, Writer, retryable};
use crate::status::{StatusDeduper, status_row};

/// Resolves a caller's wait.
pub(crate) type Done<T> = oneshot::Sender<Result<(), StorageError<T>>>;

/// Resolves a snapshot request.
pub(crate) type SnapshotDone<T> = oneshot::Sender<Result<Vec<(Row, i64)>, StorageError<T>>>;

/// What the manager asks of a collection's task.
pub(crate) enum Command<T> {
    Update(StorageWriteOp),
    Append {
        rows: Vec<(Row, i64)>,
        done: Option<Done<T>>,
    },
    AppendStatus {
        updates: Vec<StatusUpdate>,
        done: Option<Done<T>>,
    },
    Sync(Done<T>),
    Snapshot(SnapshotDone<T>),
    Truncate(Done<T>),
    SetHistory(Option<HistoryPolicy>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) enum Kind<T> {
    Differential(DesiredState),
    AppendOnly {
        rows: Vec<(Row, i64)>,
        waiters: Vec<Done<T>>,
    },
}

pub(crate) struct Task<T: StorageTimestamp> {
    pub(crate) writer: Writer<T>,
    pub(crate) kind: Kind<T>,
    pub(crate) read_only: watch::Receiver<bool>,
    pub(crate) batch_duration: watch::Receiver<Duration>,
    pub(crate) force_writable: bool,
    pub(crate) history: Option<HistoryPolicy>,
    pub(crate) deduper: Option<StatusDeduper>,
    pub(crate) seeded: bool,
    pub(crate) flush_at: Option<Instant>,
    pub(crate) sync_waiters: Vec<Done<T>>,
    /// Whether the next flush writes even when there is nothing to write, to confirm
    /// the shard's upper (a sync waits for that).
    pub(crate) force_write: bool,
}

fn persist_error<T>(e: PersistError) -> StorageError<T> {
    StorageError::persist(e.certainty(), e)
}

impl<T: StorageTimestamp> Task<T> {
    fn writable(&self) -> bool {
        self.force_writable || !*self.read_only.borrow()
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command<T>>) {
        self.on_start().await;
        let cfg = self.writer.cfg.clone();
        let mut tick =
            tokio::time::interval_at(Instant::now() + cfg.tick_interval, cfg.tick_interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut truncation = tokio::time::interval_at(
            Instant::now() + cfg.truncation_interval,
            cfg.truncation_interval,
        );
        truncation.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut watching_mode = !self.writable();
        loop {
            let flush_at = self.flush_at;
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => break,
                    Some(Command::Shutdown(done)) => {
                        if self.writable() {
                            let _ = self.flush().await;
                        }
                        let _ = done.send(());
                        break;
                    }
                    Some(cmd) => self.handle(cmd).await,
                },
                () = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                    self.flush_at = None;
                    self.flush_and_answer().await;
                }
                _ = tick.tick() => self.flush_and_answer().await,
                _ = truncation.tick(), if self.history.is_some() => {
                    let _ = self.truncate().await;
                }
                changed = self.read_only.changed(), if watching_mode => {
                    if changed.is_err() {
                        watching_mode = false;
                    } else if self.writable() {
                        watching_mode = false;
                        tracing::info!(id = %self.writer.id, "managed collection becomes writable");
                        self.on_start().await;
                    }
                }
            }
        }
    }

    /// Seeds and truncates history, and brings a differential collection in line with
    /// its desired state; at start-up and when writes become allowed.
    async fn on_start(&mut self) {
        self.seed_desired().await;
        if self.history.is_some() {
            let _ = self.truncate().await;
        }
        if self.writable() {
            self.flush_and_answer().await;
        }
    }

    /// Seeds a seeded differential collection's desired state from its shard, once.
    async fn seed_desired(&mut self) {
        let mut failures = 0;
        while matches!(&self.kind, Kind::Differential(s) if s.needs_seed) {
            match self.writer.read_latest(self.writable()).await {
                Ok(actual) => {
                    if let Kind::Differential(state) = &mut self.kind {
                        state.seed(actual);
                    }
                }
                Err(e) => {
                    if self
                        .back_off(&mut failures, e, "seeding a differential collection")
                        .await
                        .is_err()
                    {
                        // Start from empty; the shard's rows are retracted on write.
                        if let Kind::Differential(state) = &mut self.kind {
                            state.needs_seed = false;
                        }
                    }
                }
            }
        }
    }

    fn schedule(&mut self) {
        if self.flush_at.is_none() {
            self.flush_at = Some(Instant::now() + *self.batch_duration.borrow());
        }
    }

    async fn handle(&mut self, cmd: Command<T>) {
        let writable = self.writable();
        match cmd {
            Command::Update(op) => match &mut self.kind {
                Kind::Differential(state) => {
                    state.apply(op);
                    self.schedule();
                }
                Kind::AppendOnly { .. } => {
                    tracing::warn!(id = %self.writer.id, "desired-state update to an append-only collection ignored");
                }
            },
            Command::Append { done, .. } | Command::AppendStatus { done, .. } if !writable => {
                answer(done, Err(StorageError::ReadOnly));
            }
            Command::Append { rows, done } => self.enqueue(rows, done),
            Command::AppendStatus { updates, done } => {
                let kept = match &mut self.deduper {
                    Some(deduper) => deduper.filter(updates),
                    None => updates,
                };
                self.enqueue(kept.iter().map(|u| (status_row(u), 1)).collect(), done);
            }
            Command::Sync(done) if !writable => answer(Some(done), Err(StorageError::ReadOnly)),
            Command::Sync(done) => {
                self.sync_waiters.push(done);
                self.force_write = true;
                self.flush_at = Some(Instant::now());
            }
            Command::Snapshot(done) => {
                let res = self.writer.read_latest(writable).await;
                let rows = res.map(|rows| {
                    rows.into_iter()
                        .filter_map(|(d, r)| Some((d.ok()?, r)))
                        .collect()
                });
                let _ = done.send(rows.map_err(persist_error));
            }
            Command::Truncate(done) => {
                let _ = done.send(self.truncate().await);
            }
            Command::SetHistory(policy) => self.history = policy,
            Command::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }

    fn enqueue(&mut self, new_rows: Vec<(Row, i64)>, done: Option<Done<T>>) {
        match &mut self.kind {
            Kind::AppendOnly { rows, waiters } => {
                rows.extend(new_rows);
                waiters.extend(done);
                self.schedule();
            }
            Kind::Differential(_) => {
                let msg = "blind append to a differential collection".to_owned();
                answer(done, Err(StorageError::InvalidUsage(msg)));
            }
        }
    }

    async fn flush_and_answer(&mut self) {
        if !self.writable() {
            for done in self.sync_waiters.drain(..) {
                let _ = done.send(Err(StorageError::ReadOnly));
            }
            return;
        }
        let res = self.flush().await;
        for done in self.sync_waiters.drain(..) {
            let _ = done.send(res.clone());
        }
    }

    async fn flush(&mut self) -> Result<(), StorageError<T>> {
        let force = std::mem::take(&mut self.force_write);
        match self.kind {
            Kind::Differential(_) => self.flush_differential(force).await,
            Kind::AppendOnly { .. } => self.flush_append(force).await,
        }
    }

    /// Waits out a failure; `Err` when the attempts are used up or retrying is futile.
    async fn back_off(
        &self,
        failures: &mut u32,
        e: PersistError,
        what: &str,
    ) -> Result<(), StorageError<T>> {
        *failures += 1;
        let cfg = &self.writer.cfg;
        if !retryable(&e) || *failures >= cfg.max_attempts {
            tracing::warn!(id = %self.writer.id, error = %e, attempts = *failures, "{what} failed; retrying on the next tick");
            return Err(persist_error(e));
        }
        tracing::debug!(id = %self.writer.id, error = %e, "{what} failed; backing off");
        let delay = cfg.backoff.delay(*failures, random_fraction());
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn too_many_mismatches(&self, mismatches: &mut u32, what: &str) -> Result<(), StorageError<T>> {
        *mismatches += 1;
        if *mismatches > self.writer.cfg.max_cas_retries {
            tracing::warn!(id = %self.writer.id, mismatches = *mismatches, "{what} kept meeting other writers; retrying on the next tick");
            let shard = self.writer.write.shard_id();
            return Err(persist_error(PersistError::Contention {
                shard,
                attempts: *mismatches as usize,
            }));
        }
        Ok(())
    }

    async fn flush_differential(&mut self, force: bool) -> Result<(), StorageError<T>> {
        let (mut failures, mut mismatches) = (0, 0);
        loop {
            let Kind::Differential(state) = &mut self.kind else {
                return Ok(());
            };
            if state.needs_reconcile {
                match self.writer.read_latest(true).await {
                    Ok(actual) => state.reconcile(actual),
                    Err(e) => {
                        self.back_off(&mut failures, e, "reading a differential collection")
                            .await?;
                        continue;
                    }
                }
            }
            let pending = state.pending();
            match self.writer.write_at_upper(&pending, force).await {
                Outcome::Written | Outcome::Skipped => {
                    state.written();
                    return Ok(());
                }
                Outcome::Mismatch => {
                    state.needs_reconcile = true;
                    self.too_many_mismatches(&mut mismatches, "a differential write")?;
                }
                Outcome::Failed(e) => {
                    if e.certainty() == Certainty::Indeterminate {
                        state.needs_reconcile = true;
                    }
                    self.back_off(&mut failures, e, "a differential write")
                        .await?;
                }
            }
        }
    }

    async fn flush_append(&mut self, force: bool) -> Result<(), StorageError<T>> {
        let Kind::AppendOnly { rows, waiters } = &mut self.kind else {
            return Ok(());
        };
        let (rows, waiters) = (std::mem::take(rows), std::mem::take(waiters));
        let updates: Vec<(SourceData, i64)> =
            rows.iter().map(|(r, d)| (Ok(r.clone()), *d)).collect();
        let (mut failures, mut mismatches) = (0, 0);
        let res = loop {
            let retry = match self.writer.write_at_upper(&updates, force).await {
                Outcome::Written | Outcome::Skipped => break Ok(()),
                Outcome::Mismatch => self.too_many_mismatches(&mut mismatches, "an append"),
                // It may have happened: retrying could duplicate, so the caller decides.
                Outcome::Failed(e) if e.certainty() == Certainty::Indeterminate => {
                    break Err(persist_error(e));
                }
                Outcome::Failed(e) if !retryable(&e) => break Err(persist_error(e)),
                Outcome::Failed(e) => self.back_off(&mut failures, e, "an append").await,
            };
            if let Err(e) = retry {
                if matches!(
                    &e,
                    StorageError::Persist {
                        certainty: Certainty::Determinate,
                        ..
                    }
                ) && !rows.is_empty()
                {
                    // Nothing was written: keep the rows for the next tick.
                    if let Kind::AppendOnly {
                        rows: queued,
                        waiters: queued_waiters,
                    } = &mut self.kind
                    {
                        queued.splice(0..0, rows);
                        queued_waiters.splice(0..0, waiters);
                    }
                    return Err(e);
                }
                break Err(e);
            }
        };
        for done in waiters {
            let _ = done.send(res.clone());
        }
        res
    }

    /// Seeds the status deduper (once) and, when writable, retracts what the history
    /// policy no longer keeps; re-reads and retries when another writer moves the upper.
    async fn truncate(&mut self) -> Result<(), StorageError<T>> {
        let writable = self.writable();
        let (mut failures, mut mismatches) = (0, 0);
        loop {
            let actual = match self.writer.read_latest(writable).await {
                Ok(actual) => actual,
                Err(e) => {
                    self.back_off(&mut failures, e, "reading a history collection")
                        .await?;
                    continue;
                }
            };
            let rows: Vec<(Row, i64)> = actual
                .into_iter()
                .filter_map(|(d, r)| Some((d.ok()?, r)))
                .collect();
            if let (false, Some(deduper)) = (self.seeded, &mut self.deduper) {
                latest_statuses(&rows)
                    .iter()
                    .for_each(|u| deduper.seed_missing(u));
            }
            self.seeded = true;
            let Some(policy) = self.history.as_ref().filter(|_| writable) else {
                return Ok(());
            };
            let retractions: Vec<(SourceData, i64)> = policy
                .retractions(&rows, self.writer.cfg.now_ms())
                .into_iter()
                .map(|(row, diff)| (Ok(row), diff))
                .collect();
            if retractions.is_empty() {
                return Ok(());
            }
            match self.writer.write_at_upper(&retractions, true).await {
                Outcome::Written | Outcome::Skipped => {
                    tracing::debug!(id = %self.writer.id, retracted = retractions.len(), "truncated history");
                    return Ok(());
                }
                Outcome::Mismatch => {
                    self.too_many_mismatches(&mut mismatches, "a history truncation")?
                }
                Outcome::Failed(e) => {
                    self.back_off(&mut failures, e, "a history truncation")
                        .await?
                }
            }
        }
    }
}

fn answer<T>(done: Option<Done<T>>, res: Result<(), StorageError<T>>) {
    if let Some(done) = done {
        let _ = done.send(res);
    }
}
