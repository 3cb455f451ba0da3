//! The machine: reads a shard's state, applies a pure command, and commits the result
//! by CAS of the next seqno, retrying on conflict with bounded, jittered backoff.
//!
//! A process-wide [`ShardCache`] per (client, shard) keeps the latest state seen, so a
//! writer that is the only one appending commits with one CAS and no read; a conflict or
//! an error on a cached (possibly stale) state triggers a fresh read and a re-run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use strata_controller_api::ShardId;
use tokio::sync::watch;

use crate::cmds::{CmdError, CmdResult};
use crate::config::PersistConfig;
use crate::consensus::{CasOutcome, Consensus};
use crate::error::{ExternalError, PersistError, Result};
use crate::location::Location;
use crate::state::State;

/// The latest state seen of one shard, shared by every handle of one client.
#[derive(Debug)]
pub(crate) struct ShardCache {
    tx: watch::Sender<Option<Arc<State>>>,
    pub(crate) compacting: AtomicBool,
}

impl ShardCache {
    pub(crate) fn new() -> Self {
        ShardCache {
            tx: watch::channel(None).0,
            compacting: AtomicBool::new(false),
        }
    }
}

/// The state machine of one shard.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub(crate) shard: ShardId,
    pub(crate) consensus: Consensus,
    pub(crate) loc: Location,
    pub(crate) cfg: Arc<PersistConfig>,
    pub(crate) cache: Arc<ShardCache>,
}

/// A random number for jitter and ids, without a dependency on an RNG crate.
pub(crate) fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

pub(crate) async fn backoff(attempt: usize) {
    let cap_ms = 1u64 << attempt.min(7);
    let jitter = random_u64() % (cap_ms * 1000).max(1);
    tokio::time::sleep(Duration::from_micros(jitter)).await;
}

impl Machine {
    pub(crate) fn shard_str(&self) -> String {
        self.shard.to_string()
    }

    /// The latest state this process has seen, without I/O.
    pub(crate) fn cached(&self) -> Option<Arc<State>> {
        self.cache.tx.borrow().clone()
    }

