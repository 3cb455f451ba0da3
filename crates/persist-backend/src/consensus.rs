//! Consensus: one linearizable log of state versions per shard, on plain object storage.
//!
//! Version `n` of shard `s` is the object `shards/{s}/state/{n:020}`, and
//! [`Consensus::compare_and_set`] with `expected = Some(n)` is a create-if-absent of
//! `n + 1` (`PutMode::Create`), which memory, local file and S3 all support.
//!
//! # Contract
//!
//! - **Idempotency**: every payload carries a token. After an indeterminate failure the
//!   create is retried; an `AlreadyExists` is resolved by reading the object back and
//!   comparing tokens, so a write that landed is reported as committed exactly once.
//! - **Safe truncation**: [`Consensus::truncate`] first creates a fence
//!   `shards/{s}/fence/{slot:020}` for every slot of [`FENCE_SLOT`] versions it is about
//!   to delete from, then a boundary marker `shards/{s}/boundary/{b:020}` (create-only,
//!   so the boundary never regresses), waits [`TRUNCATE_PAUSE`], then deletes versions
//!   below `b`. A create that
//!   succeeds may be a *ghost*: a stalled writer re-creating a version that was deleted.
//!   The create is then checked (see "Ghost check" below); a ghost is deleted and
//!   reported as a mismatch.
//! - **Ghost check**: a successful create of version `v` must prove that `v` was never
//!   deleted before it landed. Fences are never deleted, each is durable before any
//!   version of its slot is deleted, and after confirming its fences a truncation waits
//!   [`TRUNCATE_PAUSE`] before it deletes anything. A create is accepted as committed,
//!   with no read after it, when one of these holds (`t1` is when its answer arrived):
//!   - **(a) recent evidence**: this `Consensus` knows that `v` did not exist and had
//!     never been deleted at some instant after `t0` (it committed `v - 1` with a create
//!     sent at `t0`, or its [`Consensus::head`] started at `t0` returned `v - 1`), and
//!     `t1 - t0 < WRITER_WINDOW`. Any other object at `v` was created after `t0`, and no
//!     truncation deletes a version sooner than [`TRUNCATE_PAUSE`] after creating (or
//!     finding) a fence, which it does only after reading a head beyond that version;
//!     so no deletion of `v` happened before `t0 + TRUNCATE_PAUSE > t1`, and our create
//!     landed before `t1`.
//!   - **(b) a concurrent fence probe**: a HEAD of `v`'s fence sent at `t0` together with
//!     the create found no fence, and `t1 - t0 < WRITER_WINDOW`: a fence created after
//!     the probe was answered allows deletions only after `t0 + TRUNCATE_PAUSE > t1`.
//!   - **(c) a fence probe after the create** (the fallback when neither window holds,
//!     and after indeterminate errors): if `v` was ever deleted, its fence existed when
//!     our create landed, so the HEAD issued afterwards sees it. An absent fence proves
//!     the create was the first object at `v`.
//!
//!   A present fence falls back to the exact check: a LIST of the boundary markers
//!   beyond `v`. GC truncates at slot starts ([`truncation_point`]), so the head's slot
//!   is never fenced and a writer at the head never needs the LIST. A lone writer that
//!   appends more often than every `WRITER_WINDOW / 2` therefore commits with exactly one
//!   request (a), any other writer with two requests sent together (b): one round trip
//!   either way, against S3 too.
//!
//!   **Timing assumption**: (a) and (b) rely on the monotonic clocks of the writer and of
//!   the truncating process each running at a rate within a third of real time's, also
//!   across a suspend of the machine ([`TRUNCATE_PAUSE`] is twice [`WRITER_WINDOW`]);
//!   stalls of either process only make its measured intervals longer, never shorter. (c) relies on nothing of the
//!   kind, and is what [`Consensus::compare_and_set`] falls back to whenever a window
//!   is missed. The price of the fences is one empty object per [`FENCE_SLOT`] truncated
//!   versions; the price of (a) and (b) is a pause of [`TRUNCATE_PAUSE`] in every
//!   truncation that deletes versions.
//! - **Head**: a cached seqno plus GET probes of `seqno+1, +2, ...`; LIST only when the
//!   cached version is gone, and LIST results are never trusted for order (the maximum
//!   parsed seqno wins). A head below the boundary is never returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use prost::Message;
use strata_controller_api::ShardId;
use tokio::time::Instant;

