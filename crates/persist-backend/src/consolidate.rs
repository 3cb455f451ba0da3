//! Consolidation: the canonical form of a multiset of updates, sorted by data and time
//! with the diffs of equal `(data, time)` pairs summed and zeros dropped.
//!
//! Every part is written consolidated, so this sits on the append path. It sorts a
//! permutation, not the updates: each update is keyed by an integer made of the first
//! 8 bytes of its data and its position, and those integers sort without touching the
//! rows; only updates whose first 8 bytes tie are compared in full.

use std::borrow::Borrow;
use std::cmp::Ordering;

use crate::part::{CodedUpdate, SourceData};

/// Consolidates updates in the shard's time domain.
pub fn consolidate(updates: &mut Vec<CodedUpdate>) {
    consolidate_in_place(updates);
}

/// [`consolidate`] for updates with decoded times.
pub fn consolidate_updates<T: Ord + Copy>(updates: &mut Vec<(SourceData, T, i64)>) {
    consolidate_in_place(updates);
}

/// [`consolidate`] for data owned or borrowed, in place. Input that is already
/// consolidated (a part read back, which is written consolidated) costs one pass.
pub(crate) fn consolidate_in_place<D: Borrow<SourceData>, T: Ord + Copy>(
    updates: &mut Vec<(D, T, i64)>,
) {
    if is_consolidated(updates) {
        return;
    }
    let Ok(len) = u32::try_from(updates.len()) else {
        // Beyond the permutation's index range: sort the updates themselves.
        updates.sort_unstable_by(full_order);
        return merge_sorted(updates, |a, b| a.1 == b.1 && a.0.borrow() == b.0.borrow());
    };
    // Key: [is error | 8 prefix bytes | index]; sorting the keys orders by prefix and
    // keeps ties in input order, to be broken by a full comparison below.
    let mut keys: Vec<u128> = updates
        .iter()
        .zip(0..len)
        .map(|(u, i)| (prefix_key(u.0.borrow()) << 32) | u128::from(i))
        .collect();
    keys.sort_unstable();
    let index = |k: u128| (k & u128::from(u32::MAX)) as usize;
    let mut start = 0;
    while start < keys.len() {
        let prefix = keys[start] >> 32;
        let end = keys[start..]
            .iter()
            .position(|k| k >> 32 != prefix)
            .map_or(keys.len(), |n| start + n);
        if end - start > 1 {
            keys[start..end]
                .sort_unstable_by(|a, b| full_order(&updates[index(*a)], &updates[index(*b)]));
        }
        start = end;
    }
    // Move the updates into key order in place, one cycle of the permutation at a
    // time: each update moves once, and nothing is allocated. A placed key is marked
    // by its top bit.
    const PLACED: u128 = 1 << 127;
    for start in 0..keys.len() {
        if keys[start] & PLACED != 0 {
            continue;
        }
        let mut at = start;
        loop {
            keys[at] |= PLACED;
            let from = index(keys[at]);
            if from == start {
                break;
            }
            updates.swap(at, from);
            at = from;
        }
    }
    // Merge neighbours with equal data and time. Neighbours whose prefixes differ
    // cannot be equal, so they skip the comparison.
    let mut kept = 0;
    for i in 0..updates.len() {
        let merge = i > 0
            && (keys[i] & !PLACED) >> 32 == (keys[kept - 1] & !PLACED) >> 32
            && updates[kept - 1].1 == updates[i].1
            && updates[kept - 1].0.borrow() == updates[i].0.borrow();
        if merge {
            updates[kept - 1].2 += updates[i].2;
        } else {
            updates.swap(kept, i);
            keys[kept] = keys[i];
            kept += 1;
        }
    }
    updates.truncate(kept);
    updates.retain(|u| u.2 != 0);
}

/// Whether the updates are strictly increasing by `(data, time)` with no zero diff.
fn is_consolidated<D: Borrow<SourceData>, T: Ord + Copy>(updates: &[(D, T, i64)]) -> bool {
    updates.iter().all(|u| u.2 != 0)
        && updates
            .windows(2)
            .all(|w| full_order(&w[0], &w[1]) == Ordering::Less)
}

/// Sums the diffs of neighbours that `same` says are equal, then drops zeros.
fn merge_sorted<D, T>(
    updates: &mut Vec<(D, T, i64)>,
    same: impl Fn(&(D, T, i64), &(D, T, i64)) -> bool,
) {
    updates.dedup_by(|later, kept| {
        let equal = same(later, kept);
        if equal {
            kept.2 += later.2;
        }
        equal
    });
    updates.retain(|u| u.2 != 0);
}

/// The order of consolidated updates: by data (rows before errors), then time.
fn full_order<D: Borrow<SourceData>, T: Ord>(a: &(D, T, i64), b: &(D, T, i64)) -> Ordering {
    (a.0.borrow(), &a.1).cmp(&(b.0.borrow(), &b.1))
}

/// A 65-bit integer that orders like the data's first 8 bytes, rows before errors (as
/// `Result`'s order has it). Equal keys need the full comparison.
fn prefix_key(data: &SourceData) -> u128 {
    let (is_err, bytes) = match data {
        Ok(row) => (false, row.as_bytes()),
        Err(e) => (true, e.as_bytes()),
    };
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    (u128::from(is_err) << 64) | u128::from(u64::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_controller_api::{Datum, Row};

    proptest! {
        #[test]
        fn consolidate_matches_a_model(raw in proptest::collection::vec((0i64..6, 0u64..3, -2i64..3), 0..40)) {
            // Rows that share and that differ in their first 8 bytes, and errors.
            let data = |r: i64| -> SourceData {
                match r {
                    4 => Err("err-a".to_owned()),
                    5 => Err("err-abcdefghij".to_owned()),
                    r => Ok(Row::pack(&[Datum::String("prefix-".repeat(r as usize % 2 + 1)), Datum::Int64(r)])),
                }
            };
            let mut updates: Vec<CodedUpdate> = raw.iter().map(|(r, t, d)| (data(*r), *t, *d)).collect();
            let mut model = std::collections::BTreeMap::new();
            for (data, t, d) in &updates {
                *model.entry((data.clone(), *t)).or_insert(0i64) += d;
            }
            model.retain(|_, d| *d != 0);
            consolidate(&mut updates);
            let got: Vec<_> = updates.into_iter().map(|(data, t, d)| ((data, t), d)).collect();
            let want: Vec<_> = model.into_iter().collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn borrowed_data_consolidates_like_owned(raw in proptest::collection::vec((0i64..50, 0u64..2, -1i64..2), 0..200)) {
            let owned: Vec<CodedUpdate> = raw
                .iter()
                .map(|(r, t, d)| (Ok(Row::pack(&[Datum::Int64(*r)])), *t, *d))
                .collect();
            let mut borrowed: Vec<(&SourceData, u64, i64)> =
                owned.iter().map(|(d, t, r)| (d, *t, *r)).collect();
            consolidate_in_place(&mut borrowed);
            let mut want = owned.clone();
            want.sort_by(full_order);
            merge_sorted(&mut want, |a, b| a.0 == b.0 && a.1 == b.1);
            let got: Vec<CodedUpdate> = borrowed.into_iter().map(|(d, t, r)| (d.clone(), t, r)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
