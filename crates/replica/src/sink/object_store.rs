//! The object-store sink (feature `persist`): one Parquet file per time range under a
//! prefix, `{prefix}/{lower:020}-{upper:020}.parquet`, holding every update at a time
//! in `[lower, upper)` (the Parquet layout of persist parts: one column per relation
//! column, plus `ts`, `diff` and `err`). The snapshot file is `[0, as_of + 1)`.
//!
//! # Exactly once
//!
//! A file appears atomically (`PutMode::Create`), and the files form a *chain*: each
//! starts where the previous one ends. On (re)start the sink lists the prefix, follows
//! the chain from its start (taking the widest file at each step) and resumes at its
//! end; files off the chain (left by a sink that lost a race) are deleted. Readers
//! follow the same chain. A crash before a put leaves nothing; after it, the file is on
//! the chain. So every update is in exactly one chained file.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use strata_controller_api::{Antichain, GlobalId, RelationDesc, Timestamp};
use strata_persist_backend::location::{Location, LocationSpec};

use super::SinkError;
use crate::connector::builtin::OBJECT_STORE;
use crate::connector::{ConnectorError, SinkBatch, SinkCommit, SinkConnector, SinkWriter};
use crate::shard::frontier_time;

/// The object-store sink: Parquet files under `prefix` at the persist-style location
/// `url`. Registered as [`crate::connector::builtin::OBJECT_STORE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectStoreSinkConnector {
    url: String,
    prefix: String,
}

impl ObjectStoreSinkConnector {
    /// A sink to `prefix` (not empty) at `url` (`mem://`, `file://`, `s3://`).
    pub fn new(url: &str, prefix: &str) -> Result<Self, SinkError> {
        let bad = |reason: String| SinkError::BadPath {
            path: format!("{url} {prefix}"),
            reason,
        };
        LocationSpec::parse(url).map_err(|e| bad(e.to_string()))?;
        if prefix.trim_matches('/').is_empty() {
            return Err(bad("the prefix is empty".into()));
        }
        Ok(ObjectStoreSinkConnector {
            url: url.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

impl SinkConnector for ObjectStoreSinkConnector {
    fn kind(&self) -> &str {
        OBJECT_STORE
    }

    fn open(
        &self,
        _sink: GlobalId,
        desc: &RelationDesc,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(ObjectStoreWriter {
            url: self.url.clone(),
            prefix: self.prefix.clone(),
            desc: desc.clone(),
            runtime: None,
            location: None,
            staged: None,
        }))
    }
}

fn io(what: &str, e: &dyn std::fmt::Display) -> ConnectorError {
    ConnectorError::Upstream {
        kind: OBJECT_STORE.to_owned(),
        reason: SinkError::Io {
            path: what.to_owned(),
            reason: e.to_string(),
        }
        .to_string(),
    }
}

/// The key of the file holding `[lower, upper)`.
pub fn file_key(prefix: &str, lower: u64, upper: u64) -> String {
    format!(
        "{}/{lower:020}-{upper:020}.parquet",
        prefix.trim_end_matches('/')
    )
}

/// Parses a file name back into its range.
pub fn parse_range(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".parquet")?;
    let (lower, upper) = stem.split_once('-')?;
    Some((lower.parse().ok()?, upper.parse().ok()?))
}

/// Follows the chain of ranges from `start`; returns the chained ranges.
pub fn chain(ranges: &[(u64, u64)], start: u64) -> Vec<(u64, u64)> {
    let mut widest: BTreeMap<u64, u64> = BTreeMap::new();
    for (lower, upper) in ranges {
        let entry = widest.entry(*lower).or_insert(*upper);
        *entry = (*entry).max(*upper);
    }
    let mut out = Vec::new();
    let mut at = start;
    while let Some(upper) = widest.get(&at).copied().filter(|u| *u > at) {
        out.push((at, upper));
        at = upper;
    }
    out
}

/// An object-store sink's writer; everything in it can be rebuilt from the store.
#[derive(Debug)]
struct ObjectStoreWriter {
    url: String,
    prefix: String,
    desc: RelationDesc,
    runtime: Option<tokio::runtime::Runtime>,
    location: Option<Location>,
    /// The key and encoded file of the batch written and not yet committed.
    staged: Option<(String, bytes::Bytes)>,
}

/// A frontier as a file-name bound: `u64::MAX` for the closed frontier.
fn bound(frontier: &Antichain<Timestamp>) -> u64 {
    frontier_time(frontier).map_or(u64::MAX, |t| t.as_millis())
}

impl ObjectStoreWriter {
    fn block_on<F: std::future::Future>(&mut self, f: F) -> Result<F::Output, ConnectorError> {
        if self.runtime.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            self.runtime = Some(rt.map_err(|e| io("runtime", &e))?);
        }
        match &self.runtime {
            Some(rt) => Ok(rt.block_on(f)),
            None => Err(io("runtime", &"no runtime")),
        }
    }

    fn store(&mut self) -> Result<std::sync::Arc<dyn ObjectStore>, ConnectorError> {
        if self.location.is_none() {
            let url = self.url.clone();
            let opened = self.block_on(Location::open(&url))?;
            self.location = Some(opened.map_err(|e| io(&url, &e))?);
        }
        match &self.location {
            Some(location) => Ok(std::sync::Arc::clone(&location.store)),
            None => Err(io(&self.url, &"no location")),
        }
    }
}

impl SinkWriter for ObjectStoreWriter {
    /// Lists the prefix, deletes files off the chain, and returns the chain's end.
    fn recover(&mut self, start: Timestamp) -> Result<Antichain<Timestamp>, ConnectorError> {
        self.staged = None;
        let store = self.store()?;
        let prefix = Path::from(self.prefix.as_str());
        let listed =
            self.block_on(async { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        let metas = listed.map_err(|e| io(&self.prefix, &e))?;
        let ranges: Vec<(u64, u64)> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_range))
            .collect();
        let start = start.as_millis();
        let chained = chain(&ranges, start);
        for (lower, upper) in ranges.iter().filter(|r| !chained.contains(r)) {
            let key = Path::from(file_key(&self.prefix, *lower, *upper));
            // A file off the chain is never read; failing to delete it is harmless.
            let _ = self.block_on(store.delete(&key))?;
        }
        Ok(match chained.last().map_or(start, |(_, upper)| *upper) {
            u64::MAX => Antichain::new(),
            end => Antichain::from_elem(Timestamp::new(end)),
        })
    }

