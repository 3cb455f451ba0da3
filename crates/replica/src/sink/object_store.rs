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
use strata_controller_api::{Antichain, RelationDesc, Timestamp};
use strata_persist_backend::location::Location;

use super::file::Step;
use super::{SinkError, SinkPlan};
use crate::context::Ctx;
use crate::shard::{Update, frontier_time};

/// Where an object-store sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectTarget {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) desc: RelationDesc,
}

fn io(what: &str, e: &dyn std::fmt::Display) -> SinkError {
    SinkError::Io {
        path: what.to_owned(),
        reason: e.to_string(),
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

/// An object-store sink's state; everything in it can be rebuilt from the store.
#[derive(Debug)]
pub(crate) struct ObjectStoreSink {
    runtime: Option<tokio::runtime::Runtime>,
    location: Option<Location>,
    /// The next lower to write, once recovered (`u64::MAX` once closed).
    frontier: Option<u64>,
}

impl ObjectStoreSink {
    pub(crate) fn new() -> Self {
        ObjectStoreSink {
            runtime: None,
            location: None,
            frontier: None,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.frontier = None;
    }

    /// The end of the chain this sink recovered or extended (`[]` once the input
    /// closed), if known: every update before it is in a chained file.
    pub(crate) fn upper(&self) -> Option<Antichain<Timestamp>> {
        self.frontier.map(|f| match f {
            u64::MAX => Antichain::new(),
            f => Antichain::from_elem(Timestamp::new(f)),
        })
    }

    fn block_on<F: std::future::Future>(&mut self, f: F) -> Result<F::Output, SinkError> {
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

    fn store(
        &mut self,
        target: &ObjectTarget,
    ) -> Result<std::sync::Arc<dyn ObjectStore>, SinkError> {
        if self.location.is_none() {
            let opened = self.block_on(Location::open(&target.url))?;
            let location = opened.map_err(|e| SinkError::BadPath {
                path: target.url.clone(),
                reason: e.to_string(),
            })?;
            self.location = Some(location);
        }
        match &self.location {
            Some(location) => Ok(std::sync::Arc::clone(&location.store)),
            None => Err(io(&target.url, &"no location")),
        }
    }

    /// Lists the prefix, deletes files off the chain, and returns the chain's end.
    fn recover(&mut self, plan: &SinkPlan, target: &ObjectTarget) -> Result<u64, SinkError> {
        let store = self.store(target)?;
        let prefix = Path::from(target.prefix.as_str());
        let listed =
            self.block_on(async { store.list(Some(&prefix)).try_collect::<Vec<_>>().await })?;
        let metas = listed.map_err(|e| io(&target.prefix, &e))?;
        let ranges: Vec<(u64, u64)> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(parse_range))
            .collect();
        let start = if plan.with_snapshot {
            0
        } else {
            plan.as_of.as_millis().saturating_add(1)
        };
        let chained = chain(&ranges, start);
        for (lower, upper) in ranges.iter().filter(|r| !chained.contains(r)) {
            let key = Path::from(file_key(&target.prefix, *lower, *upper));
            // A file off the chain is never read; failing to delete it is harmless.
            let _ = self.block_on(store.delete(&key))?;
        }
        Ok(chained.last().map_or(start, |(_, upper)| *upper))
    }

    pub(crate) fn step(
        &mut self,
        ctx: &Ctx,
        plan: &SinkPlan,
        target: &ObjectTarget,
    ) -> Result<Step, SinkError> {
        let frontier = match self.frontier {
            Some(f) => f,
            None => self.recover(plan, target)?,
        };
        self.frontier = Some(frontier);
        if frontier == u64::MAX {
            return Ok(Step::Done);
        }
        let (updates, upper) = if frontier == 0 && plan.with_snapshot {
            match ctx.shards.snapshot(plan.shard, plan.as_of)? {
                None => return Ok(Step::Idle),
                Some(updates) => (updates, plan.as_of.as_millis().saturating_add(1)),
            }
        } else {
            let (updates, upper) = ctx
                .shards
                .listen_from(plan.shard, Timestamp::new(frontier))?;
            let upper = frontier_time(&upper).map_or(u64::MAX, |t| t.as_millis());
            if upper <= frontier {
                return Ok(Step::Idle);
            }
            (updates, upper)
        };
        if self.write(ctx, plan, target, frontier, upper, &updates)? {
            self.frontier = Some(upper);
        }
        Ok(Step::Advanced)
    }

    /// Puts the file of `[lower, upper)`; returns whether this call created it (and
    /// not another incarnation of the sink).
    fn write(
        &mut self,
        ctx: &Ctx,
        plan: &SinkPlan,
        target: &ObjectTarget,
        lower: u64,
        upper: u64,
        updates: &[Update],
    ) -> Result<bool, SinkError> {
        let counters = ctx.reporter.sink_counters(plan.id);
        let coded: Vec<_> = updates
            .iter()
            .map(|(row, t, d)| (Ok(row.clone()), strata_persist_backend::time_code(t), *d))
            .collect();
        let key = file_key(&target.prefix, lower, upper);
        let bytes = strata_persist_backend::part::encode_part(&target.desc, &coded)
            .map_err(|e| io(&key, &e))?;
        let len = bytes.len() as u64;
        let n = updates.len() as u64;
        counters
            .messages_staged
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        counters
            .bytes_staged
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        let store = self.store(target)?;
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let path = Path::from(key.as_str());
        match self.block_on(store.put_opts(&path, PutPayload::from(bytes), options))? {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Another incarnation wrote this range: re-read the chain (before
                // reporting anything beyond what was recovered).
                self.reset();
                return Ok(false);
            }
            Err(e) => return Err(io(&key, &e)),
        }
        counters
            .messages_committed
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        counters
            .bytes_committed
            .fetch_add(len, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
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
