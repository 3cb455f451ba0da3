//! Rows to Arrow columns and back, value by value, without a `Datum` (and its heap
//! copy of every string) per value: rows are read with
//! [`Row::datum_refs`](strata_controller_api::Row::datum_refs) and rebuilt with a
//! [`RowsPacker`](strata_controller_api::RowsPacker), both owned by
//! `strata_controller_api`, which keeps the encoding.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
use strata_controller_api::{DatumRef, RelationDesc, Row, RowsPacker, ScalarType};

use crate::error::CodecError;

/// One Arrow column under construction.
#[derive(Debug)]
enum Builder {
    Bool(BooleanBuilder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Timestamp(UInt64Builder),
    Float64(Float64Builder),
    /// Strings are gathered as bytes and validated as UTF-8 once, in `finish`.
    String(BinaryBuilder),
    Jsonb(BinaryBuilder),
    Bytes(BinaryBuilder),
}

impl Builder {
    fn new(scalar: ScalarType, rows: usize, data_bytes: usize) -> Self {
        match scalar {
            ScalarType::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            ScalarType::Int64 => Builder::Int64(Int64Builder::with_capacity(rows)),
            ScalarType::UInt64 => Builder::UInt64(UInt64Builder::with_capacity(rows)),
            ScalarType::TimestampMillis => Builder::Timestamp(UInt64Builder::with_capacity(rows)),
            ScalarType::Float64 => Builder::Float64(Float64Builder::with_capacity(rows)),
            ScalarType::String => Builder::String(BinaryBuilder::with_capacity(rows, data_bytes)),
            ScalarType::Jsonb => Builder::Jsonb(BinaryBuilder::with_capacity(rows, data_bytes)),
            ScalarType::Bytes => Builder::Bytes(BinaryBuilder::with_capacity(rows, data_bytes)),
        }
    }

    /// Appends a datum; one of another type is stored as NULL.
    fn push(&mut self, datum: Option<DatumRef<'_>>) {
        match (self, datum) {
            (Builder::Bool(b), Some(DatumRef::Bool(x))) => b.append_value(x),
            (Builder::Int64(b), Some(DatumRef::Int64(x))) => b.append_value(x),
            (Builder::UInt64(b), Some(DatumRef::UInt64(x))) => b.append_value(x),
            (Builder::Timestamp(b), Some(DatumRef::TimestampMillis(x))) => b.append_value(x),
            (Builder::Float64(b), Some(DatumRef::Float64(x))) => b.append_value(x),
            (Builder::String(b), Some(DatumRef::String(x))) => b.append_value(x),
            (Builder::Jsonb(b), Some(DatumRef::Jsonb(x))) => b.append_value(x),
            (Builder::Bytes(b), Some(DatumRef::Bytes(x))) => b.append_value(x),
            (b, _) => b.push_null(),
        }
    }

