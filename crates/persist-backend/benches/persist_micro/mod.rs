//! The persist suite's micro-benchmarks, as criterion groups run from `persist.rs`'s
//! `main`, each with its baseline beside it:
//!
//! - `consolidate`: [`consolidate`] of 100k updates (25k distinct rows at 4 times,
//!   diffs of ±1, in random order), against the textbook consolidation: sort the
//!   updates by `(data, time)` with full comparisons, sum neighbours, drop zeros;
//! - `row_encode`: [`Row::pack`] of 10k rows of an integer, a string and a float,
//!   against writing the same datums at fixed width into a `Vec<u8>` per row (one
//!   allocation per row, like a row's own buffer; no tags, no varints);
//! - `row_decode`: [`Row::unpack`] of those rows, against reading the fixed-width
//!   buffers back with the types known in advance.

use strata_bench_support::micro::criterion::{BatchSize, Criterion};
use strata_bench_support::micro::{Group, compare};
use strata_bench_support::{Mode, XorShift};
use strata_controller_api::{Datum, Row};
use strata_persist_backend::CodedUpdate;
use strata_persist_backend::part::consolidate;

fn updates(n: u64) -> Vec<CodedUpdate> {
    let mut rng = XorShift::new(0x5eed_c0de_0000_0001);
    let distinct = (n / 4).max(1);
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            let data = Ok(super::row(r % distinct));
            let diff = if r >> 63 == 0 { 1 } else { -1 };
            (data, (r >> 8) % 4, diff)
        })
        .collect()
}

/// The baseline: sort by `(data, time)`, sum equal neighbours, drop zeros.
fn sort_and_merge(mut updates: Vec<CodedUpdate>) -> Vec<CodedUpdate> {
    updates.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    updates.dedup_by(|later, kept| {
        let equal = later.0 == kept.0 && later.1 == kept.1;
        if equal {
            kept.2 += later.2;
        }
        equal
    });
    updates.retain(|u| u.2 != 0);
    updates
}

/// Consolidation against sorting and merging.
pub(crate) fn consolidation(c: &mut Criterion, mode: Mode) {
    let input = updates(mode.scale(100_000, 1_000));
    let mut ours = input.clone();
    consolidate(&mut ours);
    assert_eq!(ours, sort_and_merge(input.clone()), "both sides agree");
    let spec = Group {
        group: "consolidate",
        name: "consolidate_updates",
        baseline_name: "sort_and_merge_updates",
        per: "update",
        elements: input.len() as u64,
    };
    compare(
        c,
        mode,
        &spec,
        |b| {
            b.iter_batched(
                || input.clone(),
                |mut updates| {
                    consolidate(&mut updates);
                    updates
                },
                BatchSize::LargeInput,
            )
        },
        |b| b.iter_batched(|| input.clone(), sort_and_merge, BatchSize::LargeInput),
    );
}

fn datums(n: u64) -> Vec<[Datum; 3]> {
    (0..n)
        .map(|i| {
            [
                Datum::Int64(i as i64 * 7919 - 1_000_000),
                Datum::String(format!("row-{i:012}-abcdefghijklmnop")),
                Datum::Float64(i as f64 * 0.25),
            ]
        })
        .collect()
}

/// The baseline encoding of one row: each datum at fixed width (a string with a `u32`
/// length).
fn write_raw(row: &[Datum; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    for datum in row {
        match datum {
            Datum::Int64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Datum::Float64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Datum::String(s) => {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            other => unreachable!("not in the workload: {other:?}"),
        }
    }
    out
}

/// Reads a row of [`write_raw`]'s layout back, types known in advance.
fn read_raw(mut bytes: &[u8]) -> Vec<Datum> {
    let mut take = |len: usize| {
        let (head, rest) = bytes.split_at(len);
        bytes = rest;
        head
    };
    let int = i64::from_le_bytes(take(8).try_into().unwrap());
    let len = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
    let string = String::from_utf8(take(len).to_vec()).unwrap();
    let float = f64::from_le_bytes(take(8).try_into().unwrap());
    vec![
        Datum::Int64(int),
        Datum::String(string),
        Datum::Float64(float),
    ]
}

/// Row encode and decode against the fixed-width floor.
pub(crate) fn rows(c: &mut Criterion, mode: Mode) {
    let datums = datums(mode.scale(10_000, 100));
    let packed: Vec<Row> = datums.iter().map(Row::pack).collect();
    let raw: Vec<Vec<u8>> = datums.iter().map(write_raw).collect();
    let unpacked: Vec<Vec<Datum>> = packed.iter().map(Row::unpack).collect();
    assert_eq!(
        raw.iter().map(|r| read_raw(r)).collect::<Vec<_>>(),
        unpacked
    );
    let encode = Group {
        group: "row_encode",
        name: "row_pack",
        baseline_name: "fixed_width_write_same_datums",
        per: "row",
        elements: datums.len() as u64,
    };
    compare(
        c,
        mode,
        &encode,
        |b| b.iter(|| datums.iter().map(Row::pack).collect::<Vec<_>>()),
        |b| b.iter(|| datums.iter().map(write_raw).collect::<Vec<_>>()),
    );
    let decode = Group {
        group: "row_decode",
        name: "row_unpack",
        baseline_name: "fixed_width_read_same_datums",
        per: "row",
        elements: datums.len() as u64,
    };
    compare(
        c,
        mode,
        &decode,
        |b| b.iter(|| packed.iter().map(Row::unpack).collect::<Vec<_>>()),
        |b| b.iter(|| raw.iter().map(|r| read_raw(r)).collect::<Vec<_>>()),
    );
}