use crate::blob::{self, Created};
use crate::error::{CodecError, ExternalError, PersistError};
use crate::location::Location;

/// A sequence number in a shard's consensus log. The first version is 1.
pub type SeqNo = u64;

/// One version of a shard's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedData {
    /// The version number.
    pub seqno: SeqNo,
    /// The payload stored by the writer.
    pub data: Bytes,
}

/// The result of [`Consensus::compare_and_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    /// This call's payload is now version `expected + 1`.
    Committed,
    /// Another version is there; the caller must re-read the head.
    Mismatch,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(string, tag = "1")]
    token: String,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
}

const CREATE_ATTEMPTS: usize = 4;

/// GET probes past a hint before a LIST is cheaper.
const MAX_PROBES: usize = 4;

/// Versions per fence slot: truncation fences whole slots, and GC truncates at slot
/// starts, so it keeps at most `FENCE_SLOT - 1` versions more than it could.
pub const FENCE_SLOT: SeqNo = 64;

/// How long after its evidence (see the module doc) a create may be accepted without
/// a read after it.
pub const WRITER_WINDOW: Duration = Duration::from_secs(1);

/// How long a truncation waits between confirming its fences and deleting versions:
/// twice [`WRITER_WINDOW`], so clocks may drift a lot before a window overlaps it.
pub const TRUNCATE_PAUSE: Duration = Duration::from_secs(2);

/// The slot start at or below `head`: where GC truncates so that the head's slot stays
/// unfenced (0 means nothing to truncate).
///
/// # Examples
///
/// ```
/// use strata_persist_backend::consensus::truncation_point;
/// assert_eq!(truncation_point(63), 0);
/// assert_eq!(truncation_point(64), 64);
/// assert_eq!(truncation_point(200), 192);
/// ```
pub fn truncation_point(head: SeqNo) -> SeqNo {
    head - head % FENCE_SLOT
}

/// The consensus log of every shard in one location. Clones share what they know
/// about each shard's recent head (see "Ghost check" in the module doc).
#[derive(Debug, Clone)]
pub struct Consensus {
    loc: Location,
    /// Per shard: a seqno `n` and an instant before which `n + 1` certainly did not
    /// exist and had never been deleted.
    evidence: Arc<Mutex<HashMap<ShardId, (SeqNo, Instant)>>>,
}

impl Consensus {
    /// Consensus over an opened location.
    pub fn new(loc: Location) -> Self {
        Consensus {
            loc,
            evidence: Arc::default(),
        }
    }

    fn evidence_map(&self) -> std::sync::MutexGuard<'_, HashMap<ShardId, (SeqNo, Instant)>> {
        // The map is only ever replaced entry by entry, so a poisoned lock is usable.
        self.evidence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that `seqno + 1` did not exist, and had never been deleted, at an instant
    /// after `since`.
    fn note_evidence(&self, shard: ShardId, seqno: SeqNo, since: Instant) {
        let mut map = self.evidence_map();
        let entry = map.entry(shard).or_insert((seqno, since));
        if (seqno, since) > *entry {
            *entry = (seqno, since);
        }
    }

    /// The instant of the evidence about `seqno + 1`, if any.
    fn evidence_for(&self, shard: ShardId, seqno: SeqNo) -> Option<Instant> {
        match self.evidence_map().get(&shard) {
            Some((n, since)) if *n == seqno => Some(*since),
            _ => None,
        }
    }

    fn state_prefix(&self, shard: ShardId) -> Path {
        self.loc.key(&format!("shards/{shard}/state"))
    }