    fn push_null(&mut self) {
        match self {
            Builder::Bool(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::UInt64(b) | Builder::Timestamp(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::String(b) | Builder::Jsonb(b) | Builder::Bytes(b) => b.append_null(),
        }
    }

    fn finish(self) -> Result<ArrayRef, CodecError> {
        Ok(match self {
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::UInt64(mut b) | Builder::Timestamp(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::String(mut b) | Builder::Jsonb(mut b) => {
                Arc::new(StringArray::try_from_binary(b.finish()).map_err(|e| {
                    CodecError::Part {
                        key: "<new>".into(),
                        reason: e.to_string(),
                    }
                })?)
            }
            Builder::Bytes(mut b) => Arc::new(b.finish()),
        })
    }
}

/// The data columns of a part under construction, one builder per relation column.
#[derive(Debug)]
pub(crate) struct ColumnsBuilder {
    builders: Vec<Builder>,
}

impl ColumnsBuilder {
    /// Builders for `rows` rows whose encodings total about `row_bytes` bytes.
    pub(crate) fn new(desc: &RelationDesc, rows: usize, row_bytes: usize) -> Self {
        let variable = desc
            .types()
            .filter(|t| {
                matches!(
                    t.scalar_type,
                    ScalarType::String | ScalarType::Jsonb | ScalarType::Bytes
                )
            })
            .count()
            .max(1);
        let builders = desc
            .types()
            .map(|t| Builder::new(t.scalar_type, rows, row_bytes / variable))
            .collect();
        ColumnsBuilder { builders }
    }

    /// Appends a row's datums (NULL for a datum of the wrong type or a missing one).
    pub(crate) fn push_row(&mut self, row: &Row) {
        let mut datums = row.datum_refs();
        for b in &mut self.builders {
            b.push(datums.next());
        }
    }

    /// Appends NULL to every column (the data columns of an error).
    pub(crate) fn push_nulls(&mut self) {
        self.builders.iter_mut().for_each(Builder::push_null);
    }

    /// The finished columns.
    pub(crate) fn finish(self) -> Result<Vec<ArrayRef>, CodecError> {
        self.builders.into_iter().map(Builder::finish).collect()
    }
}

/// A typed view of one data column of a decoded part.
#[derive(Debug)]
enum ColumnReader<'a> {
    Bool(&'a BooleanArray),
    Int64(&'a Int64Array),
    UInt64(&'a UInt64Array),
    Timestamp(&'a UInt64Array),
    Float64(&'a Float64Array),
    String(&'a StringArray),
    Jsonb(&'a StringArray),
    Bytes(&'a BinaryArray),
}

pub(crate) fn downcast<'a, A: 'static>(
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

impl<'a> ColumnReader<'a> {
    fn new(
        key: &str,
        name: &str,
        scalar: ScalarType,
        array: &'a ArrayRef,
    ) -> Result<Self, CodecError> {
        Ok(match scalar {
            ScalarType::Bool => ColumnReader::Bool(downcast(key, name, array)?),
            ScalarType::Int64 => ColumnReader::Int64(downcast(key, name, array)?),
            ScalarType::UInt64 => ColumnReader::UInt64(downcast(key, name, array)?),
            ScalarType::TimestampMillis => ColumnReader::Timestamp(downcast(key, name, array)?),
            ScalarType::Float64 => ColumnReader::Float64(downcast(key, name, array)?),
            ScalarType::String => ColumnReader::String(downcast(key, name, array)?),
            ScalarType::Jsonb => ColumnReader::Jsonb(downcast(key, name, array)?),
            ScalarType::Bytes => ColumnReader::Bytes(downcast(key, name, array)?),
        })
    }

    fn null_count(&self) -> usize {
        match self {
            ColumnReader::Bool(a) => a.null_count(),
            ColumnReader::Int64(a) => a.null_count(),
            ColumnReader::UInt64(a) | ColumnReader::Timestamp(a) => a.null_count(),
            ColumnReader::Float64(a) => a.null_count(),
            ColumnReader::String(a) | ColumnReader::Jsonb(a) => a.null_count(),
            ColumnReader::Bytes(a) => a.null_count(),
        }
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            ColumnReader::Bool(a) => a.is_null(i),
            ColumnReader::Int64(a) => a.is_null(i),
            ColumnReader::UInt64(a) | ColumnReader::Timestamp(a) => a.is_null(i),
            ColumnReader::Float64(a) => a.is_null(i),
            ColumnReader::String(a) | ColumnReader::Jsonb(a) => a.is_null(i),
            ColumnReader::Bytes(a) => a.is_null(i),
        }
    }

    /// An upper bound of the encoded size of every value: a tag and a varint length
    /// (or a fixed-size value) per value, plus the variable-length payloads.
    fn bytes_hint(&self) -> usize {
        let (values, payload) = match self {
            ColumnReader::String(a) | ColumnReader::Jsonb(a) => (a.len(), a.value_data().len()),
            ColumnReader::Bytes(a) => (a.len(), a.value_data().len()),
            ColumnReader::Bool(a) => (a.len(), 0),
            ColumnReader::Int64(a) => (a.len(), 0),
            ColumnReader::UInt64(a) | ColumnReader::Timestamp(a) => (a.len(), 0),
            ColumnReader::Float64(a) => (a.len(), 0),
        };
        11 * values + payload
    }

    /// Appends value `i` to `out`; `may_be_null` is false for a column without nulls.
    fn write(&self, may_be_null: bool, i: usize, out: &mut RowsPacker) {
        if may_be_null && self.is_null(i) {
            out.push_null();
            return;
        }
        match self {
            ColumnReader::Bool(a) => out.push_bool(a.value(i)),
            ColumnReader::Int64(a) => out.push_int64(a.value(i)),
            ColumnReader::UInt64(a) => out.push_uint64(a.value(i)),
            ColumnReader::Timestamp(a) => out.push_timestamp_millis(a.value(i)),
            ColumnReader::Float64(a) => out.push_float64(a.value(i)),
            ColumnReader::String(a) => out.push_str(a.value(i)),
            ColumnReader::Jsonb(a) => out.push_jsonb(a.value(i)),
            ColumnReader::Bytes(a) => out.push_bytes(a.value(i)),
        }
    }
}

/// Reads the data columns of a decoded part back into rows.
#[derive(Debug)]
pub(crate) struct RowsReader<'a> {
    columns: Vec<(ColumnReader<'a>, bool)>,
    /// Columns `desc` has beyond the part's (a part written before they were added):
    /// each row gets NULL in them.
    missing: usize,
}

impl<'a> RowsReader<'a> {
    /// A reader of `arrays`, the data columns of a part of `desc` or of another version
    /// of it (see [`strata_controller_api::check_evolution`]): columns the part has
    /// beyond `desc` are left out, and columns `desc` has beyond the part's read as NULL
    /// (the caller checks that they admit it).
    pub(crate) fn new(
        key: &'a str,
        desc: &RelationDesc,
        arrays: &'a [ArrayRef],
    ) -> Result<Self, CodecError> {
        let missing = desc.arity().saturating_sub(arrays.len());
        let columns = desc
            .columns()
            .zip(arrays)
            .map(|((name, typ), array)| {
                let column = ColumnReader::new(key, name, typ.scalar_type, array)?;
                let may_be_null = column.null_count() > 0;
                Ok((column, may_be_null))
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(RowsReader { columns, missing })
    }

    /// Packs the row at index `i`. Arrow has checked the strings' UTF-8 and the packer
    /// writes whole datums, so the row needs no validation of its own.
    pub(crate) fn pack_row(&self, i: usize, packer: &mut RowsPacker) {
        for (c, may_be_null) in &self.columns {
            c.write(*may_be_null, i, packer);
        }
        for _ in 0..self.missing {
            packer.push_null();
        }
    }

    /// An upper bound of the encoded size of every row.
    pub(crate) fn bytes_hint(&self) -> usize {
        self.columns.iter().map(|(c, _)| c.bytes_hint()).sum()
    }
}
