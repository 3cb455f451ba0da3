//! Shard state: the value stored at every consensus version, encoded with prost.
//!
//! Times are stored as *time codes*: a timestamp's 8-byte encoding read as a big-endian
//! `u64`, which orders like the time. A frontier of a totally ordered time has at most
//! one element, so it is an `Option<u64>` here, where `None` is the empty frontier `[]`.
//!
//! # Invariants
//!
//! - `batches` are contiguous: each batch's `lower` is the previous batch's `upper`, and
//!   the last batch's `upper` is the shard's `upper`.
//! - every update in a batch has a time code in `[lower, upper)`.
//! - `since` never regresses; it is the meet of the readers' sinces whenever any reader
//!   is registered.
//! - a part key appears in at most one of `batches` and `garbage`.
//!
//! # Size
//!
//! The state is rewritten in full at every version, so its size bounds the cost of an
//! append. It stays small without history: empty batches merge into their neighbour,
//! inline updates are capped, compaction keeps the number of batches logarithmic in the
//! data size, expired leases are pruned, and GC empties `garbage`.

use bytes::Bytes;
use prost::Message;

use crate::error::CodecError;

/// The durable state of one shard at one version.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct State {
    /// The consensus version this state is stored at.
    #[prost(uint64, tag = "1")]
    pub(crate) seqno: u64,
    /// The shard id, as text.
    #[prost(string, tag = "2")]
    pub(crate) shard: String,
    /// The read frontier (`None` = `[]`).
    #[prost(uint64, optional, tag = "3")]
    pub(crate) since: Option<u64>,
    /// The write frontier (`None` = `[]`).
    #[prost(uint64, optional, tag = "4")]
    pub(crate) upper: Option<u64>,
    /// The batches, in time order.
    #[prost(message, repeated, tag = "5")]
    pub(crate) batches: Vec<HollowBatch>,
    /// Readers that hold the since while their lease lasts.
    #[prost(message, repeated, tag = "6")]
    pub(crate) leased_readers: Vec<LeasedReader>,
    /// Readers that hold the since until they release it, fenced by an opaque epoch.
    #[prost(message, repeated, tag = "7")]
    pub(crate) critical_readers: Vec<CriticalReader>,
    /// Registered writers.
    #[prost(message, repeated, tag = "8")]
    pub(crate) writers: Vec<WriterState>,
    /// Set once the shard is finalized; no operation succeeds afterwards.
    #[prost(bool, tag = "9")]
    pub(crate) tombstone: bool,
    /// Parts no longer referenced by `batches`, awaiting deletion.
    #[prost(message, repeated, tag = "10")]
    pub(crate) garbage: Vec<GarbagePart>,
    /// The lower of the first batch: the shard's initial frontier.
    #[prost(uint64, tag = "11")]
    pub(crate) lower: u64,
    /// The relation description as JSON, for inspection.
    #[prost(string, tag = "12")]
    pub(crate) schema_json: String,
    /// The commit tokens of the most recent versions, oldest first, one per version up
    /// to and including this one (at most [`RECENT_TOKENS`]). A writer whose commit was
    /// in doubt finds out from any later state whether it landed: see
    /// `machine::InDoubt`.
    #[prost(bytes = "bytes", repeated, tag = "13")]
    pub(crate) recent_tokens: Vec<Bytes>,
    /// What the shard holds, in words for people (a collection's name), or empty. Only
    /// inspection reads it; readers that predate it skip the field.
    #[prost(string, tag = "14")]
    pub(crate) name: String,
}

/// How many versions' commit tokens a state remembers: an in-doubt commit is resolved
/// exactly while fewer versions than this were committed on top of it.
pub(crate) const RECENT_TOKENS: usize = 64;

/// A batch: updates at times in `[lower, upper)`, held in parts or inline.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct HollowBatch {
    /// The inclusive lower bound of its times.
    #[prost(uint64, tag = "1")]
    pub(crate) lower: u64,
    /// The exclusive upper bound (`None` = `[]`).
    #[prost(uint64, optional, tag = "2")]
    pub(crate) upper: Option<u64>,
    /// Times before this were forwarded to it by compaction.
    #[prost(uint64, tag = "3")]
    pub(crate) since: u64,
    /// The blob parts.
    #[prost(message, repeated, tag = "4")]
    pub(crate) parts: Vec<PartRef>,
    /// Updates small enough to live in the state itself.
    #[prost(message, repeated, tag = "5")]
    pub(crate) inline: Vec<InlineUpdate>,
    /// The number of updates.
    #[prost(uint64, tag = "6")]
    pub(crate) len: u64,
    /// The encoded size of the updates.
    #[prost(uint64, tag = "7")]
    pub(crate) bytes: u64,
}

/// A reference to an immutable Parquet part.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub(crate) struct PartRef {
    /// The key relative to the location: `shards/{shard}/parts/{writer}/{uuid}`.
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    /// The number of updates.
    #[prost(uint64, tag = "2")]
    pub(crate) len: u64,
    /// The encoded size.
    #[prost(uint64, tag = "3")]
    pub(crate) bytes: u64,
}

