//! The encoding of [`CatalogContents`] (the state type every catalog shares) as rows of
//! the metadata shard.
//!
//! The metadata shard holds a small differential collection of `(kind, key, value)`
//! text rows, each present with multiplicity one:
//!
//! | kind | key | value |
//! |---|---|---|
//! | `epoch` | `""` | the epoch, decimal, positive |
//! | `txns_shard` | `""` | the txns shard id |
//! | `collection` | a collection id | its data shard id |
//! | `unfinalized` | a shard id | `""` |
//!
//! Decoding is total: a row that does not decode, has another multiplicity, or
//! contradicts another row is a [`CatalogError::CorruptRow`], never a panic. Pure
//! functions only; no I/O.

use std::collections::{BTreeMap, BTreeSet};

pub use strata_controller_api::CatalogContents;
use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType, ShardId};
use strata_persist_backend::SourceData;

use super::error::{CatalogError, Result};

const EPOCH: &str = "epoch";
const TXNS_SHARD: &str = "txns_shard";
const COLLECTION: &str = "collection";
const UNFINALIZED: &str = "unfinalized";

/// The relation of the metadata shard: three non-null text columns.
pub(crate) fn catalog_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("kind", ScalarType::String.nullable(false))
        .with_column("key", ScalarType::String.nullable(false))
        .with_column("value", ScalarType::String.nullable(false))
        .finish()
}

/// One catalog row.
pub(crate) fn row(kind: &str, key: &str, value: &str) -> Row {
    Row::pack(&[
        Datum::String(kind.to_owned()),
        Datum::String(key.to_owned()),
        Datum::String(value.to_owned()),
    ])
}

/// The rows that represent `contents`.
pub(crate) fn encode(contents: &CatalogContents) -> BTreeSet<Row> {
    let mut rows = BTreeSet::new();
    if contents.epoch > 0 {
        rows.insert(row(EPOCH, "", &contents.epoch.to_string()));
    }
    if let Some(shard) = contents.txns_shard {
        rows.insert(row(TXNS_SHARD, "", &shard.to_string()));
    }
    for (id, shard) in &contents.collection_metadata {
        rows.insert(row(COLLECTION, &id.to_string(), &shard.to_string()));
    }
    for shard in &contents.unfinalized_shards {
        rows.insert(row(UNFINALIZED, &shard.to_string(), ""));
    }
    rows
}

/// The updates that turn `from` into `to`: retractions of rows only in `from`,
/// insertions of rows only in `to`.
pub(crate) fn diff(from: &CatalogContents, to: &CatalogContents) -> Vec<(Row, i64)> {
    let (old, new) = (encode(from), encode(to));
    let retract = old.difference(&new).map(|r| (r.clone(), -1));
    let insert = new.difference(&old).map(|r| (r.clone(), 1));
    retract.chain(insert).collect()
}

/// Replays the changes that turn `base` into `desired` on top of `latest`: rows that
/// `desired` removed are removed if still there, rows it added are added if absent.
/// Epochs take no part; the result has `latest`'s. Fails with
/// [`CatalogError::Conflict`] if the result breaks an invariant (a concurrent commit
/// mapped the same id or shard, or wrote another txns shard).
pub(crate) fn rebase(
    shard: ShardId,
    base: &CatalogContents,
    desired: &CatalogContents,
    latest: &CatalogContents,
) -> Result<CatalogContents> {
    let strip = |c: &CatalogContents| {
        encode(&CatalogContents {
            epoch: 0,
            ..c.clone()
        })
    };
    let (old, new, mut rows) = (strip(base), strip(desired), strip(latest));
    for r in old.difference(&new) {
        rows.remove(r);
    }
    rows.extend(new.difference(&old).cloned());
    let mut merged = decode(shard, rows.into_iter().map(|r| (Ok(r), 1))).map_err(|e| match e {
        CatalogError::CorruptRow { reason, .. } => CatalogError::Conflict { shard, reason },
        other => other,
    })?;
    merged.epoch = latest.epoch;
    Ok(merged)
}

fn render(data: &SourceData) -> String {
    match data {
        Ok(row) => {
            let datums: Vec<String> = row.unpack().iter().map(ToString::to_string).collect();
            format!("({})", datums.join(", "))
        }
        Err(err) => format!("error row {err:?}"),
    }
}

