//! The file sink: NDJSON of `(row, time, diff)` with an exactly-once progress marker.
//!
//! # Exactly once
//!
//! Beside the output `P` the sink keeps `P.progress`, a JSON object
//! `{"frontier": f, "len": n}`: the first `n` bytes of `P` hold every update at a time
//! before `f`, and nothing else. A batch is appended and synced first, then the marker is
//! replaced atomically (write a temporary file, sync, rename). On (re)start the sink
//! truncates `P` to `n` bytes, dropping any batch whose marker never landed, and resumes
//! listening at `f`. So every update appears exactly once whatever the crash point.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use strata_controller_api::{Antichain, Datum, Row, Timestamp};

use super::{SinkError, SinkPlan};
use crate::context::{Ctx, FaultPoint};
use crate::shard::{Update, frontier_time};

/// The durable progress of a file sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Every update before this time is in the file; `None` once the input closed.
    pub frontier: Option<u64>,
    /// The length of the file's committed prefix.
    pub len: u64,
}

/// One NDJSON line of a file sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkLine {
    /// The row's datums.
    pub row: Vec<Datum>,
    /// The update's time.
    pub time: u64,
    /// The update's multiplicity.
    pub diff: i64,
}

/// Reads a file sink's output: its committed prefix, decoded.
pub fn read_output(path: &Path) -> Result<Vec<(Row, u64, i64)>, SinkError> {
    let len = read_progress(path)?.map_or(0, |p| p.len);
    let bytes = std::fs::read(path).map_err(|e| io(path, &e))?;
    let committed = bytes
        .get(..usize::try_from(len).unwrap_or(usize::MAX))
        .unwrap_or(&bytes);
    let text = std::str::from_utf8(committed).map_err(|e| corrupt(path, &e.to_string()))?;
    text.lines()
        .map(|line| {
            let parsed: SinkLine =
                serde_json::from_str(line).map_err(|e| corrupt(path, &e.to_string()))?;
            Ok((Row::pack(&parsed.row), parsed.time, parsed.diff))
        })
        .collect()
}

/// The path of the progress marker of `path`.
pub fn progress_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".progress");
    PathBuf::from(name)
}

fn io(path: &Path, e: &std::io::Error) -> SinkError {
    SinkError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn corrupt(path: &Path, reason: &str) -> SinkError {
    SinkError::Corrupt {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

fn read_progress(path: &Path) -> Result<Option<Progress>, SinkError> {
    let marker = progress_path(path);
    match std::fs::read(&marker) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| corrupt(&marker, &e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&marker, &e)),
    }
}

fn write_progress(path: &Path, progress: Progress) -> Result<(), SinkError> {
    let marker = progress_path(path);
    let mut tmp_name = marker.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let bytes = serde_json::to_vec(&progress).map_err(|e| corrupt(&marker, &e.to_string()))?;
    let mut file = File::create(&tmp).map_err(|e| io(&tmp, &e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io(&tmp, &e))?;
    std::fs::rename(&tmp, &marker).map_err(|e| io(&marker, &e))
}

/// What a step of the sink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Wrote a batch (possibly empty) and advanced the frontier.
    Advanced,
    /// Nothing new to read yet.
    Idle,
    /// The input is closed and everything is written.
    Done,
}

/// A file sink's in-memory state; everything in it can be rebuilt from the file.
#[derive(Debug)]
pub(crate) struct FileSink {
    progress: Option<Progress>,
}

impl FileSink {
    pub(crate) fn new() -> Self {
        FileSink { progress: None }
    }

    /// Forgets the in-memory state, as a crash would.
    pub(crate) fn reset(&mut self) {
        self.progress = None;
    }

    /// The frontier the output durably holds (`[]` once the input closed), if known:
    /// recovered from the marker, or moved by a batch whose marker landed.
    pub(crate) fn upper(&self) -> Option<Antichain<Timestamp>> {
        self.progress.map(|p| match p.frontier {
            Some(f) => Antichain::from_elem(Timestamp::new(f)),
            None => Antichain::new(),
        })
    }

    /// Reads the marker and truncates the output to its committed prefix.
    fn recover(&self, path: &Path) -> Result<Option<Progress>, SinkError> {
        let progress = read_progress(path)?;
        let len = progress.map_or(0, |p| p.len);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io(path, &e))?;
        let actual = file.metadata().map_err(|e| io(path, &e))?.len();
        if actual < len {
            return Err(corrupt(
                path,
                &format!("{actual} bytes but {len} committed"),
            ));
        }
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(path, &e))?;
        Ok(progress)
    }

    /// Does one unit of work: recover, write the snapshot, or write one listen batch.
    pub(crate) fn step(
        &mut self,
        ctx: &Ctx,
        plan: &SinkPlan,
        path: &Path,
    ) -> Result<Step, SinkError> {
        let progress = match self.progress {
            Some(p) => p,
            None => match self.recover(path)? {
                Some(p) => p,
                None if plan.with_snapshot => {
                    let Some(snapshot) = ctx.shards.snapshot(plan.shard, plan.as_of)? else {
                        return Ok(Step::Idle);
                    };
                    let next = Antichain::from_elem(Timestamp::new(
                        plan.as_of.as_millis().saturating_add(1),
                    ));
                    self.write_batch(
                        ctx,
                        plan,
                        path,
                        Progress {
                            frontier: Some(0),
                            len: 0,
                        },
                        &snapshot,
                        &next,
                    )?;
                    return Ok(Step::Advanced);
                }
                None => Progress {
                    frontier: Some(plan.as_of.as_millis().saturating_add(1)),
                    len: 0,
                },
            },
        };
        self.progress = Some(progress);
        let Some(frontier) = progress.frontier else {
            return Ok(Step::Done);
        };
        let (updates, upper) = ctx
            .shards
            .listen_from(plan.shard, Timestamp::new(frontier))?;
        if frontier_time(&upper).is_some_and(|u| u.as_millis() <= frontier) {
            return Ok(Step::Idle);
        }
        self.write_batch(ctx, plan, path, progress, &updates, &upper)?;
        Ok(Step::Advanced)
    }

    fn write_batch(
        &mut self,
        ctx: &Ctx,
        plan: &SinkPlan,
        path: &Path,
        progress: Progress,
        updates: &[Update],
        upper: &Antichain<Timestamp>,
    ) -> Result<(), SinkError> {
        let counters = ctx.reporter.sink_counters(plan.id);
        let mut buf = Vec::new();
        for (row, time, diff) in updates {
            let line = SinkLine {
                row: row.unpack(),
                time: time.as_millis(),
                diff: *diff,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| corrupt(path, &e.to_string()))?;
            buf.push(b'\n');
        }
        counters
            .messages_staged
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        counters
            .bytes_staged
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io(path, &e))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| io(path, &e))?;
        if ctx.fail_at(FaultPoint::SinkAfterData) {
            self.reset();
            return Err(SinkError::InjectedCrash);
        }
        let next = Progress {
            frontier: frontier_time(upper).map(|t| t.as_millis()),
            len: progress.len + buf.len() as u64,
        };
        write_progress(path, next)?;
        self.progress = Some(next);
        counters
            .messages_committed
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        counters
            .bytes_committed
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