    /// Encodes the batch's file; nothing reaches the store before `commit`.
    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<u64, ConnectorError> {
        let coded: Vec<_> = batch
            .updates
            .iter()
            .map(|(row, t, d)| (Ok(row.clone()), strata_persist_backend::time_code(t), *d))
            .collect();
        let key = file_key(&self.prefix, batch.lower.as_millis(), bound(batch.upper));
        let bytes = strata_persist_backend::part::encode_part(&self.desc, &coded)
            .map_err(|e| io(&key, &e))?;
        let len = bytes.len() as u64;
        self.staged = Some((key, bytes));
        Ok(len)
    }

    /// Puts the file; another incarnation that put the same range first wins.
    fn commit(&mut self, _batch: &SinkBatch<'_>) -> Result<SinkCommit, ConnectorError> {
        let Some((key, bytes)) = self.staged.take() else {
            return Err(ConnectorError::Contract {
                kind: OBJECT_STORE.to_owned(),
                reason: "a batch was committed without being written".into(),
            });
        };
        let store = self.store()?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let path = Path::from(key.as_str());
        match self.block_on(store.put_opts(&path, PutPayload::from(bytes), options))? {
            Ok(_) => Ok(SinkCommit::Committed),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(SinkCommit::LostRace),
            Err(e) => Err(io(&key, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ranges: &[(u64, u64)], start: u64, expected: &[(u64, u64)]) {
        assert_eq!(
            chain(ranges, start),
            expected.to_vec(),
            "ranges {ranges:?} from {start}"
        );
    }

    #[test]
    fn chain_table() {
        check(&[], 0, &[]);
        check(&[(0, 3), (3, 5)], 0, &[(0, 3), (3, 5)]);
        check(&[(3, 5), (0, 3), (7, 9)], 0, &[(0, 3), (3, 5)]);
        check(&[(0, 3), (0, 4), (3, 5), (4, 6)], 0, &[(0, 4), (4, 6)]);
        check(&[(5, 5)], 5, &[]);
        check(&[(0, 3)], 1, &[]);
        assert_eq!(parse_range(&file_key("p/", 3, 17)[2..]), Some((3, 17)));
        assert_eq!(parse_range("x.parquet"), None);
    }
}
