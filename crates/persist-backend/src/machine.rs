//! The machine: reads a shard's state, applies a pure command, and commits the result
//! by CAS of the next seqno, retrying on conflict with bounded, jittered backoff.
//!
//! A process-wide [`ShardCache`] per (client, shard) keeps the latest state seen, so a
//! writer that is the only one appending commits with one CAS and no read; a conflict or
//! an error on a cached (possibly stale) state triggers a fresh read and a re-run.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use strata_controller_api::ShardId;
use strata_controller_api::retry::{Backoff, BackoffConfig, random_fraction};
use tokio::sync::watch;

use crate::cmds::{CmdError, CmdResult};
use crate::config::PersistConfig;
use crate::consensus::{CasOutcome, Consensus};
use crate::error::{ExternalError, PersistError, Result};
use crate::location::Location;
use crate::state::State;

/// What this process knows of one shard, shared by every handle of one client. Small
/// while nobody waits on the shard: a process may know 100k mostly idle shards, and a
/// watch channel costs several hundred bytes, so each is made by its first user.
#[derive(Debug, Default)]
pub(crate) struct ShardCache {
    /// The latest state seen.
    latest: std::sync::Mutex<Option<Arc<State>>>,
    /// The states seen from the first subscription on; sent under `latest`'s lock.
    watchers: std::sync::OnceLock<watch::Sender<Option<Arc<State>>>>,
    /// Whether background maintenance of the shard runs in this process; a watch, so
    /// a caller can wait for it to finish. Made by the first maintenance.
    compacting: std::sync::OnceLock<watch::Sender<bool>>,
}

impl ShardCache {
    pub(crate) fn new() -> Self {
        ShardCache::default()
    }

    fn latest(&self) -> std::sync::MutexGuard<'_, Option<Arc<State>>> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn compacting(&self) -> &watch::Sender<bool> {
        self.compacting.get_or_init(|| watch::channel(false).0)
    }

    /// Whether background maintenance of the shard ever ran in this process.
    pub(crate) fn maintained(&self) -> bool {
        self.compacting.get().is_some()
    }

    /// Waits until no background maintenance of the shard runs in this process.
    pub(crate) async fn maintenance_idle(&self) {
        // No maintenance of this shard ever ran here: nothing to wait for.
        let Some(compacting) = self.compacting.get() else {
            return;
        };
        let mut rx = compacting.subscribe();
        // The sender lives as long as this cache.
        let _ = rx.wait_for(|running| !*running).await;
    }
}

/// A fresh commit token, unique among the attempts of every process: 8 bytes drawn at
/// random once per thread, then that thread's count of tokens. A token only has to be
/// unique; drawing all 16 bytes per attempt cost a `getrandom` system call per commit,
/// a visible share of creating or fencing many shards.
pub(crate) fn new_token() -> Bytes {
    thread_local! {
        static NEXT: std::cell::Cell<(u64, u64)> =
            std::cell::Cell::new((uuid::Uuid::new_v4().as_u64_pair().0, 0));
    }
    let (prefix, count) = NEXT.with(|next| {
        let (prefix, count) = next.get();
        next.set((prefix, count.wrapping_add(1)));
        (prefix, count)
    });
    let mut token = [0u8; 16];
    token[..8].copy_from_slice(&prefix.to_be_bytes());
    token[8..].copy_from_slice(&count.to_be_bytes());
    Bytes::copy_from_slice(&token)
}

/// A token as lower-case hex, as the consensus register records it.
fn token_text(token: &Bytes) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(token.len() * 2);
    for byte in token.iter() {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// What a later state says of a commit attempt that was in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The state remembers the attempt's token: it landed.
    Committed,
    /// The state remembers every version from the attempt's on, and not its token.
    NotCommitted,
    /// The state is older than the attempt's version: it may still land.
    Open,
    /// More versions were committed since than the state remembers.
    Unknown,
}

