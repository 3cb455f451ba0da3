//! The register consensus: one head object per shard, `shards/{s}/head`, replaced
//! with `PutMode::Update { e_tag }` (If-Match) in one request.
//!
//! - **Commit**: the e-tag of version `n` (cached from the last read or write of this
//!   client) makes the put conditional on `n` still being the head. A stalled writer's
//!   e-tag never matches again, so there is nothing to fence, truncate or collect.
//! - **Lost acknowledgements**: a failed put is retried with the same e-tag. A
//!   precondition failure (ours landed and the store's retry found it, or another
//!   writer won) is settled by reading the head: our token at `n + 1` is Committed,
//!   another's at `n + 1` is a Mismatch (a register has one successor per version),
//!   and a head beyond `n + 1` is Indeterminate; the machine settles that from the
//!   commit tokens the state remembers.
//! - **Reads**: one GET. An idle reader sends `If-None-Match` with the cached e-tag and
//!   gets `304 Not Modified` without a body; nothing ever LISTs.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, PutMode, PutOptions, PutPayload, UpdateVersion};
use prost::Message;
use strata_controller_api::ShardId;
use strata_controller_api::retry::{Backoff, BackoffConfig};

use super::{CasOutcome, Consensus, ConsensusKind, Envelope, SeqNo, VersionedData};
use crate::error::{CodecError, ExternalError, PersistError};
use crate::location::Location;

/// Attempts of one put whose answer was lost before the outcome is reported in doubt.
const PUT_ATTEMPTS: usize = 3;

/// What this client last saw of one shard's head.
#[derive(Debug, Clone)]
struct Seen {
    seqno: SeqNo,
    e_tag: Option<String>,
    version: Option<String>,
    token: String,
    data: Bytes,
}

/// The register consensus of one location. Cheap to share: one per client.
#[derive(Debug)]
pub struct RegisterConsensus {
    loc: Location,
    seen: Mutex<HashMap<ShardId, Seen>>,
}

impl RegisterConsensus {
    /// The register over an opened location, whose store must support
    /// `PutMode::Update`.
    pub fn new(loc: Location) -> Self {
        RegisterConsensus {
            loc,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, shard: ShardId) -> Path {
        self.loc.object(&crate::paths::ObjectKey::Head { shard })
    }

    fn cached(&self, shard: ShardId) -> Option<Seen> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&shard).cloned()
    }

    fn remember(&self, shard: ShardId, new: Seen) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&shard) {
            Some(old) if old.seqno > new.seqno => {}
            _ => {
                seen.insert(shard, new);
            }
        }
    }

    /// Reads the head, conditionally on the cached e-tag when there is one; `None` for
    /// a shard never written.
    async fn read(&self, shard: ShardId) -> Result<Option<Seen>, PersistError> {
        let key = self.key(shard);
        let cached = self.cached(shard);
        let opts = GetOptions {
            if_none_match: cached.as_ref().and_then(|c| c.e_tag.clone()),
            ..GetOptions::default()
        };
        let got = match self.loc.store.get_opts(&key, opts).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(object_store::Error::NotModified { .. }) => {
                if let Some(c) = cached {
                    return Ok(Some(c));
                }
                return Err(ExternalError::determinate("head", "304 without a cached head").into());
            }
            Err(e) => return Err(ExternalError::determinate("head", e).into()),
        };
        let (e_tag, version) = (got.meta.e_tag.clone(), got.meta.version.clone());
        let bytes = match got.bytes().await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(ExternalError::determinate("head", e).into()),
        };
        let env = Envelope::decode(bytes).map_err(|e| CodecError::State {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        if env.seqno == 0 {
            return Err(CodecError::State {
                key: key.to_string(),
                reason: "a head without a version number".into(),
            }
            .into());
        }
        let seen = Seen {
            seqno: env.seqno,
            e_tag,
            version,
            token: env.token.clone(),
            data: env.data.clone(),
        };
        self.remember(shard, seen.clone());
        Ok(Some(seen))
    }

    /// After a precondition failure or a lost answer: is the head our write?
    async fn settle(
        &self,
        shard: ShardId,
        seqno: SeqNo,
        token: &str,
        sent: bool,
    ) -> Result<CasOutcome, PersistError> {
        let in_doubt = |e: PersistError| match e {
            PersistError::External(e) if sent => {
                ExternalError::indeterminate("compare_and_set", e).into()
            }
            e => e,
        };
        let head = match self.read(shard).await.map_err(in_doubt)? {
            None => {
                return match sent {
                    true => Err(ExternalError::indeterminate(
                        "compare_and_set",
                        "the head is gone after a write to it",
                    )
                    .into()),
                    false => Ok(CasOutcome::Mismatch),
                };
            }
            Some(seen) => (seen.seqno, seen.token),
        };
        match head {
            (h, t) if h == seqno && t == token => Ok(CasOutcome::Committed),
            // Another write holds our version: ours cannot be there too.
            (h, _) if h == seqno => Ok(CasOutcome::Mismatch),
            // The head is not beyond our expected version: ours did not land.
            (h, _) if h < seqno => Ok(CasOutcome::Mismatch),
            // Versions beyond ours: ours may be among them only if it was ever sent.
            (h, _) if sent => Err(ExternalError::indeterminate(
                "compare_and_set",
                format!("the head moved to version {h} past ours ({seqno})"),
            )
            .into()),
            _ => Ok(CasOutcome::Mismatch),
        }
    }
}