/// One update stored inline.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct InlineUpdate {
    /// The row's encoded bytes (empty for an error).
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) row: Bytes,
    /// The error, if this update is one.
    #[prost(string, optional, tag = "2")]
    pub(crate) err: Option<String>,
    /// The time code.
    #[prost(uint64, tag = "3")]
    pub(crate) ts: u64,
    /// The multiplicity change.
    #[prost(sint64, tag = "4")]
    pub(crate) diff: i64,
}

/// A reader whose hold lasts while its lease is renewed.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeasedReader {
    /// The reader id.
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    /// Its since (`None` = `[]`).
    #[prost(uint64, optional, tag = "2")]
    pub(crate) since: Option<u64>,
    /// The oldest version it may still be reading: parts removed after it are kept.
    #[prost(uint64, tag = "3")]
    pub(crate) seqno: u64,
    /// Wall-clock milliseconds after which the lease is void.
    #[prost(uint64, tag = "4")]
    pub(crate) lease_expiry_ms: u64,
}

/// A reader that holds the since until it releases it, fenced by an opaque epoch.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct CriticalReader {
    /// The reader id.
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    /// Its since (`None` = `[]`).
    #[prost(uint64, optional, tag = "2")]
    pub(crate) since: Option<u64>,
    /// The opaque value a caller must present to move the since.
    #[prost(uint64, tag = "3")]
    pub(crate) opaque: u64,
}

/// A registered writer.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriterState {
    /// The writer id.
    #[prost(string, tag = "1")]
    pub(crate) id: String,
    /// Wall-clock milliseconds after which the lease is void.
    #[prost(uint64, tag = "2")]
    pub(crate) lease_expiry_ms: u64,
    /// The idempotency token of its last committed append.
    #[prost(string, tag = "3")]
    pub(crate) last_token: String,
}

/// A part that waits for deletion.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct GarbagePart {
    /// The part key.
    #[prost(string, tag = "1")]
    pub(crate) key: String,
    /// The first version whose batches no longer reference it.
    #[prost(uint64, tag = "2")]
    pub(crate) removed_at: u64,
}

impl State {
    /// The first state of a shard whose times start at `lower`.
    pub(crate) fn initial(shard: &str, lower: u64, schema_json: String) -> State {
        State {
            shard: shard.to_owned(),
            since: Some(lower),
            upper: Some(lower),
            lower,
            schema_json,
            ..State::default()
        }
    }

    /// Decodes a state read from version `seqno` of `key`, checking it belongs there.
    pub(crate) fn decode_checked(
        key: &str,
        shard: &str,
        seqno: u64,
        bytes: Bytes,
    ) -> Result<State, CodecError> {
        let fail = |reason: String| CodecError::State {
            key: key.to_owned(),
            reason,
        };
        let state = State::decode(bytes).map_err(|e| fail(e.to_string()))?;
        if state.seqno != seqno || state.shard != shard {
            return Err(fail(format!(
                "holds shard {:?} version {}",
                state.shard, state.seqno
            )));
        }
        let mut lower = state.lower;
        for b in &state.batches {
            if b.lower != lower || b.upper.is_some_and(|u| u < b.lower) {
                return Err(fail("batches are not contiguous".into()));
            }
            lower = b.upper.unwrap_or(u64::MAX);
        }
        if !state.batches.is_empty() && state.batches.last().map(|b| b.upper) != Some(state.upper) {
            return Err(fail("the last batch does not end at the upper".into()));
        }
        Ok(state)
    }

    /// Every part key the batches reference.
    pub(crate) fn live_parts(&self) -> impl Iterator<Item = &PartRef> {
        self.batches.iter().flat_map(|b| b.parts.iter())
    }

    /// The number of parts the batches reference.
    pub(crate) fn part_count(&self) -> usize {
        self.batches.iter().map(|b| b.parts.len()).sum()
    }

    /// Records `token` as the commit token of this version, forgetting the oldest
    /// beyond [`RECENT_TOKENS`].
    pub(crate) fn push_token(&mut self, token: Bytes) {
        if self.recent_tokens.len() >= RECENT_TOKENS {
            let excess = self.recent_tokens.len() + 1 - RECENT_TOKENS;
            self.recent_tokens.drain(..excess);
        }
        self.recent_tokens.push(token);
    }

    /// Total bytes held inline.
    pub(crate) fn inline_bytes(&self) -> u64 {
        self.batches
            .iter()
            .filter(|b| !b.inline.is_empty())
            .map(|b| b.bytes)
            .sum()
    }
}

impl HollowBatch {
    /// Whether the batch holds no updates.
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.inline.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_garbage_and_misplaced_states() {
        let s = State::initial("s1", 0, String::new());
        let bytes = Bytes::from(s.encode_to_vec());
        assert!(State::decode_checked("k", "s1", 0, bytes.clone()).is_ok());
        assert!(State::decode_checked("k", "s2", 0, bytes.clone()).is_err());
        assert!(State::decode_checked("k", "s1", 3, bytes).is_err());
        assert!(
            State::decode_checked("k", "s1", 0, Bytes::from_static(&[0xff, 0xff, 0xff])).is_err()
        );
    }
}
