//! Typed object keys: every object a location holds, relative to its prefix.
//!
//! Keys are built only by [`ObjectKey`]'s `Display` and read back only by its
//! `FromStr`, so the layout in the crate docs is written in one place. Code that lists
//! objects (GC, inspection) parses each key; a key that does not parse is not ours to
//! delete, and is left alone and logged.

use std::fmt;
use std::str::FromStr;

use strata_controller_api::ShardId;

/// One object of a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectKey {
    /// `strata-format`: the location's format marker.
    FormatMarker,
    /// `shards/{shard}/head`: the register consensus's head of a shard.
    Head { shard: ShardId },
    /// `shards/{shard}/state/{seqno:020}`: one version of the log consensus.
    Version { shard: ShardId, seqno: u64 },
    /// `shards/{shard}/boundary/{seqno:020}`: the log's truncation boundary.
    Boundary { shard: ShardId, seqno: u64 },
    /// `shards/{shard}/fence/{slot:020}`: the log's fence of a run of versions.
    Fence { shard: ShardId, slot: u64 },
    /// `shards/{shard}/parts/{writer}/{part}`: a Parquet part written by `writer`.
    Part {
        shard: ShardId,
        writer: String,
        part: String,
    },
    /// `txns/{txns}/parts/{data}/{part}`: a txns commit's batch for data shard `data`,
    /// before the applier links it into `data`.
    TxnsPart {
        txns: ShardId,
        data: ShardId,
        part: String,
    },
}

/// The prefixes under which a listing finds one kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefix {
    /// Everything of a shard: `shards/{shard}`.
    Shard(ShardId),
    /// Every part of a shard: `shards/{shard}/parts`.
    Parts(ShardId),
    /// Every log version of a shard: `shards/{shard}/state`.
    Versions(ShardId),
    /// The log boundary of a shard: `shards/{shard}/boundary`.
    Boundary(ShardId),
    /// Every txns batch part of a txns shard: `txns/{txns}/parts`.
    TxnsParts(ShardId),
}

