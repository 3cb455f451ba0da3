//! Rows to Arrow columns and back, value by value, without a [`Datum`] (and its heap
//! copy of every string) per value.
//!
//! A [`Row`]'s bytes are the encoding documented in `strata_controller_api::row`: one
//! tag byte per datum, then integers as LEB128 varints (signed ones zig-zagged), floats
//! as 8 little-endian bytes, and strings, bytes and JSON as a varint length plus the
//! bytes. [`DatumRef`] reads that encoding in place and [`RowBuf`] writes it; the tests
//! check both against `Row::pack` and `Row::unpack` so the two cannot drift apart.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, UInt64Builder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray, UInt64Array,
};
#[cfg(test)]
use strata_controller_api::Datum;
use strata_controller_api::{ColumnType, RelationDesc, Row, ScalarType};

use crate::error::CodecError;

mod tag {
    pub(super) const NULL: u8 = 0;
    pub(super) const FALSE: u8 = 1;
    pub(super) const TRUE: u8 = 2;
    pub(super) const INT64: u8 = 3;
    pub(super) const UINT64: u8 = 4;
    pub(super) const FLOAT64: u8 = 5;
    pub(super) const STRING: u8 = 6;
    pub(super) const BYTES: u8 = 7;
    pub(super) const JSONB: u8 = 8;
    pub(super) const TIMESTAMP: u8 = 9;
}

/// A datum borrowed from a row's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum DatumRef<'a> {
    Null,
    Bool(bool),
    Int64(i64),
    UInt64(u64),
    Float64(f64),
    /// UTF-8 by the row invariant; checked once per column when a part is built.
    String(&'a [u8]),
    Bytes(&'a [u8]),
    /// As `String`.
    Jsonb(&'a [u8]),
    TimestampMillis(u64),
}

impl DatumRef<'_> {
    fn scalar_type(&self) -> Option<ScalarType> {
        Some(match self {
            DatumRef::Null => return None,
            DatumRef::Bool(_) => ScalarType::Bool,
            DatumRef::Int64(_) => ScalarType::Int64,
            DatumRef::UInt64(_) => ScalarType::UInt64,
            DatumRef::Float64(_) => ScalarType::Float64,
            DatumRef::String(_) => ScalarType::String,
            DatumRef::Bytes(_) => ScalarType::Bytes,
            DatumRef::Jsonb(_) => ScalarType::Jsonb,
            DatumRef::TimestampMillis(_) => ScalarType::TimestampMillis,
        })
    }
}

/// The datums of a row's bytes, in order. Ends early at bytes that do not decode,
/// which a [`Row`] never holds.
#[derive(Debug, Clone)]
pub(crate) struct DatumRefs<'a> {
    bytes: &'a [u8],
}

/// The datums of `row`, borrowed.
pub(crate) fn datums(row: &Row) -> DatumRefs<'_> {
    DatumRefs {
        bytes: row.as_bytes(),
    }
}

impl<'a> DatumRefs<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(*first)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn slice(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Some(head)
    }

    fn datum(&mut self) -> Option<DatumRef<'a>> {
        Some(match self.byte()? {
            tag::NULL => DatumRef::Null,
            tag::FALSE => DatumRef::Bool(false),
            tag::TRUE => DatumRef::Bool(true),
            tag::INT64 => {
                let n = self.varint()?;
                DatumRef::Int64(((n >> 1) as i64) ^ -((n & 1) as i64))
            }
            tag::UINT64 => DatumRef::UInt64(self.varint()?),
            tag::FLOAT64 => {
                let (head, rest) = self.bytes.split_first_chunk::<8>()?;
                self.bytes = rest;
                DatumRef::Float64(f64::from_le_bytes(*head))
            }
            tag::STRING => DatumRef::String(self.slice()?),
            tag::BYTES => DatumRef::Bytes(self.slice()?),
            tag::JSONB => DatumRef::Jsonb(self.slice()?),
            tag::TIMESTAMP => DatumRef::TimestampMillis(self.varint()?),
            _ => return None,
        })
    }
}

impl<'a> Iterator for DatumRefs<'a> {
    type Item = DatumRef<'a>;

    fn next(&mut self) -> Option<DatumRef<'a>> {
        if self.bytes.is_empty() {
            return None;
        }
        let datum = self.datum();
        if datum.is_none() {
            self.bytes = &[];
        }
        datum
    }
}

/// Whether `row` matches the column types: arity, types and nullability. The same
/// answer as `RelationDesc::validate_row`, without unpacking the row.
pub(crate) fn row_matches(types: &[ColumnType], row: &Row) -> bool {
    let mut datums = datums(row);
    for typ in types {
        let ok = match datums.next().map(|d| d.scalar_type()) {
            None => false,
            Some(None) => typ.nullable,
            Some(Some(actual)) => actual == typ.scalar_type,
        };
        if !ok {
            return false;
        }
    }
    datums.next().is_none()
}

