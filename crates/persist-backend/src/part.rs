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
//! A part may be decoded under another version of its relation (schema evolution adds
//! nullable columns at the end, see [`strata_controller_api::check_evolution`]): the
//! columns both have are read, columns only the part has are left out, and columns
//! only the relation has read as NULL. Decoding never panics: a part that is not
//! Parquet, or whose columns do not fit the relation so, is a [`CodecError::Part`].

use std::borrow::Borrow;
use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Encoding;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::ChunkReader;
use parquet::schema::types::ColumnPath;
use strata_controller_api::{RelationDesc, RowsPacker, ScalarType};

use crate::columns::{ColumnsBuilder, RowsReader, downcast};
use crate::error::CodecError;

pub use crate::update::{CodedUpdate, SourceData};

pub use crate::consolidate::{consolidate, consolidate_updates};
pub use crate::part_write::MAX_PARTS_PER_APPEND;

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

/// [`encode_part`] for owned or borrowed updates. The updates become row groups of at
/// most [`ROW_GROUP_ROWS`]; a large part encodes its row groups on two threads.
pub(crate) fn encode_updates<U: UpdateView + Sync>(
    desc: &RelationDesc,
    updates: &[U],
) -> Result<Bytes, CodecError> {
    let fail = |e: &dyn std::fmt::Display| part_error(NEW_PART, e);
    let n = updates.len();
    let per_group = n.div_ceil(n.div_ceil(ROW_GROUP_ROWS).max(1)).max(1);
    let schema = Arc::new(part_schema(desc));
    let mut buf = Vec::with_capacity(data_bytes(updates) + 20 * n + 1024);
    let writer = ArrowWriter::try_new(&mut buf, Arc::clone(&schema), Some(writer_properties()))
        .map_err(|e| fail(&e))?;
    let (mut file, factory) = writer.into_serialized_writer().map_err(|e| fail(&e))?;
    let groups: Vec<&[U]> = updates.chunks(per_group).collect();
    let encode = |range: std::ops::Range<usize>| {
        groups[range.clone()]
            .iter()
            .zip(range)
            .map(|(group, i)| encode_row_group(desc, &schema, &factory, i, group))
            .collect::<Result<Vec<_>, CodecError>>()
    };
    let half = groups.len() / 2;
    let (head, tail) = join(
        groups.len() > 1 && n >= PARALLEL_ROWS,
        || encode(0..half),
        || encode(half..groups.len()),
    )?;
    for columns in head?.into_iter().chain(tail?) {
        let mut group = file.next_row_group().map_err(|e| fail(&e))?;
        for column in columns {
            column
                .append_to_row_group(&mut group)
                .map_err(|e| fail(&e))?;
        }
        group.close().map_err(|e| fail(&e))?;
    }
    file.close().map_err(|e| fail(&e))?;
    Ok(Bytes::from(buf))
}

/// The key errors of a part being written name, before it has a key.
pub(crate) const NEW_PART: &str = "<new>";

/// A part that cannot be encoded or decoded, and why.
pub(crate) fn part_error(key: &str, reason: &dyn std::fmt::Display) -> CodecError {
    CodecError::Part {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

/// The encoded size of the updates' data (rows and error messages).
fn data_bytes<U: UpdateView>(updates: &[U]) -> usize {
    updates
        .iter()
        .map(|u| {
            u.data()
                .as_ref()
                .map_or_else(String::len, |r| r.as_bytes().len())
        })
        .sum()
}

/// Encodes one row group's column chunks.
fn encode_row_group<U: UpdateView>(
    desc: &RelationDesc,
    schema: &Schema,
    factory: &ArrowRowGroupWriterFactory,
    index: usize,
    updates: &[U],
) -> Result<Vec<ArrowColumnChunk>, CodecError> {
    let fail = |e: &dyn std::fmt::Display| part_error(NEW_PART, e);
    let mut columns = ColumnsBuilder::new(desc, updates.len(), data_bytes(updates));
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
    let errors = updates.iter().any(|u| u.data().is_err());
    arrays.push(match errors {
        true => Arc::new(
            updates
                .iter()
                .map(|u| u.data().as_ref().err().map(String::as_str))
                .collect::<StringArray>(),
        ),
        false => Arc::new(StringArray::new_null(updates.len())),
    });
    let mut writers = factory.create_column_writers(index).map_err(|e| fail(&e))?;
    for ((writer, field), array) in writers.iter_mut().zip(schema.fields()).zip(&arrays) {
        for leaf in compute_leaves(field, array).map_err(|e| fail(&e))? {
            writer.write(&leaf).map_err(|e| fail(&e))?;
        }
    }
    writers
        .into_iter()
        .map(|w| w.close().map_err(|e| fail(&e)))
        .collect()
}

/// Runs `a` here and `b` on a scoped thread when `parallel` (and the machine has a
/// second core), else both here, one after the other.
fn join<A, B: Send>(
    parallel: bool,
    a: impl FnOnce() -> A,
    b: impl FnOnce() -> B + Send,
) -> Result<(A, B), CodecError> {
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    if !parallel || cores < 2 {
        let first = a();
        return Ok((first, b()));
    }
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let first = a();
        let second = other
            .join()
            .map_err(|_| part_error("<thread>", &"a coding thread panicked"))?;
        Ok((first, second))
    })
}

