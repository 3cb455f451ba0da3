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

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_controller_api::{Datum, RelationDesc, Row, ScalarType};

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

fn column(scalar: ScalarType, values: &[Option<Datum>]) -> ArrayRef {
    macro_rules! build {
        ($builder:ty, $variant:pat => $value:expr) => {{
            let mut b = <$builder>::new();
            for v in values {
                match v {
                    Some($variant) => b.append_value($value),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match scalar {
        ScalarType::Bool => build!(BooleanBuilder, Datum::Bool(x) => *x),
        ScalarType::Int64 => build!(Int64Builder, Datum::Int64(x) => *x),
        ScalarType::UInt64 => build!(UInt64Builder, Datum::UInt64(x) => *x),
        ScalarType::TimestampMillis => build!(UInt64Builder, Datum::TimestampMillis(x) => *x),
        ScalarType::Float64 => build!(Float64Builder, Datum::Float64(x) => *x),
        ScalarType::String => build!(StringBuilder, Datum::String(x) => x),
        ScalarType::Jsonb => build!(StringBuilder, Datum::Jsonb(x) => x),
        ScalarType::Bytes => build!(BinaryBuilder, Datum::Bytes(x) => x),
    }
}

/// Encodes updates as one Parquet file. Rows are expected to match `desc` (the write
/// handle validates them); a datum of the wrong type is stored as NULL.
pub fn encode_part(desc: &RelationDesc, updates: &[CodedUpdate]) -> Result<Bytes, CodecError> {
    let fail = |e: &dyn std::fmt::Display| CodecError::Part {
        key: "<new>".into(),
        reason: e.to_string(),
    };
    let schema = Arc::new(part_schema(desc));
    let mut per_column: Vec<Vec<Option<Datum>>> =
        vec![Vec::with_capacity(updates.len()); desc.arity()];
    for (data, _, _) in updates {
        match data {
            Ok(row) => {
                let mut datums = row.iter();
                for col in per_column.iter_mut() {
                    col.push(datums.next().filter(|d| *d != Datum::Null));
                }
            }
            Err(_) => per_column.iter_mut().for_each(|col| col.push(None)),
        }
    }
    let mut arrays: Vec<ArrayRef> = desc
        .types()
        .zip(&per_column)
        .map(|(typ, values)| column(typ.scalar_type, values))
        .collect();
    arrays.push(Arc::new(UInt64Array::from_iter_values(
        updates.iter().map(|u| u.1),
    )));
    arrays.push(Arc::new(Int64Array::from_iter_values(
        updates.iter().map(|u| u.2),
    )));
    arrays.push(Arc::new(
        updates
            .iter()
            .map(|u| u.0.as_ref().err().map(String::as_str))
            .collect::<StringArray>(),
    ));
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).map_err(|e| fail(&e))?;
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, None).map_err(|e| fail(&e))?;
    writer.write(&batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(Bytes::from(buf))
}

fn downcast<'a, A: 'static>(
    key: &str,
    name: &str,
    array: &'a ArrayRef,
) -> Result<&'a A, CodecError> {
    array
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| CodecError::Part {
            key: key.to_owned(),
            reason: format!("column {name:?} has arrow type {}", array.data_type()),
        })
}

fn datum_at(
    key: &str,
    name: &str,
    scalar: ScalarType,
    array: &ArrayRef,
    i: usize,
) -> Result<Datum, CodecError> {
    if array.is_null(i) {
        return Ok(Datum::Null);
    }
    Ok(match scalar {
        ScalarType::Bool => Datum::Bool(downcast::<BooleanArray>(key, name, array)?.value(i)),
        ScalarType::Int64 => Datum::Int64(downcast::<Int64Array>(key, name, array)?.value(i)),
        ScalarType::UInt64 => Datum::UInt64(downcast::<UInt64Array>(key, name, array)?.value(i)),
        ScalarType::TimestampMillis => {
            Datum::TimestampMillis(downcast::<UInt64Array>(key, name, array)?.value(i))
        }
        ScalarType::Float64 => Datum::Float64(downcast::<Float64Array>(key, name, array)?.value(i)),
        ScalarType::String => Datum::String(
            downcast::<StringArray>(key, name, array)?
                .value(i)
                .to_owned(),
        ),
        ScalarType::Jsonb => Datum::Jsonb(
            downcast::<StringArray>(key, name, array)?
                .value(i)
                .to_owned(),
        ),
        ScalarType::Bytes => {
            Datum::Bytes(downcast::<BinaryArray>(key, name, array)?.value(i).to_vec())
        }
    })
}

fn decode_batch(
    key: &str,
    desc: &RelationDesc,
    batch: &RecordBatch,
    out: &mut Vec<CodedUpdate>,
) -> Result<(), CodecError> {
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
    let columns: Vec<(&str, ScalarType)> =
        desc.columns().map(|(n, t)| (n, t.scalar_type)).collect();
    for i in 0..batch.num_rows() {
        if ts.is_null(i) || diff.is_null(i) {
            return Err(fail(format!("null ts or diff at row {i}")));
        }
        let data = if err.is_null(i) {
            let mut datums = Vec::with_capacity(arity);
            for (c, (name, scalar)) in columns.iter().enumerate() {
                datums.push(datum_at(key, name, *scalar, batch.column(c), i)?);
            }
            Ok(Row::pack(&datums))
        } else {
            Err(err.value(i).to_owned())
        };
        out.push((data, ts.value(i), diff.value(i)));
    }
    Ok(())
}

/// Decodes a part written by [`encode_part`] for the same relation.
pub fn decode_part(
    key: &str,
    desc: &RelationDesc,
    bytes: Bytes,
) -> Result<Vec<CodedUpdate>, CodecError> {
    let fail = |e: &dyn std::fmt::Display| CodecError::Part {
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| fail(&e))?
        .build()
        .map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| fail(&e))?;
        decode_batch(key, desc, &batch, &mut out)?;
    }
    Ok(out)
}

/// Sorts updates by data and time, sums the diffs of equal `(data, time)` pairs and drops
/// zeros. The result is the canonical form of the multiset.
pub fn consolidate(updates: &mut Vec<CodedUpdate>) {
    consolidate_updates(updates);
}

/// [`consolidate`] for updates with decoded times.
pub fn consolidate_updates<T: Ord + Copy>(updates: &mut Vec<(SourceData, T, i64)>) {
    updates.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out: Vec<(SourceData, T, i64)> = Vec::with_capacity(updates.len());
    for (data, ts, diff) in updates.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == data && last.1 == ts => last.2 += diff,
            _ => out.push((data, ts, diff)),
        }
    }
    out.retain(|u| u.2 != 0);
    *updates = out;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

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
        fn consolidate_matches_a_model(raw in proptest::collection::vec((0i64..4, 0u64..3, -2i64..3), 0..40)) {
            let mut updates: Vec<CodedUpdate> = raw.iter().map(|(r, t, d)| (Ok(Row::pack(&[Datum::Int64(*r)])), *t, *d)).collect();
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
