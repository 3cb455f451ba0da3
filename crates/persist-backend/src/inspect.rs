//! [`ShardInspect`]: a shard's state as operators and tests see it.
//!
//! [`PersistClient::inspect_shard`](crate::PersistClient::inspect_shard) returns it;
//! its JSON (serde) is what `strata inspect shard` prints and what
//! `inspect_persist_state` returns, so its field names are a public contract. Times are
//! codes: the timestamp's 8-byte encoding as a big-endian `u64` (for the default
//! `Timestamp`, milliseconds). A frontier is a list of codes: `[t]`, or `[]` for the
//! empty frontier.

use serde::{Deserialize, Serialize};

use crate::state::State;

/// A shard's state: frontiers, batches, readers, writers and garbage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInspect {
    /// The shard id, as text.
    pub shard: String,
    /// What the shard holds, in words (a collection's name), or empty.
    pub name: String,
    /// The consensus version of this state.
    pub seqno: u64,
    /// The read frontier.
    pub since: Vec<u64>,
    /// The write frontier.
    pub upper: Vec<u64>,
    /// Whether the shard is finalized.
    pub tombstone: bool,
    /// The batches, in time order.
    pub batches: Vec<BatchInspect>,
    /// How many blob parts the batches reference.
    pub part_count: usize,
    /// Readers that hold the since while their lease lasts.
    pub leased_readers: Vec<LeasedReaderInspect>,
    /// Readers that hold the since until they release it.
    pub critical_readers: Vec<CriticalReaderInspect>,
    /// Registered writers.
    pub writers: Vec<WriterInspect>,
    /// Parts no longer referenced, awaiting deletion.
    pub garbage: Vec<GarbageInspect>,
    /// The relation description registered for the shard, or null.
    pub schema: serde_json::Value,
}

/// One batch of a [`ShardInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInspect {
    /// The inclusive lower bound of its times, as a frontier.
    pub lower: Vec<u64>,
    /// The exclusive upper bound of its times.
    pub upper: Vec<u64>,
    /// Times before this were forwarded to it by compaction, as a frontier.
    pub since: Vec<u64>,
    /// Its blob parts.
    pub parts: Vec<PartInspect>,
    /// How many updates it holds inline, in the state itself.
    pub inline_updates: usize,
    /// How many updates it holds in all.
    pub len: u64,
    /// Its encoded size.
    pub bytes: u64,
}

/// One blob part of a [`BatchInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInspect {
    /// Its key, relative to the location.
    pub key: String,
    /// How many updates it holds.
    pub len: u64,
    /// Its encoded size.
    pub bytes: u64,
}

/// A leased reader of a [`ShardInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedReaderInspect {
    /// The reader id.
    pub id: String,
    /// Its since.
    pub since: Vec<u64>,
    /// The oldest version it may still be reading.
    pub seqno: u64,
    /// Wall-clock milliseconds after which the lease is void.
    pub lease_expiry_ms: u64,
}

/// A critical reader of a [`ShardInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriticalReaderInspect {
    /// The reader id.
    pub id: String,
    /// Its since.
    pub since: Vec<u64>,
    /// The opaque value a caller must present to move the since.
    pub opaque: u64,
}

/// A writer of a [`ShardInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterInspect {
    /// The writer id.
    pub id: String,
    /// Wall-clock milliseconds after which the lease is void.
    pub lease_expiry_ms: u64,
    /// The idempotency token of its last committed append.
    pub last_token: String,
}

/// A part awaiting deletion, of a [`ShardInspect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GarbageInspect {
    /// The part key.
    pub key: String,
    /// The first version whose batches no longer reference it.
    pub removed_at: u64,
}

/// A frontier of at most one code: `None` is the empty frontier.
fn frontier(code: Option<u64>) -> Vec<u64> {
    code.into_iter().collect()
}

impl ShardInspect {
    /// The since as its one code, or `None` for the empty frontier.
    pub fn since_code(&self) -> Option<u64> {
        self.since.first().copied()
    }

    /// The upper as its one code, or `None` for the empty frontier.
    pub fn upper_code(&self) -> Option<u64> {
        self.upper.first().copied()
    }

