//! The log consensus: one linearizable log of state versions per shard, on any store
//! that can create an object if absent.
//!
//! Version `n` of shard `s` is the object `shards/{s}/state/{n:020}`, and
//! [`LogConsensus::compare_and_set`] with `expected = Some(n)` is a create-if-absent of
//! `n + 1` (`PutMode::Create`), which memory, local file and S3 all support.
//!
//! # Contract
//!
//! - **Idempotency**: every payload carries a token. After an indeterminate failure the
//!   create is retried; every `AlreadyExists`, on a first attempt too (a store client may
//!   retry a write internally, and its retry finds the write that landed), is resolved by
//!   reading the object back and comparing tokens, so a write that landed is reported as
//!   committed exactly once. A conflict costs that one read.
//! - **Safe truncation**: [`LogConsensus::truncate`] first creates a fence
//!   `shards/{s}/fence/{slot:020}` for every slot of [`FENCE_SLOT`] versions it is about
//!   to delete from, then a boundary marker `shards/{s}/boundary/{b:020}` (create-only,
//!   so the boundary never regresses), then deletes versions below `b`. A create that
//!   succeeds may be a *ghost*: a stalled writer re-creating a version that was deleted.
//!   The create is then checked (see "Ghost check" below). An object found below the
//!   boundary is deleted and the answer is [`ExternalError::Indeterminate`], not a
//!   mismatch: a ghost looks exactly like a commit of ours that was built upon and
//!   truncated while we stalled, and calling that a conflict would make a caller retry
//!   a write that landed. The machine settles the doubt from the commit tokens a later
//!   state remembers.
//! - **Ghost check**: a successful create of version `v` GETs the fence of `v`'s slot.
//!   Fences are never deleted and each is durable before any version of its slot is
//!   deleted, so if `v` was ever deleted the fence exists by the time our create
//!   succeeded, and the GET (issued after the create) sees it. An absent fence
//!   therefore proves `v` was never deleted, so our create is the first object at `v`:
//!   committed, with one GET of a key that usually does not exist (cheap on every
//!   backend, and no LIST). A present fence falls back to the exact check: a LIST of
//!   the boundary markers beyond `v`. GC truncates at slot starts
//!   ([`truncation_point`]), so the head's slot is never fenced and a writer at the head
//!   always takes the fast path.
//!
//!   Why not skip the read altogether for a writer whose cached head is recent: a
//!   writer can stall for any time between reading version `n` and creating `n + 1`, and
//!   nothing it holds without I/O tells it how far the log moved meanwhile. One read
//!   after the create is the least that tells a re-creation from a first creation. The
//!   price of the fences is one empty object per [`FENCE_SLOT`] truncated versions.
//! - **Head**: a cached seqno plus GET probes of `seqno+1, +2, ...`; LIST only when the
//!   cached version is gone, and LIST results are never trusted for order (the maximum
//!   parsed seqno wins). A head below the boundary is never returned.

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use prost::Message;
use strata_controller_api::ShardId;
use strata_controller_api::retry::{Backoff, BackoffConfig};

use super::{CasOutcome, Consensus, ConsensusKind, Envelope, SeqNo, VersionedData};
use crate::blob::{self, Created};
use crate::error::{CodecError, ExternalError, PersistError};
use crate::location::Location;
use crate::paths::{ObjectKey, Prefix};

/// A failed read while a write of ours may have landed leaves the outcome unknown.
fn in_doubt(e: PersistError) -> PersistError {
    match e {
        PersistError::External(e) => {
            PersistError::from(ExternalError::indeterminate("compare_and_set", e))
        }
        e => e,
    }
}

const CREATE_ATTEMPTS: usize = 4;

/// GET probes past a hint before a LIST is cheaper.
const MAX_PROBES: usize = 4;

/// Versions per fence slot: truncation fences whole slots, and GC truncates at slot
/// starts, so it keeps at most `FENCE_SLOT - 1` versions more than it could.
pub const FENCE_SLOT: SeqNo = 64;

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

/// The consensus log of every shard in one location.
#[derive(Debug, Clone)]
pub struct LogConsensus {
    loc: Location,
}

#[async_trait]
impl Consensus for LogConsensus {
    async fn head(
        &self,
        shard: ShardId,
        hint: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError> {
        LogConsensus::head(self, shard, hint).await
    }

    async fn compare_and_set(
        &self,
        shard: ShardId,
        expected: Option<SeqNo>,
        data: Bytes,
        token: &str,
    ) -> Result<CasOutcome, PersistError> {
        LogConsensus::compare_and_set(self, shard, expected, data, token).await
    }

    async fn truncate(&self, shard: ShardId, below: SeqNo) -> Result<usize, PersistError> {
        LogConsensus::truncate(self, shard, below).await
    }

    fn kind(&self) -> ConsensusKind {
        ConsensusKind::Log
    }
}

impl LogConsensus {
    /// The log over an opened location.
    pub fn new(loc: Location) -> Self {
        LogConsensus { loc }
    }