impl ObjectKey {
    /// A new part key of `writer` in `shard`, named by a fresh UUID.
    pub(crate) fn new_part(shard: ShardId, writer: &str) -> ObjectKey {
        ObjectKey::Part {
            shard,
            writer: writer.to_owned(),
            part: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// A new txns batch part for data shard `data`, named by a fresh UUID.
    pub(crate) fn new_txns_part(txns: ShardId, data: ShardId) -> ObjectKey {
        ObjectKey::TxnsPart {
            txns,
            data,
            part: uuid::Uuid::new_v4().to_string(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectKey::FormatMarker => f.write_str(crate::consensus::format::MARKER),
            ObjectKey::Head { shard } => write!(f, "shards/{shard}/head"),
            ObjectKey::Version { shard, seqno } => write!(f, "shards/{shard}/state/{seqno:020}"),
            ObjectKey::Boundary { shard, seqno } => {
                write!(f, "shards/{shard}/boundary/{seqno:020}")
            }
            ObjectKey::Fence { shard, slot } => write!(f, "shards/{shard}/fence/{slot:020}"),
            ObjectKey::Part {
                shard,
                writer,
                part,
            } => write!(f, "shards/{shard}/parts/{writer}/{part}"),
            ObjectKey::TxnsPart { txns, data, part } => {
                write!(f, "txns/{txns}/parts/{data}/{part}")
            }
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prefix::Shard(shard) => write!(f, "shards/{shard}"),
            Prefix::Parts(shard) => write!(f, "shards/{shard}/parts"),
            Prefix::Versions(shard) => write!(f, "shards/{shard}/state"),
            Prefix::Boundary(shard) => write!(f, "shards/{shard}/boundary"),
            Prefix::TxnsParts(txns) => write!(f, "txns/{txns}/parts"),
        }
    }
}

/// A key that is not one of [`ObjectKey`]'s forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError {
    pub(crate) key: String,
    pub(crate) reason: &'static str,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown object key {:?}: {}", self.key, self.reason)
    }
}

impl std::error::Error for KeyError {}

/// A name segment (writer id, part id): non-empty, no `/`.
fn segment(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A zero-padded 20-digit number, as written.
fn number(s: &str) -> Option<u64> {
    if s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

impl FromStr for ObjectKey {
    type Err = KeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let err = |reason| KeyError {
            key: key.to_owned(),
            reason,
        };
        let parts: Vec<&str> = key.split('/').collect();
        let shard = |s: &str| s.parse::<ShardId>().map_err(|_| err("not a shard id"));
        let parsed = match parts.as_slice() {
            [m] if *m == crate::consensus::format::MARKER => ObjectKey::FormatMarker,
            ["shards", s, "head"] => ObjectKey::Head { shard: shard(s)? },
            ["shards", s, "state", n] => ObjectKey::Version {
                shard: shard(s)?,
                seqno: number(n).ok_or_else(|| err("not a 20-digit seqno"))?,
            },
            ["shards", s, "boundary", n] => ObjectKey::Boundary {
                shard: shard(s)?,
                seqno: number(n).ok_or_else(|| err("not a 20-digit seqno"))?,
            },
            ["shards", s, "fence", n] => ObjectKey::Fence {
                shard: shard(s)?,
                slot: number(n).ok_or_else(|| err("not a 20-digit slot"))?,
            },
            ["shards", s, "parts", w, p] => ObjectKey::Part {
                shard: shard(s)?,
                writer: segment(w).ok_or_else(|| err("empty writer id"))?,
                part: segment(p).ok_or_else(|| err("empty part id"))?,
            },
            ["txns", t, "parts", d, p] => ObjectKey::TxnsPart {
                txns: shard(t)?,
                data: shard(d)?,
                part: segment(p).ok_or_else(|| err("empty part id"))?,
            },
            _ => return Err(err("no such key form")),
        };
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn shard(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    #[test]
    fn every_form_renders_and_parses_back() {
        let keys = [
            ObjectKey::FormatMarker,
            ObjectKey::Head { shard: shard(1) },
            ObjectKey::Version {
                shard: shard(2),
                seqno: 7,
            },
            ObjectKey::Boundary {
                shard: shard(3),
                seqno: u64::MAX,
            },
            ObjectKey::Fence {
                shard: shard(4),
                slot: 64,
            },
            ObjectKey::new_part(shard(5), "w-1"),
            ObjectKey::new_txns_part(shard(6), shard(7)),
        ];
        for key in keys {
            let text = key.to_string();
            assert_eq!(text.parse::<ObjectKey>().unwrap(), key, "{text}");
        }
    }

    #[test]
    fn keys_that_are_not_ours_are_errors() {
        let s = shard(9).to_string();
        let table = [
            ("", "no such key form"),
            ("shards", "no such key form"),
            ("shards/x/head", "not a shard id"),
            (&*format!("shards/{s}/state/12"), "not a 20-digit seqno"),
            (
                &*format!("shards/{s}/state/-0000000000000000001"),
                "not a 20-digit seqno",
            ),
            (&*format!("shards/{s}/parts//p"), "empty writer id"),
            (&*format!("shards/{s}/parts/w"), "no such key form"),
            (&*format!("shards/{s}/parts/w/p/extra"), "no such key form"),
            (&*format!("txns/{s}/parts/nope/p"), "not a shard id"),
            (&*format!("shards/{s}/head.tmp"), "no such key form"),
            ("strata-format.bak", "no such key form"),
        ];
        for (key, reason) in table {
            let error = key.parse::<ObjectKey>().unwrap_err();
            assert_eq!(error.reason, reason, "{key}");
        }
    }

    #[test]
    fn prefixes_contain_their_keys() {
        let part = ObjectKey::new_part(shard(1), "w").to_string();
        assert!(part.starts_with(&format!("{}/", Prefix::Parts(shard(1)))));
        let version = ObjectKey::Version {
            shard: shard(1),
            seqno: 1,
        };
        assert!(
            version
                .to_string()
                .starts_with(&format!("{}/", Prefix::Versions(shard(1))))
        );
        let txns = ObjectKey::new_txns_part(shard(2), shard(1)).to_string();
        assert!(txns.starts_with(&format!("{}/", Prefix::TxnsParts(shard(2)))));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "[a-z0-9/_.-]{0,80}") {
            let _ = text.parse::<ObjectKey>();
        }

        #[test]
        fn numbered_keys_round_trip(bytes in any::<[u8; 16]>(), seqno in any::<u64>()) {
            let key = ObjectKey::Version { shard: ShardId::from_bytes(bytes), seqno };
            prop_assert_eq!(key.to_string().parse::<ObjectKey>().unwrap(), key);
        }
    }
}
