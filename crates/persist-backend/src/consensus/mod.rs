//! Consensus: one linearizable sequence of state versions per shard, behind the
//! [`Consensus`] trait, with an implementation chosen by what the location's store can
//! do ([`ConsensusKind`]):
//!
//! - [`register::RegisterConsensus`] (memory, S3, any store with `PutMode::Update`):
//!   one head object per shard, replaced with `If-Match` in one request. A stalled
//!   writer's e-tag never matches again, so there are no ghosts, no truncation and no
//!   consensus GC.
//! - [`file::FileRegister`] (local files, whose `object_store` backend has no
//!   conditional update): the same register on the file system itself, with an
//!   advisory lock around read, compare, write, fsync, rename and fsync of the
//!   directory.
//! - [`log::LogConsensus`]: the create-if-absent log `shards/{s}/state/{seqno:020}`
//!   with fenced truncation, for a store that can create-if-absent but not update. It
//!   keeps one fence object per 64 truncated versions, so it is not the default of any
//!   location; it is read for locations written before the registers existed.
//!
//! The choice is recorded in a format marker at the location's root ([`mod@format`]), so a
//! location is never read with the other format.
//!
//! # Contract (every implementation)
//!
//! - `compare_and_set(expected)` makes `data` version `expected + 1` (1 for `None`) if
//!   and only if `expected` is the head; [`CasOutcome::Mismatch`] means it certainly did
//!   not. A write that may have landed but cannot be told apart from one that did not
//!   is [`ExternalError::Indeterminate`](crate::ExternalError), never a mismatch: the
//!   machine then settles it from the commit tokens a later state remembers.
//! - A retry of the same call (same token) after a lost answer is Committed when the
//!   first attempt landed and nothing was committed on top.
//! - `head` returns the latest version; it never returns a version that was replaced or
//!   truncated.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use strata_controller_api::ShardId;

use crate::error::PersistError;
use crate::location::Location;

pub mod file;
pub mod format;
pub mod log;
pub mod register;

pub use log::{FENCE_SLOT, truncation_point};

/// A sequence number of a shard's versions. The first version is 1.
pub type SeqNo = u64;

/// One version of a shard.
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
    /// Another version is there, and this call's payload certainly is not: the caller
    /// must re-read the head.
    Mismatch,
}

/// Which consensus a location uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsensusKind {
    /// One head object per shard, replaced with `If-Match`.
    Register,
    /// One head file per shard under `root`, replaced under an advisory lock.
    FileRegister {
        /// The location's directory.
        root: std::path::PathBuf,
    },
    /// The create-if-absent log with fenced truncation.
    Log,
}

impl ConsensusKind {
    /// The name written in the format marker.
    pub fn name(&self) -> &'static str {
        match self {
            ConsensusKind::Register => "register",
            ConsensusKind::FileRegister { .. } => "file-register",
            ConsensusKind::Log => "log",
        }
    }
}

/// A linearizable sequence of versions per shard. See the module doc for the contract.
#[async_trait]
pub trait Consensus: fmt::Debug + Send + Sync {
    /// The latest version, or `None` for a shard never written. `hint` is a seqno the
    /// caller believes exists (0 when it knows none); it may only make the read cheaper.
    async fn head(
        &self,
        shard: ShardId,
        hint: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError>;

    /// Writes `data` as version `expected + 1` (or 1 when `expected` is `None`) if and
    /// only if `expected` is the head. `token` identifies this call across its retries.
    async fn compare_and_set(
        &self,
        shard: ShardId,
        expected: Option<SeqNo>,
        data: Bytes,
        token: &str,
    ) -> Result<CasOutcome, PersistError>;

    /// Deletes what the versions below `below` left behind, where the implementation
    /// keeps old versions at all; returns how many objects went. Idempotent.
    async fn truncate(&self, shard: ShardId, below: SeqNo) -> Result<usize, PersistError>;

    /// Which implementation this is.
    fn kind(&self) -> ConsensusKind;
}

/// The consensus of an opened location, as its [`Location::consensus`] says.
pub fn open(loc: &Location) -> Arc<dyn Consensus> {
    match &loc.consensus {
        ConsensusKind::Register => Arc::new(register::RegisterConsensus::new(loc.clone())),
        ConsensusKind::FileRegister { root } => {
            Arc::new(file::FileRegister::new(root.clone(), loc.prefix.clone()))
        }
        ConsensusKind::Log => Arc::new(log::LogConsensus::new(loc.clone())),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Envelope {
    #[prost(string, tag = "1")]
    pub(crate) token: String,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) data: Bytes,
    /// The version number (registers only: a log's key carries it).
    #[prost(uint64, tag = "3")]
    pub(crate) seqno: u64,
}