    fn state_prefix(&self, shard: ShardId) -> Path {
        self.loc.prefix_of(Prefix::Versions(shard))
    }

    fn state_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        self.loc.object(&ObjectKey::Version { shard, seqno })
    }

    fn boundary_prefix(&self, shard: ShardId) -> Path {
        self.loc.prefix_of(Prefix::Boundary(shard))
    }

    fn fence_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        let slot = seqno / FENCE_SLOT;
        self.loc.object(&ObjectKey::Fence { shard, slot })
    }

    fn boundary_key(&self, shard: ShardId, seqno: SeqNo) -> Path {
        self.loc.object(&ObjectKey::Boundary { shard, seqno })
    }

    /// The seqnos named by listed version or boundary keys of `shard`; any other key is
    /// left out and logged.
    fn seqnos(
        &self,
        shard: ShardId,
        metas: Vec<object_store::ObjectMeta>,
    ) -> impl Iterator<Item = SeqNo> {
        let expected = |key: &ObjectKey| matches!(key, ObjectKey::Version { shard: s, .. } | ObjectKey::Boundary { shard: s, .. } if *s == shard);
        self.loc
            .expected_keys(metas, "log versions", expected)
            .into_iter()
            .filter_map(|(key, _)| match key {
                ObjectKey::Version { seqno, .. } | ObjectKey::Boundary { seqno, .. } => Some(seqno),
                _ => None,
            })
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
        Ok(self.seqnos(shard, metas).max())
    }

    /// The truncation boundary: versions below it are deleted or about to be.
    pub async fn boundary(&self, shard: ShardId) -> Result<SeqNo, PersistError> {
        let metas = blob::list(self.loc.store.as_ref(), &self.boundary_prefix(shard)).await?;
        Ok(self.seqnos(shard, metas).max().unwrap_or(0))
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
        let payload = Envelope {
            token: token.to_owned(),
            data,
            seqno,
        }
        .encode_to_vec();
        let mut last_err = None;
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        for attempt in 0..CREATE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            match blob::create(self.loc.store.as_ref(), &key, Bytes::from(payload.clone())).await {
                Ok(Created::Yes) => return self.check_not_ghost(shard, seqno, &key).await,
                // Even on our first attempt the object may be ours: a store client that
                // retries internally (object_store's S3 client does) reports a lost
                // response to a write that landed as `AlreadyExists` on its retry.
                Ok(Created::AlreadyExists) => return self.resolve(shard, seqno, token).await,
                Err(e) => {
                    last_err = Some(e);
                }
            }
        }
        let err =
            last_err.unwrap_or_else(|| ExternalError::indeterminate("create", "no attempt made"));
        Err(err.into())
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

    async fn check_not_ghost(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        key: &Path,
    ) -> Result<CasOutcome, PersistError> {
        let beyond = self.ghost_check(shard, seqno).await.map_err(in_doubt)?;
        if beyond {
            return Ok(CasOutcome::Committed);
        }
        // Our object sits below a truncation boundary. Either it is a ghost (a stalled
        // create after the version was truncated) or it was committed, built upon and
        // truncated since, with the delete not done yet. Nothing here tells which, so
        // the answer is in doubt; the caller settles it from a later state. Either way
        // the object below the boundary is garbage now.
        tracing::warn!(%shard, seqno, "a version created below the truncation boundary");
        if let Err(e) = blob::delete(self.loc.store.as_ref(), key).await {
            tracing::debug!(%shard, seqno, error = %e, "leaving it to truncation");
        }
        Err(ExternalError::indeterminate(
            "compare_and_set",
            format!("version {seqno} was created below the truncation boundary: a stalled re-creation, or a commit truncated since"),
        )
        .into())
    }

    /// After an indeterminate create, finds out whether ours is the object there.
    async fn resolve(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        token: &str,
    ) -> Result<CasOutcome, PersistError> {
        let found = self.get_envelope(shard, seqno).await.map_err(in_doubt)?;
        match found {
            Some(env) if env.token == token => {
                let key = self.state_key(shard, seqno);
                self.check_not_ghost(shard, seqno, &key).await
            }
            // Another writer's object: ours never landed, unless ours did, was
            // truncated, and this is a re-creation. A version that was never deleted
            // settles it (the same check as a ghost check: see the module doc).
            Some(_) => match self.ghost_check(shard, seqno).await.map_err(in_doubt)? {
                true => Ok(CasOutcome::Mismatch),
                false => Err(ExternalError::indeterminate(
                    "compare_and_set",
                    format!(
                        "version {seqno} holds another write and may have been truncated since ours"
                    ),
                )
                .into()),
            },
            None => Err(ExternalError::indeterminate(
                "compare_and_set",
                "version truncated before it could be read back",
            )
            .into()),
        }
    }

    /// Deletes every version below `below`, which must not be beyond the head. Creates
    /// the boundary marker first. Idempotent and safe to run concurrently.
    ///
    /// It deletes what the listing shows below the boundary, not a range from the
    /// previous boundary: a truncation interrupted after its boundary was created (a
    /// crash, a failed delete) left versions and older boundary markers behind, and the
    /// next truncation removes them too.
    pub async fn truncate(&self, shard: ShardId, below: SeqNo) -> Result<usize, PersistError> {
        let store = self.loc.store.as_ref();
        let boundaries: Vec<SeqNo> = {
            let metas = blob::list(store, &self.boundary_prefix(shard)).await?;
            self.seqnos(shard, metas).collect()
        };
        let prev = boundaries.iter().copied().max().unwrap_or(0);
        if below <= prev {
            return Ok(0);
        }
        let stale: Vec<SeqNo> = {
            let metas = blob::list(store, &self.state_prefix(shard)).await?;
            self.seqnos(shard, metas).filter(|s| *s < below).collect()
        };
        // Every slot we delete from is fenced first, so a ghost check sees the fence
        // (slots below `prev` were fenced by the truncation that created `prev`).
        let mut fence = prev.max(1);
        while fence < below {
            blob::create(store, &self.fence_key(shard, fence), Bytes::new()).await?;
            fence = (fence / FENCE_SLOT + 1) * FENCE_SLOT;
        }
        blob::create(store, &self.boundary_key(shard, below), Bytes::new()).await?;
        let deleted = stale.len();
        let keys = stale.iter().map(|seqno| self.state_key(shard, *seqno));
        blob::delete_many(store, keys.collect()).await?;
        let old_boundaries = boundaries
            .iter()
            .map(|seqno| self.boundary_key(shard, *seqno));
        blob::delete_many(store, old_boundaries.collect()).await?;
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::memory_store;

    fn is_indeterminate(res: &Result<CasOutcome, PersistError>) -> bool {
        matches!(
            res,
            Err(PersistError::External(ExternalError::Indeterminate { .. }))
        )
    }

    fn consensus(name: &str) -> LogConsensus {
        LogConsensus::new(Location::from_store(memory_store(name), "", "mem://test"))
    }

    #[tokio::test]
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

    #[tokio::test]
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
        // A stalled writer that still believes seqno 1 is the head: its create lands
        // below the boundary, which it cannot tell from a truncated commit of its own.
        let ghost = c
            .compare_and_set(s, Some(1), Bytes::from("ghost"), "g")
            .await;
        assert!(is_indeterminate(&ghost), "{ghost:?}");
        assert_eq!(c.get(s, 2).await.unwrap(), None);
        assert_eq!(c.head(s, 1).await.unwrap().unwrap().seqno, 5);
    }

    #[tokio::test]
    async fn an_interrupted_truncation_is_finished_by_the_next() {
        let c = consensus("consensus-interrupted");
        let s = ShardId::from_bytes([4; 16]);
        for e in 0..10u64 {
            let out = c
                .compare_and_set(s, (e > 0).then_some(e), Bytes::from("v"), "t")
                .await
                .unwrap();
            assert_eq!(out, CasOutcome::Committed);
        }
        assert_eq!(c.truncate(s, 3).await.unwrap(), 2);
        // A truncation to 6 that died right after creating its boundary marker: the
        // versions 3..6 and the marker at 3 are still there.
        let store = c.loc.store.as_ref();
        blob::create(store, &c.boundary_key(s, 6), Bytes::new())
            .await
            .unwrap();
        assert_eq!(c.truncate(s, 8).await.unwrap(), 5);
        let versions = blob::list(store, &c.state_prefix(s)).await.unwrap();
        let versions: Vec<_> = c.seqnos(s, versions).collect();
        assert_eq!(versions, vec![8, 9, 10]);
        let boundaries = blob::list(store, &c.boundary_prefix(s)).await.unwrap();
        let boundaries: Vec<_> = c.seqnos(s, boundaries).collect();
        assert_eq!(boundaries, vec![8]);
        assert_eq!(c.head(s, 0).await.unwrap().unwrap().seqno, 10);
    }

    #[tokio::test]
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
                .await;
            assert!(is_indeterminate(&out), "ghost after {stale}: {out:?}");
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