/// Decodes a consolidated snapshot of the metadata shard.
pub(crate) fn decode(
    shard: ShardId,
    updates: impl IntoIterator<Item = (SourceData, i64)>,
) -> Result<CatalogContents> {
    let mut contents = CatalogContents::default();
    let mut shard_owner: BTreeMap<ShardId, GlobalId> = BTreeMap::new();
    for (data, diff) in updates {
        let corrupt = |reason: String| CatalogError::CorruptRow {
            shard,
            row: render(&data),
            reason,
        };
        if diff != 1 {
            return Err(corrupt(format!("multiplicity {diff}, expected 1")));
        }
        let Ok(row) = &data else {
            return Err(corrupt("the catalog holds no error rows".into()));
        };
        let (kind, key, value) = match row.unpack().as_slice() {
            [Datum::String(k), Datum::String(key), Datum::String(v)] => {
                (k.clone(), key.clone(), v.clone())
            }
            _ => return Err(corrupt("expected three text columns".into())),
        };
        decode_one(&mut contents, &mut shard_owner, &kind, &key, &value).map_err(corrupt)?;
    }
    Ok(contents)
}

fn parse_shard(text: &str) -> Result<ShardId, String> {
    text.parse::<ShardId>().map_err(|e| e.to_string())
}

fn decode_one(
    contents: &mut CatalogContents,
    shard_owner: &mut BTreeMap<ShardId, GlobalId>,
    kind: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let empty = |what: &str, text: &str| match text.is_empty() {
        true => Ok(()),
        false => Err(format!("{what} of a {kind} row must be empty")),
    };
    match kind {
        EPOCH => {
            empty("key", key)?;
            let epoch: u64 = value
                .parse()
                .map_err(|_| format!("epoch {value:?} is not a decimal number"))?;
            if epoch == 0 {
                return Err("epoch must be positive".into());
            }
            if contents.epoch != 0 {
                return Err(format!(
                    "second epoch row, epoch is already {}",
                    contents.epoch
                ));
            }
            contents.epoch = epoch;
        }
        TXNS_SHARD => {
            empty("key", key)?;
            let txns = parse_shard(value)?;
            if let Some(existing) = contents.txns_shard {
                return Err(format!("second txns shard row, it is already {existing}"));
            }
            contents.txns_shard = Some(txns);
        }
        COLLECTION => {
            let id: GlobalId = key
                .parse()
                .map_err(|e: strata_controller_api::IdParseError| e.to_string())?;
            let data = parse_shard(value)?;
            if let Some(existing) = contents.collection_metadata.get(&id) {
                return Err(format!("{id} already maps to {existing}"));
            }
            if let Some(other) = shard_owner.insert(data, id) {
                return Err(format!("shard {data} already backs {other}"));
            }
            contents.collection_metadata.insert(id, data);
        }
        UNFINALIZED => {
            empty("value", value)?;
            contents.unfinalized_shards.insert(parse_shard(key)?);
        }
        other => return Err(format!("unknown kind {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    fn shard() -> ShardId {
        s(0xcc)
    }

    /// Decodes `rows` (each with its diff) and compares with `expected`: the contents,
    /// or a substring of the corruption reason.
    fn check(rows: &[(Result<Row, &str>, i64)], expected: Result<CatalogContents, &str>) {
        let updates = rows
            .iter()
            .map(|(r, d)| (r.clone().map_err(str::to_owned), *d));
        match (decode(shard(), updates), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(CatalogError::CorruptRow { reason, .. }), Err(want)) => {
                assert!(reason.contains(want), "reason {reason:?} lacks {want:?}");
            }
            (got, want) => panic!("decode gave {got:?}, expected {want:?}"),
        }
    }

    fn full() -> CatalogContents {
        CatalogContents {
            collection_metadata: BTreeMap::from([
                (GlobalId::User(1), s(1)),
                (GlobalId::System(2), s(2)),
            ]),
            unfinalized_shards: BTreeSet::from([s(3), s(4)]),
            txns_shard: Some(s(5)),
            epoch: 7,
        }
    }

    #[test]
    fn decode_cases() {
        let ok = |r: Row| (Ok(r), 1);
        check(&[], Ok(CatalogContents::default()));
        let rows: Vec<_> = encode(&full()).into_iter().map(ok).collect();
        check(&rows, Ok(full()));
        let sh = s(1).to_string();
        check(&[ok(row("epoch", "", "x"))], Err("not a decimal"));
        check(&[ok(row("epoch", "", "0"))], Err("positive"));
        check(&[ok(row("epoch", "k", "1"))], Err("key of a epoch row"));
        check(
            &[ok(row("epoch", "", "1")), ok(row("epoch", "", "2"))],
            Err("second epoch"),
        );
        check(
            &[ok(row("txns_shard", "", "nope"))],
            Err("invalid shard id"),
        );
        check(
            &[
                ok(row("txns_shard", "", &sh)),
                ok(row("txns_shard", "", &s(2).to_string())),
            ],
            Err("second txns"),
        );
        check(
            &[ok(row("collection", "x1", &sh))],
            Err("invalid global id"),
        );
        check(
            &[ok(row("collection", "u1", "s1"))],
            Err("invalid shard id"),
        );
        check(
            &[
                ok(row("collection", "u1", &sh)),
                ok(row("collection", "u2", &sh)),
            ],
            Err("already backs u1"),
        );
        check(
            &[
                ok(row("collection", "u1", &sh)),
                ok(row("collection", "u1", &s(2).to_string())),
            ],
            Err("already maps"),
        );
        check(
            &[ok(row("unfinalized", &sh, "x"))],
            Err("value of a unfinalized row"),
        );
        check(&[ok(row("mystery", "", ""))], Err("unknown kind"));
        check(&[(Ok(row("epoch", "", "1")), 2)], Err("multiplicity 2"));
        check(&[(Ok(row("epoch", "", "1")), -1)], Err("multiplicity -1"));
        check(&[(Err("boom"), 1)], Err("no error rows"));
        check(
            &[ok(Row::pack(&[Datum::Int64(1)]))],
            Err("three text columns"),
        );
    }

    /// Rebases `base -> desired` onto `latest` (mappings as `(id, shard)` pairs) and
    /// compares with the expected mapping, or a substring of the conflict reason.
    fn check_rebase(
        base: &[(u64, u8)],
        desired: &[(u64, u8)],
        latest: &[(u64, u8)],
        expected: Result<&[(u64, u8)], &str>,
    ) {
        let contents = |pairs: &[(u64, u8)]| CatalogContents {
            collection_metadata: pairs
                .iter()
                .map(|(i, sh)| (GlobalId::User(*i), s(*sh)))
                .collect(),
            epoch: 3,
            ..CatalogContents::default()
        };
        let got = rebase(
            shard(),
            &contents(base),
            &contents(desired),
            &contents(latest),
        );
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, contents(want)),
            (Err(CatalogError::Conflict { reason, .. }), Err(want)) => {
                assert!(reason.contains(want), "reason {reason:?} lacks {want:?}");
            }
            (got, want) => panic!("rebase gave {got:?}, expected {want:?}"),
        }
    }

    #[test]
    fn rebase_cases() {
        check_rebase(&[], &[(1, 1)], &[], Ok(&[(1, 1)]));
        check_rebase(&[], &[(1, 1)], &[(2, 2)], Ok(&[(1, 1), (2, 2)]));
        check_rebase(&[(1, 1)], &[], &[(1, 1), (2, 2)], Ok(&[(2, 2)]));
        check_rebase(&[(1, 1)], &[], &[(2, 2)], Ok(&[(2, 2)]));
        check_rebase(&[], &[(1, 1)], &[(1, 1)], Ok(&[(1, 1)]));
        check_rebase(&[(1, 1)], &[(1, 1)], &[(3, 3)], Ok(&[(3, 3)]));
        check_rebase(&[], &[(1, 1)], &[(1, 2)], Err("already maps"));
        check_rebase(&[], &[(1, 1)], &[(2, 1)], Err("already backs"));
    }

    #[test]
    fn diff_turns_one_version_into_another() {
        let from = full();
        let mut to = full();
        to.epoch = 8;
        to.collection_metadata.remove(&GlobalId::User(1));
        to.unfinalized_shards.insert(s(1));
        let updates = diff(&from, &to);
        assert_eq!(updates.iter().filter(|(_, d)| *d == -1).count(), 2);
        assert_eq!(updates.iter().filter(|(_, d)| *d == 1).count(), 2);
        let mut rows: BTreeMap<Row, i64> = encode(&from).into_iter().map(|r| (r, 1)).collect();
        for (r, d) in updates {
            *rows.entry(r).or_default() += d;
        }
        rows.retain(|_, d| *d != 0);
        let decoded = decode(shard(), rows.into_iter().map(|(r, d)| (Ok(r), d))).unwrap();
        assert_eq!(decoded, to);
        assert!(diff(&to, &to).is_empty());
    }
}