    fn state_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        self.loc.key(&format!("shards/{shard}/state/{seqno:020}"))
    }

    fn boundary_prefix(&self, shard: ShardId) -> Path {
        self.loc.key(&format!("shards/{shard}/boundary"))
    }

    fn fence_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        let slot = seqno / FENCE_SLOT;
        self.loc.key(&format!("shards/{shard}/fence/{slot:020}"))
    }

    fn boundary_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        self.loc
            .key(&format!("shards/{shard}/boundary/{seqno:020}"))
    }

    async fn get_envelope(
        &self,
        shard: ShardId,
        seqno: SeqNo,
    ) -> Result<Option<Envelope>, PersistError> {
        let key = self.state_key(shard, seqno);
        let Some(bytes) = blob::get(self.loc.store.as_ref(), &key).await? else {
            return Ok(None);
        };
        let env = Envelope::decode(bytes).map_err(|e| CodecError::State {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(env))
    }

    /// Version `seqno`, or `None` if it does not exist (never written, or truncated).
    pub async fn get(
        &self,
        shard: ShardId,
        seqno: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError> {
        Ok(self
            .get_envelope(shard, seqno)
            .await?
            .map(|env| VersionedData {
                seqno,
                data: env.data,
            }))
    }

    /// The latest version, or `None` for a shard never written. `hint` is a seqno the
    /// caller believes exists (0 when it knows none); it only makes the lookup cheaper.
    pub async fn head(
        &self,
        shard: ShardId,
        hint: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError> {
        let started = Instant::now();
        let mut start = hint.max(1);
        for _ in 0..CREATE_ATTEMPTS {
            let Some(first) = self.get(shard, start).await? else {
                // The hinted version is gone (truncated): the listing knows the rest.
                match self.list_max(shard).await? {
                    Some(max) => {
                        start = max;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let mut head = first;
            let mut probes = 0;
            while let Some(next) = self.get(shard, head.seqno + 1).await? {
                head = next;
                probes += 1;
                if probes == MAX_PROBES {
                    // The hint is far behind: one listing jumps close to the head.
                    if let Some(max) = self.list_max(shard).await?.filter(|m| *m > head.seqno)
                        && let Some(jump) = self.get(shard, max).await?
                    {
                        head = jump;
                    }
                }
            }
            if head.seqno >= self.boundary(shard).await? {
                // `head + 1` was absent when probed, and not below the boundary read
                // after that, so it had never been deleted either.
                self.note_evidence(shard, head.seqno, started);
                return Ok(Some(head));
            }
            // A ghost below the boundary: fall back to the listing.
            start = self.list_max(shard).await?.unwrap_or(head.seqno);
        }
        Err(
            ExternalError::determinate("head", "the log kept moving below the truncation boundary")
                .into(),
        )
    }

    async fn list_max(&self, shard: ShardId) -> Result<Option<SeqNo>, PersistError> {
        let metas = blob::list(self.loc.store.as_ref(), &self.state_prefix(shard)).await?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename()?.parse::<SeqNo>().ok())
            .max())
    }

    /// The truncation boundary: versions below it are deleted or about to be.
    pub async fn boundary(&self, shard: ShardId) -> Result<SeqNo, PersistError> {
        let metas = blob::list(self.loc.store.as_ref(), &self.boundary_prefix(shard)).await?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename()?.parse::<SeqNo>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn beyond_boundary(&self, shard: ShardId, seqno: SeqNo) -> Result<bool, PersistError> {
        let after = blob::list_after(
            self.loc.store.as_ref(),
            &self.boundary_prefix(shard),
            &self.boundary_key(shard, seqno),
        )
        .await?;
        Ok(after.is_empty())
    }

    /// Writes `data` as version `expected + 1` (or 1 when `expected` is `None`) if and
    /// only if that version does not exist yet.
    ///
    /// Errors are [`ExternalError::Indeterminate`] when the write may have landed.
    pub async fn compare_and_set(
        &self,
        shard: ShardId,
        expected: Option<SeqNo>,
        data: Bytes,
        token: &str,
    ) -> Result<CasOutcome, PersistError> {
        let seqno = expected.map_or(1, |e| e + 1);
        let key = self.state_key(shard, seqno);
        let payload = Bytes::from(
            Envelope {
                token: token.to_owned(),
                data,
            }
            .encode_to_vec(),
        );
        let store = self.loc.store.as_ref();
        let evidence = expected.and_then(|e| self.evidence_for(shard, e));
        let sent = Instant::now();
        // (a) when the evidence is fresh enough to likely still hold at the answer,
        // otherwise (b): the fence probe travels with the create.
        let recent = evidence.filter(|t0| sent.duration_since(*t0) < WRITER_WINDOW / 2);
        let (created, probe) = match recent {
            Some(_) => (blob::create(store, &key, payload.clone()).await, None),
            None => {
                let fence = self.fence_key(shard, seqno);
                let (created, probe) = tokio::join!(
                    blob::create(store, &key, payload.clone()),
                    blob::head(store, &fence)
                );
                (created, Some(probe))
            }
        };
        let answered = Instant::now();
        let mut last_err = match created {
            Ok(Created::Yes) => {
                let t0 = recent.unwrap_or(sent);
                let in_window = answered.duration_since(t0) < WRITER_WINDOW;
                let first = match probe {
                    None | Some(Ok(false)) if in_window => {
                        return self.committed(shard, seqno, sent);
                    }
                    // The fence exists: only the exact check can tell.
                    Some(Ok(true)) => self.beyond_boundary(shard, seqno).await.map(Some),
                    _ => Ok(None),
                };
                return self.check_not_ghost(shard, seqno, &key, sent, first).await;
            }
            Ok(Created::AlreadyExists) => return Ok(CasOutcome::Mismatch),
            Err(e) => e,
        };
        for _ in 1..CREATE_ATTEMPTS {
            match blob::create(store, &key, payload.clone()).await {
                Ok(Created::Yes) => {
                    return self
                        .check_not_ghost(shard, seqno, &key, sent, Ok(None))
                        .await;
                }
                Ok(Created::AlreadyExists) => return self.resolve(shard, seqno, token, sent).await,
                Err(e) => last_err = e,
            }
        }
        Err(last_err.into())
    }

    /// Records a commit of `seqno` by a create first sent at `sent`.
    fn committed(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        sent: Instant,
    ) -> Result<CasOutcome, PersistError> {
        // Nobody creates `seqno + 1` before `seqno` exists, and ours is the first
        // object at `seqno`, which landed after `sent`.
        self.note_evidence(shard, seqno, sent);
        Ok(CasOutcome::Committed)
    }

    /// Whether version `seqno`, just created by us, is beyond every truncation boundary
    /// (not a ghost). See the module doc for why an absent fence settles it.
    async fn ghost_check(&self, shard: ShardId, seqno: SeqNo) -> Result<bool, PersistError> {
        let fence = blob::head(self.loc.store.as_ref(), &self.fence_key(shard, seqno)).await?;
        if !fence {
            return Ok(true);
        }
        self.beyond_boundary(shard, seqno).await
    }

    /// Settles whether our successful create of `seqno` counts. `known` is the result
    /// of the exact check if it was already made (`Ok(Some(beyond))`).
    async fn check_not_ghost(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        key: &Path,
        sent: Instant,
        known: Result<Option<bool>, PersistError>,
    ) -> Result<CasOutcome, PersistError> {
        let beyond = match known {
            Ok(Some(beyond)) => Ok(beyond),
            Ok(None) => self.ghost_check(shard, seqno).await,
            Err(e) => Err(e),
        };
        let beyond = beyond.map_err(|e| match e {
            // The version is written; whether it counts is unknown until the check runs.
            PersistError::External(e) => {
                PersistError::from(ExternalError::indeterminate("compare_and_set", e))
            }
            e => e,
        })?;
        if beyond {
            return self.committed(shard, seqno, sent);
        }
        tracing::warn!(%shard, seqno, "removing a version re-created below the truncation boundary");
        blob::delete(self.loc.store.as_ref(), key).await?;
        Ok(CasOutcome::Mismatch)
    }

    /// After an indeterminate create, finds out whether ours is the object there.
    async fn resolve(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        token: &str,
        sent: Instant,
    ) -> Result<CasOutcome, PersistError> {
        let found = self.get_envelope(shard, seqno).await.map_err(|e| match e {
            // Our write may be there: a failed read-back leaves the outcome unknown.
            PersistError::External(e) => {
                PersistError::from(ExternalError::indeterminate("compare_and_set", e))
            }
            e => e,
        })?;
        match found {
            Some(env) if env.token == token => {
                let key = self.state_key(shard, seqno);
                self.check_not_ghost(shard, seqno, &key, sent, Ok(None))
                    .await
            }
            Some(_) => Ok(CasOutcome::Mismatch),
            None => Err(ExternalError::indeterminate(
                "compare_and_set",
                "version truncated before it could be read back",
            )
            .into()),
        }
    }

    /// Deletes every version below `below`, which must not be beyond a head the caller
    /// read before the call. Fences the slots it deletes from and creates the boundary
    /// marker first, then waits [`TRUNCATE_PAUSE`] before deleting (see the module doc).
    /// Idempotent and safe to run concurrently.
    pub async fn truncate(&self, shard: ShardId, below: SeqNo) -> Result<usize, PersistError> {
        let prev = self.boundary(shard).await?;
        if below <= prev {
            return Ok(0);
        }
        let store = self.loc.store.as_ref();
        // Every slot we delete from is fenced first, so a ghost check sees the fence.
        let mut fence = prev.max(1);
        while fence < below {
            blob::create(store, &self.fence_key(shard, fence), Bytes::new()).await?;
            fence = (fence / FENCE_SLOT + 1) * FENCE_SLOT;
        }
        blob::create(store, &self.boundary_key(shard, below), Bytes::new()).await?;
        // A create accepted without a read after it landed within a window that closes
        // before this pause ends.
        tokio::time::sleep(TRUNCATE_PAUSE).await;
        let mut deleted = 0;
        for seqno in prev.max(1)..below {
            blob::delete(store, &self.state_key(shard, seqno)).await?;
            deleted += 1;
        }
        if prev > 0 {
            blob::delete(store, &self.boundary_key(shard, prev)).await?;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::location::memory_store;

    fn consensus(name: &str) -> Consensus {
        Consensus::new(Location::from_store(memory_store(name), "", "mem://test"))
    }

    #[tokio::test(start_paused = true)]
    async fn cas_and_head() {
        let c = consensus("consensus-cas");
        let s = ShardId::from_bytes([1; 16]);
        assert_eq!(c.head(s, 0).await.unwrap(), None);
        assert_eq!(
            c.compare_and_set(s, None, Bytes::from("a"), "t1")
                .await
                .unwrap(),
            CasOutcome::Committed
        );
        assert_eq!(
            c.compare_and_set(s, None, Bytes::from("b"), "t2")
                .await
                .unwrap(),
            CasOutcome::Mismatch
        );
        assert_eq!(
            c.compare_and_set(s, Some(1), Bytes::from("c"), "t3")
                .await
                .unwrap(),
            CasOutcome::Committed
        );
        let head = c.head(s, 0).await.unwrap().unwrap();
        assert_eq!((head.seqno, head.data), (2, Bytes::from("c")));
        assert_eq!(c.head(s, 1).await.unwrap().unwrap().seqno, 2);
        assert_eq!(c.head(s, 7).await.unwrap().unwrap().seqno, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn truncation_blocks_ghosts() {
        let c = consensus("consensus-trunc");
        let s = ShardId::from_bytes([2; 16]);
        let mut expected = None;
        for i in 0..5u64 {
            let out = c
                .compare_and_set(s, expected, Bytes::from(vec![i as u8]), &format!("t{i}"))
                .await
                .unwrap();
            assert_eq!(out, CasOutcome::Committed);
            expected = Some(i + 1);
        }
        assert_eq!(c.truncate(s, 4).await.unwrap(), 3);
        assert_eq!(c.truncate(s, 4).await.unwrap(), 0);
        assert_eq!(c.get(s, 2).await.unwrap(), None);
        // A stalled writer that still believes seqno 1 is the head.
        assert_eq!(
            c.compare_and_set(s, Some(1), Bytes::from("ghost"), "g")
                .await
                .unwrap(),
            CasOutcome::Mismatch
        );
        assert_eq!(c.get(s, 2).await.unwrap(), None);
        assert_eq!(c.head(s, 1).await.unwrap().unwrap().seqno, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn fences_catch_ghosts_in_every_truncated_slot() {
        let c = consensus("consensus-fences");
        let s = ShardId::from_bytes([3; 16]);
        let head = 2 * FENCE_SLOT + 5;
        for e in 0..head {
            let expected = (e > 0).then_some(e);
            let out = c
                .compare_and_set(s, expected, Bytes::from("v"), "t")
                .await
                .unwrap();
            assert_eq!(out, CasOutcome::Committed);
        }
        let below = truncation_point(head);
        assert_eq!(below, 2 * FENCE_SLOT);
        assert_eq!(c.truncate(s, below).await.unwrap(), (below - 1) as usize);
        // Stalled writers in each truncated slot, at a slot's first and last version.
        for stale in [1, FENCE_SLOT - 2, FENCE_SLOT - 1, 2 * FENCE_SLOT - 2] {
            let out = c
                .compare_and_set(s, Some(stale), Bytes::from("ghost"), "g")
                .await
                .unwrap();
            assert_eq!(out, CasOutcome::Mismatch, "ghost after {stale}");
            assert_eq!(
                c.get(s, stale + 1).await.unwrap(),
                None,
                "ghost {} removed",
                stale + 1
            );
        }
        // The head's slot is not fenced: the writer at the head commits.
        assert!(
            !blob::head(c.loc.store.as_ref(), &c.fence_key(s, head + 1))
                .await
                .unwrap()
        );
        let out = c
            .compare_and_set(s, Some(head), Bytes::from("next"), "n")
            .await
            .unwrap();
        assert_eq!(out, CasOutcome::Committed);
        assert_eq!(c.head(s, 0).await.unwrap().unwrap().seqno, head + 1);
    }

    /// Commits versions `from + 1 ..= to`.
    async fn commit_through(c: &Consensus, s: ShardId, from: SeqNo, to: SeqNo) {
        for e in from..to {
            let expected = (e > 0).then_some(e);
            let out = c
                .compare_and_set(s, expected, Bytes::from("v"), "t")
                .await
                .unwrap();
            assert_eq!(out, CasOutcome::Committed, "version {}", e + 1);
        }
    }

    async fn fenced(c: &Consensus, s: ShardId, seqno: SeqNo) -> bool {
        blob::head(c.loc.store.as_ref(), &c.fence_key(s, seqno))
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_writer_with_old_evidence_is_caught_after_truncation() {
        let store = memory_store("consensus-window");
        let loc = Location::from_store(store, "", "mem://test");
        let (stalled, other) = (Consensus::new(loc.clone()), Consensus::new(loc));
        let s = ShardId::from_bytes([4; 16]);
        commit_through(&stalled, s, 0, 3).await;
        // `stalled` knows version 4 did not exist a moment ago; the log moves on
        // through two slots and a truncation deletes version 4.
        commit_through(&other, s, 3, 2 * FENCE_SLOT + 5).await;
        let below = truncation_point(2 * FENCE_SLOT + 5);
        assert_eq!(
            other.truncate(s, below).await.unwrap(),
            (below - 1) as usize
        );
        assert!(fenced(&other, s, 4).await);
        // The truncation paused past the stalled writer's window: its re-creation of
        // version 4 is caught as a ghost, not reported as committed.
        let out = stalled
            .compare_and_set(s, Some(3), Bytes::from("ghost"), "g")
            .await
            .unwrap();
        assert_eq!(out, CasOutcome::Mismatch);
        assert_eq!(
            stalled.get(s, 4).await.unwrap(),
            None,
            "the ghost is removed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn evidence_from_head_and_commits_is_per_seqno() {
        let c = consensus("consensus-evidence");
        let s = ShardId::from_bytes([5; 16]);
        assert_eq!(c.evidence_for(s, 0), None);
        commit_through(&c, s, 0, 2).await;
        assert!(c.evidence_for(s, 2).is_some(), "a commit is evidence");
        assert_eq!(c.evidence_for(s, 1), None, "only about the latest version");
        let fresh = consensus("consensus-evidence");
        assert_eq!(fresh.head(s, 0).await.unwrap().unwrap().seqno, 2);
        assert!(
            fresh.evidence_for(s, 2).is_some(),
            "a head read is evidence"
        );
        tokio::time::advance(WRITER_WINDOW).await;
        // Stale evidence: the fence probe travels with the create, and still commits.
        let out = fresh
            .compare_and_set(s, Some(2), Bytes::from("x"), "x")
            .await
            .unwrap();
        assert_eq!(out, CasOutcome::Committed);
        assert_eq!(
            c.compare_and_set(s, Some(2), Bytes::from("y"), "y")
                .await
                .unwrap(),
            CasOutcome::Mismatch,
            "evidence about an older head never lets a create through"
        );
    }

    #[test]
    fn truncation_points() {
        fn check(head: SeqNo, expected: SeqNo) {
            assert_eq!(truncation_point(head), expected, "head {head}");
        }
        check(0, 0);
        check(1, 0);
        check(FENCE_SLOT - 1, 0);
        check(FENCE_SLOT, FENCE_SLOT);
        check(FENCE_SLOT + 1, FENCE_SLOT);
        check(3 * FENCE_SLOT - 1, 2 * FENCE_SLOT);
    }
}
