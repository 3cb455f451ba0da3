//! Parts: immutable Parquet files of updates, and the small inline encoding.
//!
//! A part has one Arrow column per [`RelationDesc`] column (all nullable, because an
//! error row has no datums), then `ts` (UInt64: the timestamp's 8-byte codec read as a
//! big-endian `u64`, so it sorts like the time), `diff` (Int64) and a nullable `err`
//! (Utf8). DuckDB, pyarrow or Spark can read a part as is.
//!
//! | `ScalarType` | Arrow type |
//! |---|---|
//! | Bool | Boolean |
//! | Int64 | Int64 |
//! | UInt64, TimestampMillis | UInt64 |
//! | Float64 | Float64 |
//! | String, Jsonb | Utf8 |
//! | Bytes | Binary |
//!
//! Decoding never panics: a part that is not Parquet, or whose schema does not match
//! the relation, is a [`CodecError::Part`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Encoding;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use strata_controller_api::{RelationDesc, Row, ScalarType};

use crate::columns::{ColumnsBuilder, RowsReader, downcast};
use crate::error::CodecError;

/// The data of one update: a row, or an error that the source reported in its place.
pub type SourceData = Result<Row, String>;

/// One update in the shard's internal time domain: `(data, time code, diff)`, where the
/// time code is the timestamp's 8-byte encoding as a big-endian `u64`.
pub type CodedUpdate = (SourceData, u64, i64);

fn arrow_type(scalar: ScalarType) -> DataType {
    match scalar {
        ScalarType::Bool => DataType::Boolean,
        ScalarType::Int64 => DataType::Int64,
        ScalarType::UInt64 | ScalarType::TimestampMillis => DataType::UInt64,
        ScalarType::Float64 => DataType::Float64,
        ScalarType::String | ScalarType::Jsonb => DataType::Utf8,
        ScalarType::Bytes => DataType::Binary,
    }
}

/// The Arrow schema of parts of a relation.
pub fn part_schema(desc: &RelationDesc) -> Schema {
    let mut fields: Vec<Field> = desc
        .columns()
        .map(|(name, typ)| Field::new(name, arrow_type(typ.scalar_type), true))
        .collect();
    fields.push(Field::new("ts", DataType::UInt64, false));
    fields.push(Field::new("diff", DataType::Int64, false));
    fields.push(Field::new("err", DataType::Utf8, true));
    Schema::new(fields)
}

/// Read access to an update whose data is owned ([`CodedUpdate`]) or borrowed.
pub(crate) trait UpdateView {
    fn data(&self) -> &SourceData;
    fn time(&self) -> u64;
    fn diff(&self) -> i64;
}

impl<D: Borrow<SourceData>> UpdateView for (D, u64, i64) {
    fn data(&self) -> &SourceData {
        self.0.borrow()
    }
    fn time(&self) -> u64 {
        self.1
    }
    fn diff(&self) -> i64 {
        self.2
    }
}

/// Encodes updates as one Parquet file. Rows are expected to match `desc` (the write
/// handle validates them); a datum of the wrong type is stored as NULL.
pub fn encode_part(desc: &RelationDesc, updates: &[CodedUpdate]) -> Result<Bytes, CodecError> {
    encode_updates(desc, updates)
}

/// [`encode_part`] for owned or borrowed updates.
pub(crate) fn encode_updates<U: UpdateView>(
    desc: &RelationDesc,
    updates: &[U],
) -> Result<Bytes, CodecError> {
    let fail = |e: &dyn std::fmt::Display| CodecError::Part {
        key: "<new>".into(),
        reason: e.to_string(),
    };
    let schema = Arc::new(part_schema(desc));
    let row_bytes: usize = updates
        .iter()
        .map(|u| u.data().as_ref().map_or(0, |r| r.as_bytes().len()))
        .sum();
    let mut columns = ColumnsBuilder::new(desc, updates.len(), row_bytes);
    for u in updates {
        match u.data() {
            Ok(row) => columns.push_row(row),
            Err(_) => columns.push_nulls(),
        }
    }
    let mut arrays = columns.finish()?;
    arrays.push(Arc::new(UInt64Array::from_iter_values(
        updates.iter().map(UpdateView::time),
    )));
    arrays.push(Arc::new(Int64Array::from_iter_values(
        updates.iter().map(UpdateView::diff),
    )));
    arrays.push(Arc::new(
        updates
            .iter()
            .map(|u| u.data().as_ref().err().map(String::as_str))
            .collect::<StringArray>(),
    ));
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|e| fail(&e))?;
    let mut buf = Vec::with_capacity(row_bytes + 20 * updates.len() + 1024);
    let mut writer =
        ArrowWriter::try_new(&mut buf, schema, Some(writer_properties())).map_err(|e| fail(&e))?;
    writer.write(&batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(Bytes::from(buf))
}