/// The most rows in one row group. Row groups are the unit of parallel work: a part of
/// several is encoded and decoded on two threads.
pub(crate) const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Parts of fewer updates are coded on one thread: a thread costs more than it saves.
const PARALLEL_ROWS: usize = 16 * 1024;

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
    let fail = |reason: String| part_error(key, &reason);
    // The part may be of another version of the relation (schema evolution adds
    // nullable columns at the end): read the columns both have, and NULL for the ones
    // only `desc` has, which must admit it.
    let Some(arity) = batch.num_columns().checked_sub(3) else {
        return Err(fail(format!(
            "{} columns, fewer than 3",
            batch.num_columns()
        )));
    };
    if let Some((name, _)) = desc.columns().skip(arity).find(|(_, typ)| !typ.nullable) {
        return Err(fail(format!(
            "{arity} data columns, and the relation's column {name:?} beyond them does not admit NULL"
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
    let shared = arity.min(desc.arity());
    let rows = RowsReader::new(key, desc, &batch.columns()[..shared])?;
    let (ts, diff) = (ts.values(), diff.values());
    // The kept updates' rows are packed into one shared buffer first, then handed out.
    let keep = |i: &usize| as_of.is_none_or(|a| ts[*i] <= a);
    let n = batch.num_rows();
    let errors = err.null_count() < n;
    let mut packer = RowsPacker::with_capacity(n, rows.bytes_hint());
    for i in (0..n).filter(keep) {
        if !errors || err.is_null(i) {
            rows.pack_row(i, &mut packer);
            packer.end_row();
        }
    }
    let mut packed = packer.finish();
    out.reserve(packed.len());
    let mut strict = as_of.is_some();
    for i in (0..n).filter(keep) {
        let data = match !errors || err.is_null(i) {
            true => Ok(packed
                .next()
                .ok_or_else(|| fail(format!("row {i} was not packed")))?),
            false => Err(err.value(i).to_owned()),
        };
        strict = strict && diff[i] != 0 && out.last().is_none_or(|p| p.0 < data);
        out.push((data, as_of.unwrap_or(ts[i]), diff[i]));
    }
    Ok(strict)
}

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
/// `decode_batch`). A part of several row groups is decoded on two threads, each taking
/// a contiguous half of the row groups.
pub(crate) fn decode_part_into(
    key: &str,
    desc: &RelationDesc,
    bytes: Bytes,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool, CodecError> {
    let fail = |e: &dyn std::fmt::Display| part_error(key, e);
    let meta = ArrowReaderMetadata::load(&bytes, Default::default()).map_err(|e| fail(&e))?;
    let groups = meta.metadata().num_row_groups();
    let half = groups / 2;
    let rows = rows_in(&meta, 0..groups);
    out.reserve(rows);
    let (head, tail) = join(
        groups > 1 && rows >= PARALLEL_ROWS,
        || decode_row_groups(key, desc, bytes.clone(), &meta, 0..half, as_of, out),
        || {
            let mut rest = Vec::new();
            decode_row_groups(
                key,
                desc,
                bytes.clone(),
                &meta,
                half..groups,
                as_of,
                &mut rest,
            )
            .map(|consolidated| (rest, consolidated))
        },
    )?;
    let (rest, tail) = tail?;
    Ok(append_checked(out, head?, rest, tail))
}

/// The number of rows in row groups `range` of a part.
pub(crate) fn rows_in(meta: &ArrowReaderMetadata, range: std::ops::Range<usize>) -> usize {
    meta.metadata().row_groups()[range]
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .sum()
}

/// Decodes row groups `range` of a part (read through `reader`) into `out`, as
/// [`decode_part_into`] does for a whole part.
pub(crate) fn decode_row_groups<R: ChunkReader + 'static>(
    key: &str,
    desc: &RelationDesc,
    reader: R,
    meta: &ArrowReaderMetadata,
    range: std::ops::Range<usize>,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool, CodecError> {
    let fail = |e: &dyn std::fmt::Display| part_error(key, e);
    out.reserve(rows_in(meta, range.clone()));
    let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(reader, meta.clone())
        .with_row_groups(range.collect())
        .with_batch_size(DECODE_BATCH_ROWS)
        .build()
        .map_err(|e| fail(&e))?;
    let mut consolidated = as_of.is_some();
    for batch in batches {
        let batch = batch.map_err(|e| fail(&e))?;
        consolidated &= decode_batch(key, desc, &batch, as_of, out)?;
    }
    Ok(consolidated)
}

/// Appends `rest` (decoded after `out`'s last update) to `out`; returns whether `out`
/// is still consolidated, given whether each side was: only the seam is left to check.
pub(crate) fn append_checked(
    out: &mut Vec<CodedUpdate>,
    head: bool,
    mut rest: Vec<CodedUpdate>,
    tail: bool,
) -> bool {
    let seam = match (out.last(), rest.first()) {
        (Some(p), Some(f)) => p.0 < f.0,
        _ => true,
    };
    if out.is_empty() {
        *out = rest;
    } else {
        out.append(&mut rest);
    }
    head && tail && seam
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_controller_api::{Datum, Row};

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
        let n = ROW_GROUP_ROWS as i64 + 101;
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
        let n = ROW_GROUP_ROWS as i64 + 101;
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
        // A relation with a column beyond the part's that does not admit NULL cannot
        // be a later version of the part's.
        let wider = desc()
            .columns()
            .fold(RelationDesc::builder(), |b, (name, typ)| {
                b.with_column(name, *typ)
            })
            .with_column("extra", ScalarType::Int64.nullable(false))
            .finish();
        check(good.clone(), &wider);
        // An earlier version (here: no columns at all) reads the part without the
        // columns added since.
        let projected = decode_part("k", &RelationDesc::empty(), good.clone()).unwrap();
        assert_eq!(projected, vec![(Ok(Row::pack(&[])), 1, 1)]);
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
}