#[async_trait]
impl Consensus for RegisterConsensus {
    async fn head(
        &self,
        shard: ShardId,
        _hint: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError> {
        Ok(self.read(shard).await?.map(|seen| VersionedData {
            seqno: seen.seqno,
            data: seen.data,
        }))
    }

    async fn compare_and_set(
        &self,
        shard: ShardId,
        expected: Option<SeqNo>,
        data: Bytes,
        token: &str,
    ) -> Result<CasOutcome, PersistError> {
        let seqno = expected.map_or(1, |e| e + 1);
        let mode = match expected {
            None => PutMode::Create,
            Some(e) => {
                let seen = match self.cached(shard).filter(|s| s.seqno == e) {
                    Some(seen) => seen,
                    None => match self.read(shard).await? {
                        Some(seen) if seen.seqno == e => seen,
                        // A retry of this very write, which landed.
                        Some(seen) if seen.seqno == seqno && seen.token == token => {
                            return Ok(CasOutcome::Committed);
                        }
                        _ => return Ok(CasOutcome::Mismatch),
                    },
                };
                PutMode::Update(UpdateVersion {
                    e_tag: seen.e_tag,
                    version: seen.version,
                })
            }
        };
        let payload = Bytes::from(
            Envelope {
                token: token.to_owned(),
                data: data.clone(),
                seqno,
            }
            .encode_to_vec(),
        );
        let key = self.key(shard);
        let mut sent = false;
        let mut last_err = None;
        let mut backoff = Backoff::new(BackoffConfig::STORE);
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            let opts = PutOptions::from(mode.clone());
            let res = self
                .loc
                .store
                .put_opts(&key, PutPayload::from_bytes(payload.clone()), opts)
                .await;
            match res {
                Ok(put) => {
                    self.remember(
                        shard,
                        Seen {
                            seqno,
                            e_tag: put.e_tag,
                            version: put.version,
                            token: token.to_owned(),
                            data,
                        },
                    );
                    return Ok(CasOutcome::Committed);
                }
                // Another version is there, or ours landed on an earlier attempt (ours
                // or the store client's own retry, which this call cannot see).
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) => return self.settle(shard, seqno, token, true).await,
                Err(e) => {
                    sent = true;
                    last_err = Some(e);
                }
            }
        }
        let err = last_err.map_or_else(
            || ExternalError::indeterminate("compare_and_set", "no attempt made"),
            |e| ExternalError::indeterminate("compare_and_set", e),
        );
        // One read may still settle it; failing that, it stays in doubt.
        match self.settle(shard, seqno, token, sent).await {
            Ok(CasOutcome::Committed) => Ok(CasOutcome::Committed),
            Ok(CasOutcome::Mismatch) if !sent => Ok(CasOutcome::Mismatch),
            _ => Err(err.into()),
        }
    }

    async fn truncate(&self, _shard: ShardId, _below: SeqNo) -> Result<usize, PersistError> {
        Ok(0)
    }

    fn kind(&self) -> ConsensusKind {
        ConsensusKind::Register
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::memory_store;

    fn register(name: &str) -> RegisterConsensus {
        RegisterConsensus::new(Location::from_store(memory_store(name), "", "mem://test"))
    }

    #[tokio::test]
    async fn a_stale_writer_never_matches_again() -> Result<(), PersistError> {
        let c = register("register-stale");
        let other = register("register-stale");
        let s = ShardId::from_bytes([1; 16]);
        assert_eq!(
            c.compare_and_set(s, None, Bytes::from("a"), "t1").await?,
            CasOutcome::Committed
        );
        // `other` reads version 1, then stalls while `c` commits version 2.
        assert_eq!(other.head(s, 0).await?.map(|h| h.seqno), Some(1));
        assert_eq!(
            c.compare_and_set(s, Some(1), Bytes::from("b"), "t2")
                .await?,
            CasOutcome::Committed
        );
        assert_eq!(
            other
                .compare_and_set(s, Some(1), Bytes::from("stale"), "t3")
                .await?,
            CasOutcome::Mismatch
        );
        let head = other.head(s, 0).await?;
        assert_eq!(head.map(|h| (h.seqno, h.data)), Some((2, Bytes::from("b"))));
        Ok(())
    }

    #[tokio::test]
    async fn a_retried_commit_is_recognised_by_its_token() -> Result<(), PersistError> {
        let c = register("register-retry");
        let fresh = register("register-retry");
        let s = ShardId::from_bytes([2; 16]);
        c.compare_and_set(s, None, Bytes::from("a"), "t1").await?;
        c.compare_and_set(s, Some(1), Bytes::from("b"), "t2")
            .await?;
        // A second client (no cached e-tag) retries the commit of version 2.
        assert_eq!(
            fresh.settle(s, 2, "t2", true).await?,
            CasOutcome::Committed,
            "our token at our version"
        );
        assert_eq!(fresh.settle(s, 2, "t9", true).await?, CasOutcome::Mismatch);
        c.compare_and_set(s, Some(2), Bytes::from("c"), "t3")
            .await?;
        assert!(
            matches!(
                fresh.settle(s, 2, "t2", true).await,
                Err(PersistError::External(ExternalError::Indeterminate { .. }))
            ),
            "past our version the register cannot tell"
        );
        Ok(())
    }
}
