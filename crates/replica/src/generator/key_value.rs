//! `key-value`: updates and retractions over a bounded key space.
//!
//! Offset `n` writes key `n % keys` with a value drawn from `(seed, n)`. From offset
//! `keys` on, it also retracts the value the same key got at offset `n - keys`, so the
//! collection always holds at most one row per key, and which row is a pure function of
//! the offset.

use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, SourceOutput};

use super::{GeneratedUpdate, mix};

pub(super) fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("key", ScalarType::UInt64.nullable(false))
        .with_column("value", ScalarType::UInt64.nullable(false))
        .with_column("offset", ScalarType::UInt64.nullable(false))
        .finish()
}

fn row(seed: u64, keys: u64, offset: u64) -> Row {
    let value = mix(seed, offset) % 1_000_000;
    Row::pack(&[
        Datum::UInt64(offset % keys),
        Datum::UInt64(value),
        Datum::UInt64(offset),
    ])
}

pub(super) fn updates_at(seed: u64, keys: u64, offset: u64) -> Vec<GeneratedUpdate> {
    let mut updates = Vec::with_capacity(2);
    if let Some(previous) = offset.checked_sub(keys) {
        updates.push((SourceOutput::Primary, row(seed, keys, previous), -1));
    }
    updates.push((SourceOutput::Primary, row(seed, keys, offset), 1));
    updates
}