/// The column types of a relation, in order.
pub(crate) fn column_types(desc: &RelationDesc) -> Vec<ColumnType> {
    desc.types().copied().collect()
}

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
        let mut datums = datums(row);
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

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_len_prefixed(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
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

    /// An upper bound of the encoded size of value `i`.
    fn encoded_len(&self, i: usize) -> usize {
        match self {
            ColumnReader::String(a) | ColumnReader::Jsonb(a) => 11 + a.value_length(i) as usize,
            ColumnReader::Bytes(a) => 11 + a.value_length(i) as usize,
            _ => 11,
        }
    }

    /// Appends the encoding of value `i` to `out`; `may_be_null` is false for a column
    /// without nulls.
    fn write(&self, may_be_null: bool, i: usize, out: &mut Vec<u8>) {
        if may_be_null && self.is_null(i) {
            out.push(tag::NULL);
            return;
        }
        match self {
            ColumnReader::Bool(a) => out.push(if a.value(i) { tag::TRUE } else { tag::FALSE }),
            ColumnReader::Int64(a) => {
                let n = a.value(i);
                out.push(tag::INT64);
                put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
            }
            ColumnReader::UInt64(a) => {
                out.push(tag::UINT64);
                put_varint(out, a.value(i));
            }
            ColumnReader::Timestamp(a) => {
                out.push(tag::TIMESTAMP);
                put_varint(out, a.value(i));
            }
            ColumnReader::Float64(a) => {
                out.push(tag::FLOAT64);
                out.extend_from_slice(&a.value(i).to_le_bytes());
            }
            ColumnReader::String(a) => put_len_prefixed(out, tag::STRING, a.value(i).as_bytes()),
            ColumnReader::Jsonb(a) => put_len_prefixed(out, tag::JSONB, a.value(i).as_bytes()),
            ColumnReader::Bytes(a) => put_len_prefixed(out, tag::BYTES, a.value(i)),
        }
    }
}

/// Reads the data columns of a decoded part back into rows.
#[derive(Debug)]
pub(crate) struct RowsReader<'a> {
    key: &'a str,
    columns: Vec<(ColumnReader<'a>, bool)>,
}

impl<'a> RowsReader<'a> {
    /// A reader of `arrays`, the data columns of a part of `desc`.
    pub(crate) fn new(
        key: &'a str,
        desc: &RelationDesc,
        arrays: &'a [ArrayRef],
    ) -> Result<Self, CodecError> {
        let columns = desc
            .columns()
            .zip(arrays)
            .map(|((name, typ), array)| {
                let column = ColumnReader::new(key, name, typ.scalar_type, array)?;
                let may_be_null = column.null_count() > 0;
                Ok((column, may_be_null))
            })
            .collect::<Result<_, CodecError>>()?;
        Ok(RowsReader { key, columns })
    }

    /// The row at index `i`.
    pub(crate) fn row(&self, i: usize) -> Result<Row, CodecError> {
        let len = self.columns.iter().map(|(c, _)| c.encoded_len(i)).sum();
        let mut bytes = Vec::with_capacity(len);
        for (c, may_be_null) in &self.columns {
            c.write(*may_be_null, i, &mut bytes);
        }
        Row::from_bytes(bytes).map_err(|e| CodecError::Part {
            key: self.key.to_owned(),
            reason: format!("row {i}: {e}"),
        })
    }
}

/// The datum a [`DatumRef`] borrows from, owned (for tests and error paths).
#[cfg(test)]
fn to_datum(d: DatumRef<'_>) -> Datum {
    match d {
        DatumRef::Null => Datum::Null,
        DatumRef::Bool(x) => Datum::Bool(x),
        DatumRef::Int64(x) => Datum::Int64(x),
        DatumRef::UInt64(x) => Datum::UInt64(x),
        DatumRef::Float64(x) => Datum::Float64(x),
        DatumRef::String(x) => Datum::String(String::from_utf8(x.to_vec()).unwrap_or_default()),
        DatumRef::Bytes(x) => Datum::Bytes(x.to_vec()),
        DatumRef::Jsonb(x) => Datum::Jsonb(String::from_utf8(x.to_vec()).unwrap_or_default()),
        DatumRef::TimestampMillis(x) => Datum::TimestampMillis(x),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use strata_controller_api::arbitrary::arb_datum;

    proptest! {
        #[test]
        fn borrowed_datums_match_unpack(datums in proptest::collection::vec(arb_datum(), 0..12)) {
            let row = Row::pack(&datums);
            let borrowed: Vec<Datum> = super::datums(&row).map(to_datum).collect();
            prop_assert_eq!(borrowed, datums);
        }

        #[test]
        fn row_matches_agrees_with_validate_row(
            datums in proptest::collection::vec(arb_datum(), 0..5),
            types in proptest::collection::vec((0usize..8, any::<bool>()), 0..5),
        ) {
            const SCALARS: [ScalarType; 8] = [
                ScalarType::Bool, ScalarType::Int64, ScalarType::UInt64, ScalarType::Float64,
                ScalarType::String, ScalarType::Bytes, ScalarType::Jsonb,
                ScalarType::TimestampMillis,
            ];
            let mut builder = RelationDesc::builder();
            for (i, (s, nullable)) in types.iter().enumerate() {
                builder = builder.with_column(format!("c{i}"), SCALARS[*s].nullable(*nullable));
            }
            let desc = builder.finish();
            let row = Row::pack(&datums);
            prop_assert_eq!(
                row_matches(&column_types(&desc), &row),
                desc.validate_row(&row).is_ok()
            );
        }
    }
}