    /// Subscribes to new states seen by this process.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<State>>> {
        self.cache.tx.subscribe()
    }

    fn observe(&self, state: Arc<State>) {
        self.cache.tx.send_if_modified(|cur| match cur {
            Some(c) if c.seqno >= state.seqno => false,
            _ => {
                *cur = Some(Arc::clone(&state));
                true
            }
        });
    }

    /// Reads the head state, or `None` if the shard was never initialized.
    async fn fetch_opt(&self) -> Result<Option<Arc<State>>> {
        let hint = self.cached().map_or(0, |s| s.seqno);
        let Some(head) = self.consensus.head(self.shard, hint).await? else {
            return Ok(None);
        };
        let key = format!("shards/{}/state/{:020}", self.shard, head.seqno);
        let state = Arc::new(State::decode_checked(
            &key,
            &self.shard_str(),
            head.seqno,
            head.data,
        )?);
        self.observe(Arc::clone(&state));
        Ok(Some(state))
    }

    /// Reads the head state, retrying transient storage errors.
    pub(crate) async fn fetch(&self) -> Result<Arc<State>> {
        let mut attempt = 0;
        loop {
            match self.fetch_opt().await {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {
                    return Err(PersistError::InvalidUsage(format!(
                        "shard {} is not initialized",
                        self.shard
                    )));
                }
                Err(PersistError::External(e)) if attempt + 1 < self.cfg.io_attempts => {
                    tracing::debug!(shard = %self.shard, error = %e, "retrying a state read");
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the first version of the shard if there is none; returns the head.
    pub(crate) async fn init(&self, lower: u64, schema_json: String) -> Result<Arc<State>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = async {
                if let Some(s) = self.fetch_opt().await? {
                    return Ok(Some(s));
                }
                let mut init = State::initial(&self.shard_str(), lower, schema_json.clone());
                init.seqno = 1;
                let token = uuid::Uuid::new_v4().to_string();
                let data = Bytes::from(init.encode_to_vec());
                match self
                    .consensus
                    .compare_and_set(self.shard, None, data, &token)
                    .await?
                {
                    CasOutcome::Committed => {
                        let init = Arc::new(init);
                        self.observe(Arc::clone(&init));
                        Ok(Some(init))
                    }
                    CasOutcome::Mismatch => Ok(None),
                }
            }
            .await;
            match res {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => {}
                Err(PersistError::External(_)) if attempt < self.cfg.io_attempts => {
                    backoff(attempt).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies `cmd` to the head and commits its result. A command error is returned
    /// only after it was seen on a freshly read state. Returns the committed (or, for a
    /// no-op, the current) state and the command's output.
    pub(crate) async fn apply<O>(
        &self,
        mut cmd: impl FnMut(&State) -> CmdResult<O>,
    ) -> Result<std::result::Result<(Arc<State>, O), CmdError>> {
        let mut in_doubt = false;
        let res = self.apply_inner(&mut cmd, &mut in_doubt).await;
        match res {
            // A write of ours may have landed: the caller must not assume it did not.
            Err(e @ (PersistError::External(_) | PersistError::Contention { .. })) if in_doubt => {
                Err(ExternalError::indeterminate("apply", e).into())
            }
            other => other,
        }
    }

    async fn apply_inner<O>(
        &self,
        cmd: &mut impl FnMut(&State) -> CmdResult<O>,
        in_doubt: &mut bool,
    ) -> Result<std::result::Result<(Arc<State>, O), CmdError>> {
        let (mut state, mut fresh) = match self.cached() {
            Some(s) => (s, false),
            None => (self.fetch().await?, true),
        };
        let mut conflicts = 0;
        let mut failures = 0;
        loop {
            let (next, out) = match cmd(&state) {
                Err(_) | Ok((None, _)) if !fresh => {
                    state = self.fetch().await?;
                    fresh = true;
                    continue;
                }
                Err(e) => return Ok(Err(e)),
                Ok((None, out)) => return Ok(Ok((state, out))),
                Ok((Some(next), out)) => (next, out),
            };
            match self.commit(&state, next).await {
                Ok(Some(committed)) => return Ok(Ok((committed, out))),
                Ok(None) => {
                    conflicts += 1;
                    if conflicts >= self.cfg.cas_attempts {
                        return Err(PersistError::Contention {
                            shard: self.shard,
                            attempts: conflicts,
                        });
                    }
                    backoff(conflicts.min(4)).await;
                }
                Err(PersistError::External(e)) => {
                    *in_doubt = true;
                    failures += 1;
                    if failures >= self.cfg.io_attempts {
                        return Err(e.into());
                    }
                    tracing::debug!(shard = %self.shard, error = %e, "retrying a state write");
                    backoff(failures).await;
                }
                Err(e) => return Err(e),
            }
            state = self.fetch().await?;
            fresh = true;
        }
    }

    /// CASes `next` as the version after `state`; `None` on a conflict.
    async fn commit(&self, state: &State, mut next: State) -> Result<Option<Arc<State>>> {
        next.seqno = state.seqno + 1;
        let token = uuid::Uuid::new_v4().to_string();
        let data = Bytes::from(next.encode_to_vec());
        match self
            .consensus
            .compare_and_set(self.shard, Some(state.seqno), data, &token)
            .await?
        {
            CasOutcome::Committed => {
                let next = Arc::new(next);
                self.observe(Arc::clone(&next));
                Ok(Some(next))
            }
            CasOutcome::Mismatch => Ok(None),
        }
    }

    /// Maps the command errors every handle treats alike.
    pub(crate) fn cmd_error(&self, e: CmdError) -> PersistError {
        let fmt = |f: Option<u64>| f.map_or_else(|| "[]".to_owned(), |t| format!("[{t}]"));
        match e {
            CmdError::Tombstoned => PersistError::Tombstoned { shard: self.shard },
            CmdError::LeaseExpired { kind, id } => PersistError::LeaseExpired {
                shard: self.shard,
                kind,
                id,
            },
            CmdError::NotFinalizable { since, upper } => PersistError::NotFinalizable {
                shard: self.shard,
                since: fmt(since),
                upper: fmt(upper),
            },
            CmdError::UpperMismatch { current } => PersistError::InvalidUsage(format!(
                "unexpected upper mismatch, current {}",
                fmt(current)
            )),
            CmdError::OpaqueMismatch { current } => {
                PersistError::InvalidUsage(format!("unexpected opaque mismatch, current {current}"))
            }
            CmdError::Invalid(reason) => PersistError::InvalidUsage(reason),
        }
    }

    /// Applies a command whose errors are all plain failures.
    pub(crate) async fn apply_plain<O>(
        &self,
        cmd: impl FnMut(&State) -> CmdResult<O>,
    ) -> Result<(Arc<State>, O)> {
        self.apply(cmd).await?.map_err(|e| self.cmd_error(e))
    }

    /// Runs a storage call, retrying failures up to `io_attempts` times with backoff.
    async fn with_retries<T, Fut>(&self, mut call: impl FnMut() -> Fut) -> Result<T, ExternalError>
    where
        Fut: std::future::Future<Output = Result<T, ExternalError>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(_) if attempt + 1 < self.cfg.io_attempts => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                other => return other,
            }
        }
    }

    /// Fetches an object of this location by relative key.
    pub(crate) async fn get_blob(&self, rel_key: &str) -> Result<Option<Bytes>, ExternalError> {
        let key = self.loc.key(rel_key);
        self.with_retries(|| crate::blob::get(self.loc.store.as_ref(), &key))
            .await
    }

    /// Bytes `range` of an object of this location by relative key.
    pub(crate) async fn get_blob_range(
        &self,
        rel_key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Bytes>, ExternalError> {
        let key = self.loc.key(rel_key);
        self.with_retries(|| crate::blob::get_range(self.loc.store.as_ref(), &key, range.clone()))
            .await
    }

    /// Writes an object of this location by relative key (overwrite; keys are unique).
    pub(crate) async fn put_blob(&self, rel_key: &str, data: Bytes) -> Result<(), ExternalError> {
        let key = self.loc.key(rel_key);
        self.with_retries(|| crate::blob::put(self.loc.store.as_ref(), &key, data.clone()))
            .await
    }

    /// Whether a compaction is running in this process; claims it if not.
    pub(crate) fn try_claim_compaction(&self) -> bool {
        !self.cache.compacting.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn release_compaction(&self) {
        self.cache.compacting.store(false, Ordering::Release);
    }
}