/// How parts are written: no page statistics (parts are always read whole) and no
/// dictionaries (a dictionary of mostly distinct values costs a hash per value and is
/// then abandoned). `ts` and `diff`, nearly constant within a part, are delta-encoded,
/// which stores a run of equal values in a few bytes.
fn writer_properties() -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_statistics_enabled(EnabledStatistics::None)
        .set_dictionary_enabled(false);
    for column in ["ts", "diff"] {
        props = props.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    props.build()
}

/// Appends the updates of `batch` to `out`: all of them, or with `as_of` only those
/// at or before it, their times advanced to `as_of`. With `as_of`, returns whether `out`
/// (what it held before, then these) still has strictly increasing data and no zero
/// diff, i.e. is consolidated as is; the check runs while each row is fresh in cache.
fn decode_batch(
    key: &str,
    desc: &RelationDesc,
    batch: &RecordBatch,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool, CodecError> {
    let fail = |reason: String| CodecError::Part {
        key: key.to_owned(),
        reason,
    };
    let arity = desc.arity();
    if batch.num_columns() != arity + 3 {
        return Err(fail(format!(
            "{} columns, the relation needs {}",
            batch.num_columns(),
            arity + 3
        )));
    }
    let ts = downcast::<UInt64Array>(key, "ts", batch.column(arity))?;
    let diff = downcast::<Int64Array>(key, "diff", batch.column(arity + 1))?;
    let err = downcast::<StringArray>(key, "err", batch.column(arity + 2))?;
    if ts.null_count() > 0 || diff.null_count() > 0 {
        let i = (0..batch.num_rows())
            .find(|i| ts.is_null(*i) || diff.is_null(*i))
            .unwrap_or_default();
        return Err(fail(format!("null ts or diff at row {i}")));
    }
    let rows = RowsReader::new(key, desc, &batch.columns()[..arity])?;
    let (ts, diff) = (ts.values(), diff.values());
    let decode = |range: std::ops::Range<usize>, out: &mut Vec<CodedUpdate>| {
        let mut strict = as_of.is_some();
        for i in range {
            let t = match as_of {
                Some(a) if ts[i] > a => continue,
                Some(a) => a,
                None => ts[i],
            };
            let data = if err.is_null(i) {
                Ok(rows.row(i)?)
            } else {
                Err(err.value(i).to_owned())
            };
            strict = strict && diff[i] != 0 && out.last().is_none_or(|p| p.0 < data);
            out.push((data, t, diff[i]));
        }
        Ok::<bool, CodecError>(strict)
    };
    let n = batch.num_rows();
    out.reserve(n);
    // Rebuilding rows dominates a snapshot's CPU time: a large batch is split in two,
    // the second half built on another thread.
    let parallel = std::thread::available_parallelism().map_or(1, |p| p.get()) > 1;
    let split = if parallel && n >= PARALLEL_DECODE_ROWS {
        n / 2
    } else {
        n
    };
    std::thread::scope(|scope| {
        let tail = (split < n).then(|| {
            scope.spawn(|| {
                let mut rest = Vec::with_capacity(n - split);
                decode(split..n, &mut rest).map(|strict| (rest, strict))
            })
        });
        let mut strict = decode(0..split, out)?;
        if let Some(tail) = tail {
            let (mut rest, tail_strict) = tail
                .join()
                .map_err(|_| fail("a decoding thread panicked".to_owned()))??;
            strict = strict
                && tail_strict
                && match (out.last(), rest.first()) {
                    (Some(p), Some(f)) => p.0 < f.0,
                    _ => true,
                };
            out.append(&mut rest);
        }
        Ok(strict)
    })
}

/// Batches of at least this many rows are rebuilt on two threads.
const PARALLEL_DECODE_ROWS: usize = 16 * 1024;

/// Decodes a part written by [`encode_part`] for the same relation.
pub fn decode_part(
    key: &str,
    desc: &RelationDesc,
    bytes: Bytes,
) -> Result<Vec<CodedUpdate>, CodecError> {
    let mut out = Vec::new();
    decode_part_into(key, desc, bytes, None, &mut out)?;
    Ok(out)
}

/// Rows per Arrow batch when decoding: large enough that per-batch costs vanish.
const DECODE_BATCH_ROWS: usize = 64 * 1024;

/// [`decode_part`], appending to `out`; with `as_of`, only the updates at or before it,
/// advanced to it, and the answer says whether `out` is still consolidated (see
/// `decode_batch`).
pub(crate) fn decode_part_into(
    key: &str,
    desc: &RelationDesc,
    bytes: Bytes,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool, CodecError> {
    let fail = |e: &dyn std::fmt::Display| CodecError::Part {
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| fail(&e))?;
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    out.reserve(rows);
    let reader = builder
        .with_batch_size(DECODE_BATCH_ROWS)
        .build()
        .map_err(|e| fail(&e))?;
    let mut consolidated = as_of.is_some();
    for batch in reader {
        let batch = batch.map_err(|e| fail(&e))?;
        consolidated &= decode_batch(key, desc, &batch, as_of, out)?;
    }
    Ok(consolidated)
}

/// Sorts updates by data and time, sums the diffs of equal `(data, time)` pairs and drops
/// zeros. The result is the canonical form of the multiset.
pub fn consolidate(updates: &mut Vec<CodedUpdate>) {
    consolidate_updates(updates);
}

/// [`consolidate`] for updates with decoded times.
pub fn consolidate_updates<T: Ord + Copy>(updates: &mut Vec<(SourceData, T, i64)>) {
    consolidate_in_place(updates);
}

/// [`consolidate`] for data owned or borrowed, in place. Input that is already
/// consolidated (a part read back, which is written consolidated) costs one pass;
/// otherwise the sort compares an 8-byte prefix of the data first, so most comparisons
/// never reach the row bytes.
pub(crate) fn consolidate_in_place<D: Borrow<SourceData>, T: Ord + Copy>(
    updates: &mut Vec<(D, T, i64)>,
) {
    let ordered = |a: &(D, T, i64), b: &(D, T, i64)| {
        sort_prefix(a.0.borrow())
            .cmp(&sort_prefix(b.0.borrow()))
            .then_with(|| (a.0.borrow(), a.1).cmp(&(b.0.borrow(), b.1)))
    };
    let (mut sorted, mut strict) = (true, true);
    for w in updates.windows(2) {
        match ordered(&w[0], &w[1]) {
            Ordering::Less => {}
            Ordering::Equal => strict = false,
            Ordering::Greater => {
                sorted = false;
                break;
            }
        }
    }
    if sorted && strict && updates.iter().all(|u| u.2 != 0) {
        return;
    }
    if !sorted {
        let mut keyed: Vec<_> = updates
            .drain(..)
            .map(|u| (sort_prefix(u.0.borrow()), u))
            .collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| ordered(&a.1, &b.1)));
        updates.extend(keyed.into_iter().map(|(_, u)| u));
    }
    updates.dedup_by(|later, kept| {
        let same = later.1 == kept.1 && later.0.borrow() == kept.0.borrow();
        if same {
            kept.2 += later.2;
        }
        same
    });
    updates.retain(|u| u.2 != 0);
}

