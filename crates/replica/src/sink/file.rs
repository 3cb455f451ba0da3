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

use serde::{Deserialize, Serialize};
use strata_controller_api::{Antichain, Datum, GlobalId, RelationDesc, Row, Timestamp};

use super::SinkError;
use crate::connector::builtin::FILE;
use crate::connector::{ConnectorError, SinkBatch, SinkCommit, SinkConnector, SinkWriter};
use crate::shard::frontier_time;

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

/// The file sink: NDJSON lines in the file at `path`, with its progress marker beside
/// it. Registered as [`crate::connector::builtin::FILE`].
#[derive(Debug, Clone)]
pub struct FileSinkConnector {
    path: PathBuf,
}

impl FileSinkConnector {
    /// A file sink to `path`, which must name a file (existing or not) in an existing
    /// directory.
    pub fn new(path: &str) -> Result<Self, SinkError> {
        Ok(FileSinkConnector {
            path: super::check_path(path)?,
        })
    }
}

impl SinkConnector for FileSinkConnector {
    fn kind(&self) -> &str {
        FILE
    }

    fn open(
        &self,
        _sink: GlobalId,
        _desc: &RelationDesc,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(FileWriter {
            path: self.path.clone(),
            progress: None,
            pending: 0,
        }))
    }
}

fn failed(e: &SinkError) -> ConnectorError {
    ConnectorError::Upstream {
        kind: FILE.to_owned(),
        reason: e.to_string(),
    }
}

/// A file sink's writer; everything in it can be rebuilt from the file.
#[derive(Debug)]
struct FileWriter {
    path: PathBuf,
    /// The committed progress, once recovered.
    progress: Option<Progress>,
    /// Bytes appended by `write` and not yet committed.
    pending: u64,
}

impl FileWriter {
    /// Reads the marker and truncates the output to its committed prefix.
    fn recover_file(&self) -> Result<Option<Progress>, SinkError> {
        let path = &self.path;
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
}

impl SinkWriter for FileWriter {
    fn recover(&mut self, start: Timestamp) -> Result<Antichain<Timestamp>, ConnectorError> {
        self.pending = 0;
        let progress = self
            .recover_file()
            .map_err(|e| failed(&e))?
            .unwrap_or(Progress {
                frontier: Some(start.as_millis()),
                len: 0,
            });
        self.progress = Some(progress);
        Ok(match progress.frontier {
            Some(f) => Antichain::from_elem(Timestamp::new(f)),
            None => Antichain::new(),
        })
    }

    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<u64, ConnectorError> {
        let path = &self.path;
        let mut buf = Vec::new();
        for (row, time, diff) in batch.updates {
            let line = SinkLine {
                row: row.unpack(),
                time: time.as_millis(),
                diff: *diff,
            };
            serde_json::to_writer(&mut buf, &line)
                .map_err(|e| failed(&corrupt(path, &e.to_string())))?;
            buf.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| failed(&io(path, &e)))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| failed(&io(path, &e)))?;
        self.pending += buf.len() as u64;
        Ok(buf.len() as u64)
    }

    fn commit(&mut self, batch: &SinkBatch<'_>) -> Result<SinkCommit, ConnectorError> {
        let Some(progress) = self.progress else {
            return Err(ConnectorError::Contract {
                kind: FILE.to_owned(),
                reason: "a batch was committed before the sink recovered".into(),
            });
        };
        let next = Progress {
            frontier: frontier_time(batch.upper).map(|t| t.as_millis()),
            len: progress.len + self.pending,
        };
        write_progress(&self.path, next).map_err(|e| failed(&e))?;
        self.progress = Some(next);
        self.pending = 0;
        Ok(SinkCommit::Committed)
    }
}