/// Settles an attempt to commit `token` as version `seqno`, from a later `state`.
///
/// # Examples
///
/// The table is in `machine::tests::verdicts`.
pub(crate) fn verdict(state: &State, token: &[u8], seqno: u64) -> Verdict {
    if state.recent_tokens.iter().any(|t| t.as_ref() == token) {
        return Verdict::Committed;
    }
    if state.seqno < seqno {
        return Verdict::Open;
    }
    // The tokens are those of versions `state.seqno + 1 - len ..= state.seqno`.
    let oldest_known = (state.seqno + 1).saturating_sub(state.recent_tokens.len() as u64);
    match seqno >= oldest_known && !state.recent_tokens.is_empty() {
        true => Verdict::NotCommitted,
        false => Verdict::Unknown,
    }
}

/// The commit attempts of one `apply` whose outcome is not known yet, with the output
/// each would have had.
#[derive(Debug)]
pub(crate) struct InDoubt<O> {
    attempts: Vec<(Bytes, u64, O)>,
}

impl<O> Default for InDoubt<O> {
    fn default() -> Self {
        InDoubt {
            attempts: Vec::new(),
        }
    }
}

impl<O> InDoubt<O> {
    fn push(&mut self, token: Bytes, seqno: u64, out: O) {
        self.attempts.push((token, seqno, out));
    }

    fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }

    fn clear(&mut self) {
        self.attempts.clear();
    }

    /// Settles what `state` can settle: the output of an attempt that landed, or `None`
    /// with the attempts proven not to have landed forgotten. An attempt that nothing
    /// can settle any more is an indeterminate error.
    fn settle(&mut self, state: &State) -> Result<Option<O>> {
        let mut i = 0;
        while i < self.attempts.len() {
            let (token, seqno, _) = &self.attempts[i];
            match verdict(state, token, *seqno) {
                Verdict::Committed => {
                    let (_, _, out) = self.attempts.swap_remove(i);
                    self.attempts.clear();
                    return Ok(Some(out));
                }
                Verdict::NotCommitted => {
                    self.attempts.swap_remove(i);
                }
                Verdict::Open => i += 1,
                Verdict::Unknown => {
                    return Err(ExternalError::indeterminate(
                        "apply",
                        format!(
                            "a commit as version {seqno} may have landed, and {} versions were \
                             committed since, more than a state remembers",
                            state.seqno.saturating_sub(*seqno)
                        ),
                    )
                    .into());
                }
            }
        }
        Ok(None)
    }
}

enum Settled<O> {
    Committed(Arc<State>, O),
    NotCommitted,
    Moved(Arc<State>),
}

/// The state machine of one shard.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub(crate) shard: ShardId,
    pub(crate) consensus: Arc<dyn Consensus>,
    pub(crate) loc: Location,
    pub(crate) cfg: Arc<PersistConfig>,
    pub(crate) cache: Arc<ShardCache>,
}

impl Machine {
    /// Whether an operation that has retried `backoff.retries()` times may try again
    /// (every operation makes at most `io_attempts` attempts).
    fn may_retry(&self, backoff: &Backoff) -> bool {
        (backoff.retries() as usize) + 1 < self.cfg.io_attempts
    }

    pub(crate) fn shard_str(&self) -> String {
        self.shard.to_string()
    }

    /// The latest state this process has seen, without I/O.
    pub(crate) fn cached(&self) -> Option<Arc<State>> {
        self.cache.latest().clone()
    }