/// A key that orders like the data's first 8 bytes (rows before errors, as
/// `Result`'s order has it); equal keys need the full comparison.
fn sort_prefix(data: &SourceData) -> (bool, u64) {
    let (is_err, bytes) = match data {
        Ok(row) => (false, row.as_bytes()),
        Err(e) => (true, e.as_bytes()),
    };
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    (is_err, u64::from_be_bytes(buf))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use strata_controller_api::Datum;

    fn desc() -> RelationDesc {
        RelationDesc::builder()
            .with_column("b", ScalarType::Bool.nullable(true))
            .with_column("i", ScalarType::Int64.nullable(false))
            .with_column("u", ScalarType::UInt64.nullable(true))
            .with_column("f", ScalarType::Float64.nullable(true))
            .with_column("s", ScalarType::String.nullable(true))
            .with_column("y", ScalarType::Bytes.nullable(true))
            .with_column("j", ScalarType::Jsonb.nullable(true))
            .with_column("t", ScalarType::TimestampMillis.nullable(true))
            .finish()
    }

    fn row(i: i64) -> Row {
        Row::pack(&[
            Datum::Bool(i % 2 == 0),
            Datum::Int64(i),
            Datum::UInt64(i as u64),
            Datum::Float64(i as f64 / 2.0),
            Datum::String(format!("s{i}")),
            Datum::Bytes(vec![i as u8]),
            Datum::Jsonb("{}".into()),
            if i % 3 == 0 {
                Datum::Null
            } else {
                Datum::TimestampMillis(7)
            },
        ])
    }

    #[test]
    fn round_trip_with_errors() {
        let updates = vec![
            (Ok(row(1)), 5, 1),
            (Err("boom".to_owned()), 6, -1),
            (Ok(row(3)), 7, 2),
        ];
        let bytes = encode_part(&desc(), &updates).unwrap();
        assert_eq!(decode_part("k", &desc(), bytes).unwrap(), updates);
    }

    #[test]
    fn a_part_decoded_on_two_threads_round_trips() {
        let n = PARALLEL_DECODE_ROWS as i64 + 101;
        let updates: Vec<CodedUpdate> = (0..n)
            .map(|i| match i % 97 {
                0 => (Err(format!("e{i}")), i as u64, -1),
                _ => (Ok(row(i)), i as u64, 1),
            })
            .collect();
        let bytes = encode_part(&desc(), &updates).unwrap();
        assert_eq!(decode_part("k", &desc(), bytes).unwrap(), updates);
    }

    #[test]
    fn decoding_at_an_as_of_filters_advances_and_tells_if_consolidated() {
        // Enough rows for the two-thread path; consolidated, as parts are written.
        let n = PARALLEL_DECODE_ROWS as i64 + 101;
        let mut updates: Vec<CodedUpdate> = (0..n)
            .map(|i| match i % 97 {
                0 => (Err(format!("e{i}")), (i % 3) as u64, -1),
                _ => (Ok(row(i)), (i % 3) as u64, 1),
            })
            .collect();
        consolidate(&mut updates);
        let bytes = encode_part(&desc(), &updates).unwrap();
        let mut want: Vec<CodedUpdate> = updates.clone();
        crate::batch::advance_to(&mut want, 1);
        consolidate(&mut want);
        let mut out = Vec::new();
        let consolidated = decode_part_into("k", &desc(), bytes.clone(), Some(1), &mut out);
        assert!(consolidated.unwrap());
        assert_eq!(out, want);
        // The same part again: the data no longer increases, and consolidating sums.
        let again = decode_part_into("k", &desc(), bytes.clone(), Some(1), &mut out);
        assert!(!again.unwrap());
        consolidate(&mut out);
        let doubled: Vec<CodedUpdate> = want
            .iter()
            .map(|(d, t, r)| (d.clone(), *t, 2 * r))
            .collect();
        assert_eq!(out, doubled);
        // Without an as_of every update comes back, and nothing is claimed.
        let mut all = Vec::new();
        assert!(!decode_part_into("k", &desc(), bytes, None, &mut all).unwrap());
        assert_eq!(all, updates);
    }

    #[test]
    fn corrupt_and_mismatched_parts_are_typed_errors() {
        let check = |bytes: Bytes, d: &RelationDesc| {
            assert!(matches!(
                decode_part("k", d, bytes),
                Err(CodecError::Part { .. })
            ));
        };
        check(Bytes::from_static(b"not parquet at all"), &desc());
        check(Bytes::new(), &desc());
        let good = encode_part(&desc(), &[(Ok(row(1)), 1, 1)]).unwrap();
        check(good.slice(..good.len() / 2), &desc());
        check(good.clone(), &RelationDesc::empty());
        let swapped = RelationDesc::builder()
            .with_column("x", ScalarType::String.nullable(true))
            .finish();
        let other = encode_part(
            &swapped,
            &[(Ok(Row::pack(&[Datum::String("a".into())])), 1, 1)],
        )
        .unwrap();
        let int_desc = RelationDesc::builder()
            .with_column("x", ScalarType::Int64.nullable(true))
            .finish();
        check(other, &int_desc);
    }

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
    }
}