    pub(crate) fn from_state(state: &State) -> ShardInspect {
        ShardInspect {
            shard: state.shard.clone(),
            name: state.name.clone(),
            seqno: state.seqno,
            since: frontier(state.since),
            upper: frontier(state.upper),
            tombstone: state.tombstone,
            batches: state
                .batches
                .iter()
                .map(|b| BatchInspect {
                    lower: vec![b.lower],
                    upper: frontier(b.upper),
                    since: vec![b.since],
                    parts: b
                        .parts
                        .iter()
                        .map(|p| PartInspect {
                            key: p.key.clone(),
                            len: p.len,
                            bytes: p.bytes,
                        })
                        .collect(),
                    inline_updates: b.inline.len(),
                    len: b.len,
                    bytes: b.bytes,
                })
                .collect(),
            part_count: state.part_count(),
            leased_readers: state
                .leased_readers
                .iter()
                .map(|r| LeasedReaderInspect {
                    id: r.id.clone(),
                    since: frontier(r.since),
                    seqno: r.seqno,
                    lease_expiry_ms: r.lease_expiry_ms,
                })
                .collect(),
            critical_readers: state
                .critical_readers
                .iter()
                .map(|r| CriticalReaderInspect {
                    id: r.id.clone(),
                    since: frontier(r.since),
                    opaque: r.opaque,
                })
                .collect(),
            writers: state
                .writers
                .iter()
                .map(|w| WriterInspect {
                    id: w.id.clone(),
                    lease_expiry_ms: w.lease_expiry_ms,
                    last_token: w.last_token.clone(),
                })
                .collect(),
            garbage: state
                .garbage
                .iter()
                .map(|g| GarbageInspect {
                    key: g.key.clone(),
                    removed_at: g.removed_at,
                })
                .collect(),
            schema: serde_json::from_str(&state.schema_json).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{GarbagePart, HollowBatch, PartRef};

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// The JSON keys are a public contract (`strata inspect shard`).
    #[test]
    fn json_keeps_its_keys_and_frontier_shapes() {
        let mut state = State::initial("s1", 3, r#"{"columns":[]}"#.to_owned());
        state.upper = None;
        state.batches = vec![HollowBatch {
            lower: 3,
            upper: Some(5),
            since: 3,
            parts: vec![PartRef {
                key: "k".into(),
                len: 2,
                bytes: 10,
            }],
            len: 2,
            bytes: 10,
            ..HollowBatch::default()
        }];
        state.garbage = vec![GarbagePart {
            key: "g".into(),
            removed_at: 1,
        }];
        let inspect = ShardInspect::from_state(&state);
        let json = serde_json::to_value(&inspect).unwrap();
        let mut top = keys(&json);
        top.sort_unstable();
        assert_eq!(
            top,
            [
                "batches",
                "critical_readers",
                "garbage",
                "leased_readers",
                "name",
                "part_count",
                "schema",
                "seqno",
                "shard",
                "since",
                "tombstone",
                "upper",
                "writers"
            ]
        );
        let mut batch = keys(&json["batches"][0]);
        batch.sort_unstable();
        assert_eq!(
            batch,
            [
                "bytes",
                "inline_updates",
                "len",
                "lower",
                "parts",
                "since",
                "upper"
            ]
        );
        assert_eq!(json["upper"], serde_json::json!([]));
        assert_eq!(json["batches"][0]["upper"], serde_json::json!([5]));
        assert_eq!(json["batches"][0]["lower"], serde_json::json!([3]));
        assert_eq!(
            json["batches"][0]["parts"][0],
            serde_json::json!({"key": "k", "len": 2, "bytes": 10})
        );
        assert_eq!(
            json["garbage"][0],
            serde_json::json!({"key": "g", "removed_at": 1})
        );
        assert_eq!(json["schema"], serde_json::json!({"columns": []}));
        assert_eq!(json["part_count"], 1);
        assert_eq!(inspect.upper_code(), None);
        // It reads back.
        let back: ShardInspect = serde_json::from_value(json).unwrap();
        assert_eq!(back, inspect);
    }
}