    /// Subscribes to new states seen by this process.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<State>>> {
        let latest = self.cache.latest();
        self.cache
            .watchers
            .get_or_init(|| watch::channel(latest.clone()).0)
            .subscribe()
    }

    fn observe(&self, state: Arc<State>) {
        let mut latest = self.cache.latest();
        if latest.as_ref().is_some_and(|c| c.seqno >= state.seqno) {
            return;
        }
        *latest = Some(Arc::clone(&state));
        if let Some(watchers) = self.cache.watchers.get() {
            watchers.send_replace(Some(state));
        }
    }

    /// Reads the head state, or `None` if the shard was never initialized.
    async fn fetch_opt(&self) -> Result<Option<Arc<State>>> {
        let hint = self.cached().map_or(0, |s| s.seqno);
        let Some(head) = self.consensus.head(self.shard, hint).await? else {
            return Ok(None);
        };
        if let Some(cached) = self.cached().filter(|c| c.seqno == head.seqno) {
            // Nothing new (an idle poll): no decode.
            return Ok(Some(cached));
        }
        let key = crate::paths::ObjectKey::Version {
            shard: self.shard,
            seqno: head.seqno,
        }
        .to_string();
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
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        loop {
            match self.fetch_opt().await {
                Ok(Some(s)) => return Ok(s),
                Ok(None) => return Err(PersistError::NotInitialized { shard: self.shard }),
                Err(PersistError::External(e)) if self.may_retry(&backoff) => {
                    tracing::debug!(shard = %self.shard, error = %e, "retrying a state read");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Creates the first version of the shard if there is none; returns the head.
    pub(crate) async fn init(&self, lower: u64, schema_json: String) -> Result<Arc<State>> {
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        loop {
            let res = async {
                if let Some(s) = self.fetch_opt().await? {
                    return Ok(Some(s));
                }
                let mut init = State::initial(&self.shard_str(), lower, schema_json.clone());
                init.seqno = 1;
                let token = new_token();
                init.push_token(token.clone());
                let data = Bytes::from(init.encode_to_vec());
                match self
                    .consensus
                    .compare_and_set(self.shard, None, data, &token_text(&token))
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
                Err(PersistError::External(_)) if self.may_retry(&backoff) => {
                    tokio::time::sleep(backoff.next_delay()).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies `cmd` to the head and commits its result. A command error is returned
    /// only after it was seen on a freshly read state. Returns the committed (or, for a
    /// no-op, the current) state and the command's output.
    ///
    /// A commit whose outcome is unknown (a storage error after the request was sent)
    /// stays *in doubt* until a later state settles it by its token (see [`InDoubt`]):
    /// if it landed, its output is returned; while it cannot be settled, the answer is
    /// [`ExternalError::Indeterminate`], never a determinate error such as a command
    /// error or a conflict that the landed write would contradict.
    pub(crate) async fn apply<O>(
        &self,
        cmd: impl FnMut(&State) -> CmdResult<O>,
    ) -> Result<std::result::Result<(Arc<State>, O), CmdError>> {
        self.apply_from(None, cmd).await
    }

    /// [`Self::apply`] starting from `fresh`, a state this call's caller has just read
    /// (or created), so that a no-op or an error on it is final without reading the
    /// head again; `None` starts from the cached state, which a no-op or an error
    /// makes this read again.
    pub(crate) async fn apply_from<O>(
        &self,
        fresh: Option<Arc<State>>,
        mut cmd: impl FnMut(&State) -> CmdResult<O>,
    ) -> Result<std::result::Result<(Arc<State>, O), CmdError>> {
        let mut doubts = InDoubt::default();
        let res = self.apply_inner(fresh, &mut cmd, &mut doubts).await;
        match res {
            // A write of ours may have landed: the caller must not assume it did not.
            Err(e @ (PersistError::External(_) | PersistError::Contention { .. }))
                if !doubts.is_empty() =>
            {
                Err(ExternalError::indeterminate("apply", e).into())
            }
            other => other,
        }
    }

    async fn apply_inner<O>(
        &self,
        start: Option<Arc<State>>,
        cmd: &mut impl FnMut(&State) -> CmdResult<O>,
        doubts: &mut InDoubt<O>,
    ) -> Result<std::result::Result<(Arc<State>, O), CmdError>> {
        let (mut state, mut fresh) = match (start, self.cached()) {
            (Some(s), _) => (s, true),
            (None, Some(s)) => (s, false),
            (None, None) => (self.fetch().await?, true),
        };
        let mut conflicts = 0;
        let mut failures = 0;
        let mut store_backoff = Backoff::new(BackoffConfig::STORE);
        loop {
            let (next, out) = match cmd(&state) {
                Err(_) | Ok((None, _)) if !fresh => {
                    state = self.fetch().await?;
                    fresh = true;
                    if let Some(out) = doubts.settle(&state)? {
                        return Ok(Ok((state, out)));
                    }
                    continue;
                }
                Err(e) if !doubts.is_empty() => {
                    // An earlier attempt may still land on top of this state; take its
                    // slot first, so the error is known to be the whole story.
                    match self.close_slot(&state, doubts).await? {
                        Settled::Committed(committed, out) => return Ok(Ok((committed, out))),
                        Settled::NotCommitted => return Ok(Err(e)),
                        Settled::Moved(s) => {
                            failures += 1;
                            if failures >= self.cfg.io_attempts {
                                return Err(ExternalError::indeterminate(
                                    "apply",
                                    "an earlier attempt stayed in doubt",
                                )
                                .into());
                            }
                            state = s;
                            continue;
                        }
                    }
                }
                Err(e) => return Ok(Err(e)),
                Ok((None, out)) => return Ok(Ok((state, out))),
                Ok((Some(next), out)) => (next, out),
            };
            let token = new_token();
            match self.commit(&state, next, &token).await {
                Ok(Some(committed)) => return Ok(Ok((committed, out))),
                Ok(None) => self.conflict(&mut conflicts).await?,
                Err(PersistError::External(e)) => {
                    doubts.push(token, state.seqno + 1, out);
                    state = self.fetch().await?;
                    fresh = true;
                    if let Some(out) = doubts.settle(&state)? {
                        return Ok(Ok((state, out)));
                    }
                    if doubts.is_empty() {
                        // Settled as not ours: another writer won that version.
                        self.conflict(&mut conflicts).await?;
                    } else {
                        failures += 1;
                        if failures >= self.cfg.io_attempts {
                            return Err(e.into());
                        }
                        tracing::debug!(shard = %self.shard, error = %e, "retrying a state write");
                        tokio::time::sleep(store_backoff.next_delay()).await;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            state = self.fetch().await?;
            fresh = true;
            if let Some(out) = doubts.settle(&state)? {
                return Ok(Ok((state, out)));
            }
        }
    }

    /// Counts a lost race for a version; backs off, or gives up with `Contention`.
    async fn conflict(&self, conflicts: &mut usize) -> Result<()> {
        *conflicts += 1;
        if *conflicts >= self.cfg.cas_attempts {
            return Err(PersistError::Contention {
                shard: self.shard,
                attempts: *conflicts,
            });
        }
        let delay = BackoffConfig::CONTENTION.delay(*conflicts as u32, random_fraction());
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Commits `state` unchanged as its next version, so that no in-doubt attempt can
    /// land there any more, and settles the doubts from what is then known.
    async fn close_slot<O>(
        &self,
        state: &Arc<State>,
        doubts: &mut InDoubt<O>,
    ) -> Result<Settled<O>> {
        let token = new_token();
        match self.commit(state, State::clone(state), &token).await {
            // The slot is ours: every doubt at or below it is settled as not committed
            // (the one at the slot lost it; earlier ones were already settled).
            Ok(Some(_)) => {
                doubts.clear();
                Ok(Settled::NotCommitted)
            }
            Ok(None) | Err(PersistError::External(_)) => {
                let fresh = self.fetch().await?;
                match doubts.settle(&fresh)? {
                    Some(out) => Ok(Settled::Committed(fresh, out)),
                    None => Ok(Settled::Moved(fresh)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// CASes `next` as the version after `state`, recording `token` in it; `None` on a
    /// conflict.
    async fn commit(
        &self,
        state: &State,
        mut next: State,
        token: &Bytes,
    ) -> Result<Option<Arc<State>>> {
        next.seqno = state.seqno + 1;
        next.push_token(token.clone());
        let data = Bytes::from(next.encode_to_vec());
        match self
            .consensus
            .compare_and_set(self.shard, Some(state.seqno), data, &token_text(token))
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
            CmdError::IncompatibleSchema(reason) => PersistError::IncompatibleSchema {
                shard: self.shard,
                reason,
            },
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
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        loop {
            match call().await {
                Err(_) if self.may_retry(&backoff) => {
                    tokio::time::sleep(backoff.next_delay()).await
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
        self.cache.compacting().send_if_modified(|running| {
            let claimed = !*running;
            *running = true;
            claimed
        })
    }

    pub(crate) fn release_compaction(&self) {
        self.cache.compacting().send_replace(false);
    }

    /// Waits until no background maintenance of this shard runs in this process.
    pub(crate) async fn maintenance_idle(&self) {
        self.cache.maintenance_idle().await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_unique_across_threads_and_hex_encoded() {
        let mut tokens: Vec<Bytes> = (0..1000).map(|_| super::new_token()).collect();
        for _ in 0..4 {
            tokens.extend(
                std::thread::spawn(|| (0..1000).map(|_| super::new_token()).collect::<Vec<_>>())
                    .join()
                    .unwrap_or_default(),
            );
        }
        assert_eq!(tokens.len(), 5000);
        let distinct: std::collections::BTreeSet<&Bytes> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
        for token in &tokens[..10] {
            let expected: String = token.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(super::token_text(token), expected);
        }
    }

    use super::*;

    fn state(seqno: u64, tokens: &[u8]) -> State {
        State {
            seqno,
            recent_tokens: tokens.iter().map(|t| Bytes::from(vec![*t])).collect(),
            ..State::default()
        }
    }

    #[test]
    fn verdicts() {
        use Verdict::*;
        // (state seqno, remembered tokens, attempt token, attempt seqno, verdict)
        let table: &[(u64, &[u8], u8, u64, Verdict)] = &[
            (5, &[3, 4, 5], 4, 4, Committed),
            // A token is recognised wherever it is in the ring.
            (5, &[3, 4, 5], 3, 9, Committed),
            (5, &[3, 4, 5], 9, 5, NotCommitted),
            (5, &[3, 4, 5], 9, 3, NotCommitted),
            // Version 2 is older than anything remembered.
            (5, &[3, 4, 5], 9, 2, Unknown),
            (5, &[3, 4, 5], 9, 6, Open),
            (5, &[], 9, 5, Unknown),
            (5, &[], 9, 6, Open),
            (1, &[1], 9, 1, NotCommitted),
        ];
        for (seqno, tokens, token, at, expected) in table {
            assert_eq!(
                verdict(&state(*seqno, tokens), &[*token], *at),
                *expected,
                "state {seqno} {tokens:?}, attempt {token} at {at}"
            );
        }
    }

    #[test]
    fn settle_returns_the_landed_output_and_forgets_the_rest() {
        let mut doubts = InDoubt::default();
        doubts.push(Bytes::from_static(&[7]), 3, "first");
        doubts.push(Bytes::from_static(&[8]), 4, "second");
        assert_eq!(doubts.settle(&state(3, &[1, 2, 9])).ok(), Some(None));
        assert_eq!(doubts.attempts.len(), 1, "version 3 is settled as not ours");
        assert_eq!(
            doubts.settle(&state(5, &[9, 8, 5])).ok(),
            Some(Some("second"))
        );
        assert!(doubts.is_empty());
        doubts.push(Bytes::from_static(&[7]), 3, "lost");
        assert!(matches!(
            doubts.settle(&state(500, &[1])),
            Err(PersistError::External(ExternalError::Indeterminate { .. }))
        ));
    }

    #[test]
    fn the_ring_keeps_the_newest_tokens() {
        let mut s = State::default();
        for i in 0..(crate::state::RECENT_TOKENS as u64 + 10) {
            s.push_token(Bytes::from(i.to_be_bytes().to_vec()));
        }
        assert_eq!(s.recent_tokens.len(), crate::state::RECENT_TOKENS);
        let last = crate::state::RECENT_TOKENS as u64 + 9;
        assert_eq!(
            s.recent_tokens.last().map(|t| t.to_vec()),
            Some(last.to_be_bytes().to_vec())
        );
    }
}
