//! Identifiers: collections ([`GlobalId`]), shards ([`ShardId`]), instances and replicas.
//!
//! Every identifier has a stable text form (`Display`) and parses back from it with
//! `FromStr`, so ids survive a trip through a file, a URL, a proto message or a log line.
//! Parsing never panics: bad text is an [`IdParseError`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Text that is not a valid identifier of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {text:?}: {reason}")]
pub struct IdParseError {
    /// Which kind of id was expected (`global`, `shard`, `instance`, `replica`).
    pub kind: &'static str,
    /// The text that failed to parse.
    pub text: String,
    /// Why it failed.
    pub reason: &'static str,
}

fn parse_prefixed_u64(kind: &'static str, text: &str, prefix: &str) -> Result<u64, IdParseError> {
    let err = |reason| IdParseError {
        kind,
        text: text.to_owned(),
        reason,
    };
    let digits = text
        .strip_prefix(prefix)
        .ok_or_else(|| err("wrong prefix"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("expected decimal digits after the prefix"));
    }
    digits.parse().map_err(|_| err("number out of range"))
}

/// The identifier of a collection (a table, source, subsource, sink or system collection).
///
/// The text form is `s{n}`, `u{n}` or `t{n}`. Ids order by namespace first (system <
/// user < transient), then by number, which is the order in which the controller
/// propagates read capability changes (largest first).
///
/// # Examples
///
/// ```
/// use strata_controller_api::GlobalId;
/// let id: GlobalId = "u42".parse().unwrap();
/// assert_eq!(id, GlobalId::User(42));
/// assert_eq!(id.to_string(), "u42");
/// assert!(GlobalId::System(7) < GlobalId::User(1));
/// assert!("x1".parse::<GlobalId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GlobalId {
    /// A system collection, such as an introspection collection.
    System(u64),
    /// A user collection.
    User(u64),
    /// A transient collection that does not survive a restart.
    Transient(u64),
}

impl GlobalId {
    /// Whether this is a user id.
    pub fn is_user(&self) -> bool {
        matches!(self, GlobalId::User(_))
    }

    /// Whether this is a system id.
    pub fn is_system(&self) -> bool {
        matches!(self, GlobalId::System(_))
    }

    /// Whether this is a transient id.
    pub fn is_transient(&self) -> bool {
        matches!(self, GlobalId::Transient(_))
    }
}

impl fmt::Display for GlobalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalId::System(n) => write!(f, "s{n}"),
            GlobalId::User(n) => write!(f, "u{n}"),
            GlobalId::Transient(n) => write!(f, "t{n}"),
        }
    }
}

impl FromStr for GlobalId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes().first() {
            Some(b's') => parse_prefixed_u64("global", s, "s").map(GlobalId::System),
            Some(b'u') => parse_prefixed_u64("global", s, "u").map(GlobalId::User),
            Some(b't') => parse_prefixed_u64("global", s, "t").map(GlobalId::Transient),
            _ => Err(IdParseError {
                kind: "global",
                text: s.to_owned(),
                reason: "expected s, u or t prefix",
            }),
        }
    }
}

/// The identifier of a durable shard: 16 random bytes, shown as `s` followed by a
/// hyphenated lowercase UUID.
///
/// # Examples
///
/// ```
/// use strata_controller_api::ShardId;
/// let id = ShardId::from_bytes([7; 16]);
/// let text = id.to_string();
/// assert_eq!(text, "s07070707-0707-0707-0707-070707070707");
/// assert_eq!(text.parse::<ShardId>().unwrap(), id);
/// assert!("s1234".parse::<ShardId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId([u8; 16]);

impl ShardId {
    /// A shard id from its 16 bytes. Callers that need a fresh id draw the bytes at random.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ShardId(bytes)
    }

    /// The 16 bytes of this id.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Into a buffer and out in one write: shard ids are formatted into every object
        // key, and a `write!` per byte was a tenth of creating 10k tables.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 37];
        text[0] = b's';
        let mut at = 1;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                text[at] = b'-';
                at += 1;
            }
            text[at] = HEX[usize::from(b >> 4)];
            text[at + 1] = HEX[usize::from(b & 0xf)];
            at += 2;
        }
        // Only ASCII was written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for ShardId {
    type Err = IdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| IdParseError {
            kind: "shard",
            text: s.to_owned(),
            reason,
        };
        let body = s
            .strip_prefix('s')
            .ok_or_else(|| err("expected s prefix"))?;
        let hex: Vec<u8> = body.bytes().filter(|b| *b != b'-').collect();
        let dashes = body.len() - hex.len();
        if hex.len() != 32 || dashes != 4 {
            return Err(err("expected a hyphenated uuid"));
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or_else(|| err("non-hex digit"))?;
            let lo = hex_val(pair[1]).ok_or_else(|| err("non-hex digit"))?;
            out[i] = hi << 4 | lo;
        }
        let canonical = ShardId(out);
        if canonical.to_string() != s.to_ascii_lowercase() {
            return Err(err("dashes in the wrong places"));
        }
        Ok(canonical)
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

macro_rules! numbered_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_prefixed_u64($kind, s, $prefix).map($name)
            }
        }
    };
}

numbered_id!(
    /// The identifier of an instance: a set of replicas that run the same dataflows.
    /// Its text form is `i{n}`.
    InstanceId,
    "i",
    "instance"
);

numbered_id!(
    /// The identifier of a replica within an instance. Its text form is `r{n}`.
    ReplicaId,
    "r",
    "replica"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_id_round_trips_and_rejects() {
        for (text, ok) in [
            ("s0", true),
            ("u18446744073709551615", true),
            ("t9", true),
            ("u18446744073709551616", false),
            ("u", false),
            ("u-1", false),
            ("", false),
            ("U1", false),
        ] {
            let parsed = text.parse::<GlobalId>();
            assert_eq!(parsed.is_ok(), ok, "{text}");
            if let Ok(id) = parsed {
                assert_eq!(id.to_string(), text);
            }
        }
    }

    #[test]
    fn shard_id_text_is_the_hyphenated_uuid() {
        let bytes: [u8; 16] = std::array::from_fn(|i| ((i as u8) * 0x11) ^ 0x0f);
        assert_eq!(
            ShardId::from_bytes(bytes).to_string(),
            "s0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        assert_eq!(
            ShardId::from_bytes([0; 16]).to_string(),
            "s00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn shard_id_rejects_malformed() {
        let good = ShardId::from_bytes([0xab; 16]).to_string();
        assert!(good.parse::<ShardId>().is_ok());
        assert!(good.replace('-', "").parse::<ShardId>().is_err());
        assert!(good.replacen('a', "g", 1).parse::<ShardId>().is_err());
        assert!(good[1..].parse::<ShardId>().is_err());
        assert!(
            "s0000000-00000-000-0000-000000000000"
                .parse::<ShardId>()
                .is_err()
        );
    }

    #[test]
    fn instance_and_replica_ids() {
        assert_eq!("i3".parse::<InstanceId>().unwrap(), InstanceId(3));
        assert_eq!(ReplicaId(5).to_string(), "r5");
        assert!("r5".parse::<InstanceId>().is_err());
    }
}
