//! The data model: [`Datum`], [`Row`], [`ScalarType`], [`ColumnType`] and [`RelationDesc`].
//!
//! A [`Row`] is a compact byte encoding of a sequence of datums. Its invariant: the bytes
//! always decode. [`Row::pack`] builds valid bytes, and [`Row::from_bytes`] validates
//! bytes that come from outside (a file, the network) before it accepts them, so reading a
//! row's datums never fails.
//!
//! The encoding is one tag byte per datum followed by its payload: integers as LEB128
//! varints (signed ones zig-zagged), floats as 8 little-endian bytes, and strings, bytes
//! and JSON as a varint length plus the bytes. Rows compare and hash by their bytes, which
//! is what consolidation needs; it is not the datums' natural order.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::row_ref::{DatumRefs, RowPacker};

/// One value in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int64(i64),
    /// An unsigned 64-bit integer.
    UInt64(u64),
    /// A 64-bit float.
    Float64(f64),
    /// UTF-8 text.
    String(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A JSON document, kept as its text.
    Jsonb(String),
    /// A point in time, in milliseconds since the Unix epoch.
    TimestampMillis(u64),
}

impl Datum {
    /// The scalar type of this datum, or `None` for [`Datum::Null`].
    pub fn scalar_type(&self) -> Option<ScalarType> {
        Some(match self {
            Datum::Null => return None,
            Datum::Bool(_) => ScalarType::Bool,
            Datum::Int64(_) => ScalarType::Int64,
            Datum::UInt64(_) => ScalarType::UInt64,
            Datum::Float64(_) => ScalarType::Float64,
            Datum::String(_) => ScalarType::String,
            Datum::Bytes(_) => ScalarType::Bytes,
            Datum::Jsonb(_) => ScalarType::Jsonb,
            Datum::TimestampMillis(_) => ScalarType::TimestampMillis,
        })
    }
}

impl fmt::Display for Datum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Datum::Null => f.write_str("null"),
            Datum::Bool(b) => write!(f, "{b}"),
            Datum::Int64(n) => write!(f, "{n}"),
            Datum::UInt64(n) => write!(f, "{n}"),
            Datum::Float64(x) => write!(f, "{x}"),
            Datum::String(s) | Datum::Jsonb(s) => f.write_str(s),
            Datum::Bytes(b) => {
                f.write_str("\\x")?;
                b.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
            Datum::TimestampMillis(ms) => write!(f, "{ms}ms"),
        }
    }
}

/// The type of a non-null datum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScalarType {
    /// [`Datum::Bool`].
    Bool,
    /// [`Datum::Int64`].
    Int64,
    /// [`Datum::UInt64`].
    UInt64,
    /// [`Datum::Float64`].
    Float64,
    /// [`Datum::String`].
    String,
    /// [`Datum::Bytes`].
    Bytes,
    /// [`Datum::Jsonb`].
    Jsonb,
    /// [`Datum::TimestampMillis`].
    TimestampMillis,
}

/// A column's type: a scalar type and whether it admits NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnType {
    /// The type of the column's non-null values.
    pub scalar_type: ScalarType,
    /// Whether the column admits [`Datum::Null`].
    pub nullable: bool,
}

impl ScalarType {
    /// This type as a column that admits NULL or not.
    pub fn nullable(self, nullable: bool) -> ColumnType {
        ColumnType {
            scalar_type: self,
            nullable,
        }
    }
}

/// The schema of a collection: named, typed columns.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Datum, RelationDesc, Row, ScalarType};
/// let desc = RelationDesc::builder()
///     .with_column("id", ScalarType::Int64.nullable(false))
///     .with_column("name", ScalarType::String.nullable(true))
///     .finish();
/// let good = Row::pack(&[Datum::Int64(1), Datum::Null]);
/// let bad = Row::pack(&[Datum::Null, Datum::Null]);
/// assert!(desc.validate_row(&good).is_ok());
/// assert!(desc.validate_row(&bad).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelationDesc {
    columns: Vec<(String, ColumnType)>,
}

/// Builds a [`RelationDesc`] column by column.
#[derive(Debug, Default)]
pub struct RelationDescBuilder {
    columns: Vec<(String, ColumnType)>,
}

impl RelationDescBuilder {
    /// Appends a column.
    pub fn with_column(mut self, name: impl Into<String>, typ: ColumnType) -> Self {
        self.columns.push((name.into(), typ));
        self
    }

    /// The finished description.
    pub fn finish(self) -> RelationDesc {
        RelationDesc {
            columns: self.columns,
        }
    }
}

/// Why a row does not match a [`RelationDesc`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowMismatch {
    /// The row has the wrong number of datums.
    #[error("row has {actual} columns, the relation has {expected}")]
    Arity {
        /// Columns in the relation.
        expected: usize,
        /// Datums in the row.
        actual: usize,
    },
    /// A NULL in a column that does not admit NULL.
    #[error("column {column:?} is not nullable")]
    Null {
        /// The column's name.
        column: String,
    },
    /// A datum of the wrong type.
    #[error("column {column:?} has type {expected:?}, the datum is {actual:?}")]
    Type {
        /// The column's name.
        column: String,
        /// The column's type.
        expected: ScalarType,
        /// The datum's type.
        actual: ScalarType,
    },
}

impl RelationDesc {
    /// A builder for a new description.
    pub fn builder() -> RelationDescBuilder {
        RelationDescBuilder::default()
    }

    /// A description with no columns.
    pub fn empty() -> Self {
        RelationDesc::default()
    }

    /// The number of columns.
    pub fn arity(&self) -> usize {
        self.columns.len()
    }

    /// The columns, in order.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = (&str, &ColumnType)> {
        self.columns.iter().map(|(name, typ)| (name.as_str(), typ))
    }

    /// The first `n` columns (all of them if there are fewer): the version of a
    /// relation before columns were added at its end.
    pub fn prefix(&self, n: usize) -> RelationDesc {
        RelationDesc {
            columns: self.columns.iter().take(n).cloned().collect(),
        }
    }

    /// The column names, in order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.columns.iter().map(|(name, _)| name.as_str())
    }

    /// The column types, in order.
    pub fn types(&self) -> impl ExactSizeIterator<Item = &ColumnType> {
        self.columns.iter().map(|(_, typ)| typ)
    }

    /// Checks that `row` has this description's arity, types and nullability, reading
    /// the row in place (no datum is copied).
    pub fn validate_row(&self, row: &Row) -> Result<(), RowMismatch> {
        self.validate_types(row.datum_refs().map(|d| d.scalar_type()))
    }

    /// Like [`RelationDesc::validate_row`], for datums not yet packed.
    pub fn validate_datums(&self, datums: &[Datum]) -> Result<(), RowMismatch> {
        self.validate_types(datums.iter().map(Datum::scalar_type))
    }

    /// The check of both: `types` are the datums' types (`None` for NULL), in order.
    /// A wrong arity is reported before any column's mismatch. One pass: a row's
    /// datums are decoded once.
    fn validate_types(
        &self,
        types: impl Iterator<Item = Option<ScalarType>>,
    ) -> Result<(), RowMismatch> {
        let mut first = None;
        let mut actual = 0;
        for datum in types {
            let column = self.columns.get(actual);
            actual += 1;
            let (Some((name, typ)), None) = (column, &first) else {
                continue;
            };
            first = match datum {
                None if !typ.nullable => Some(RowMismatch::Null {
                    column: name.clone(),
                }),
                Some(found) if found != typ.scalar_type => Some(RowMismatch::Type {
                    column: name.clone(),
                    expected: typ.scalar_type,
                    actual: found,
                }),
                _ => None,
            };
        }
        if actual != self.columns.len() {
            return Err(RowMismatch::Arity {
                expected: self.columns.len(),
                actual,
            });
        }
        first.map_or(Ok(()), Err)
    }
}

/// A sequence of datums in a compact byte encoding.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Datum, Row};
/// let datums = vec![Datum::Int64(-3), Datum::String("hi".into()), Datum::Null];
/// let row = Row::pack(&datums);
/// assert_eq!(row.unpack(), datums);
/// let copy = Row::from_bytes(row.as_bytes().to_vec()).unwrap();
/// assert_eq!(copy, row);
/// assert!(Row::from_bytes(vec![0xff]).is_err());
/// ```
///
/// A row's bytes are reference counted: a clone shares them, and rows built in bulk by
/// a [`RowsPacker`](crate::RowsPacker) share one buffer (which lives as long as any of
/// them). Rows serialize as their bytes, a sequence of `u8`, and deserializing one
/// validates it as [`Row::from_bytes`] does.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    bytes: Bytes,
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        Row::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

/// Bytes that are not a valid row encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed row at byte {offset}: {reason}")]
pub struct RowDecodeError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

pub(crate) mod tag {
    pub(crate) const NULL: u8 = 0;
    pub(crate) const FALSE: u8 = 1;
    pub(crate) const TRUE: u8 = 2;
    pub(crate) const INT64: u8 = 3;
    pub(crate) const UINT64: u8 = 4;
    pub(crate) const FLOAT64: u8 = 5;
    pub(crate) const STRING: u8 = 6;
    pub(crate) const BYTES: u8 = 7;
    pub(crate) const JSONB: u8 = 8;
    pub(crate) const TIMESTAMP: u8 = 9;
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub(crate) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub(crate) fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

impl Row {
    /// Packs datums into a row.
    pub fn pack<'a>(datums: impl IntoIterator<Item = &'a Datum>) -> Row {
        let mut packer = RowPacker::default();
        for datum in datums {
            packer.push(datum);
        }
        packer.finish()
    }

    /// Bytes a [`RowPacker`] built, which decode by construction.
    pub(crate) fn from_packed(bytes: Bytes) -> Row {
        Row { bytes }
    }

    /// Accepts bytes from outside after checking that they decode.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Row, RowDecodeError> {
        let mut decoder = Decoder {
            bytes: &bytes,
            offset: 0,
        };
        while decoder.offset < bytes.len() {
            decoder.check_datum()?;
        }
        Ok(Row {
            bytes: Bytes::from(bytes),
        })
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoded bytes, consuming the row.
    pub fn into_bytes(self) -> Vec<u8> {
        Vec::from(self.bytes)
    }

    /// The datums, in order.
    pub fn iter(&self) -> RowIter<'_> {
        RowIter {
            refs: self.datum_refs(),
        }
    }

    /// The datums, collected.
    pub fn unpack(&self) -> Vec<Datum> {
        self.iter().collect()
    }

    /// The number of datums.
    pub fn len(&self) -> usize {
        self.datum_refs().count()
    }

    /// Whether the row has no datums.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, datum) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{datum}")?;
        }
        f.write_str(")")
    }
}

impl FromIterator<Datum> for Row {
    fn from_iter<I: IntoIterator<Item = Datum>>(iter: I) -> Self {
        let mut packer = RowPacker::default();
        for datum in iter {
            packer.push(&datum);
        }
        packer.finish()
    }
}

/// Iterates a row's datums.
#[derive(Debug)]
pub struct RowIter<'a> {
    refs: DatumRefs<'a>,
}

impl Iterator for RowIter<'_> {
    type Item = Datum;

    fn next(&mut self) -> Option<Datum> {
        self.refs.next().map(|d| d.to_datum())
    }
}

#[derive(Debug)]
struct Decoder<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Decoder<'_> {
    fn fail<X>(&self, reason: &'static str) -> Result<X, RowDecodeError> {
        Err(RowDecodeError {
            offset: self.offset,
            reason,
        })
    }

    fn byte(&mut self) -> Result<u8, RowDecodeError> {
        match self.bytes.get(self.offset) {
            Some(b) => {
                self.offset += 1;
                Ok(*b)
            }
            None => self.fail("truncated"),
        }
    }

    fn varint(&mut self) -> Result<u64, RowDecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return self.fail("varint overflows 64 bits");
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    // Rows compare by bytes, so only the shortest encoding is accepted.
                    return self.fail("non-canonical varint");
                }
                return Ok(value);
            }
        }
        self.fail("varint too long")
    }

    fn slice(&mut self) -> Result<&[u8], RowDecodeError> {
        let len = self.varint()?;
        let len = usize::try_from(len).or_else(|_| self.fail("length out of range"))?;
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        match end {
            Some(end) => {
                let start = self.offset;
                self.offset = end;
                Ok(&self.bytes[start..end])
            }
            None => self.fail("length past the end"),
        }
    }

    fn str(&mut self) -> Result<&str, RowDecodeError> {
        let start = self.offset;
        let raw = self.slice()?;
        std::str::from_utf8(raw).map_err(|_| RowDecodeError {
            offset: start,
            reason: "invalid utf-8",
        })
    }

    /// Checks one datum: a known tag and a payload that decodes (canonical varints,
    /// lengths within the bytes, UTF-8 text), without copying anything.
    fn check_datum(&mut self) -> Result<(), RowDecodeError> {
        match self.byte()? {
            tag::NULL | tag::FALSE | tag::TRUE => Ok(()),
            tag::INT64 | tag::UINT64 | tag::TIMESTAMP => self.varint().map(|_| ()),
            tag::FLOAT64 => (0..8).try_for_each(|_| self.byte().map(|_| ())),
            tag::STRING | tag::JSONB => self.str().map(|_| ()),
            tag::BYTES => self.slice().map(|_| ()),
            _ => {
                self.offset -= 1;
                self.fail("unknown datum tag")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitrary::arb_datum;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(datums in proptest::collection::vec(arb_datum(), 0..16)) {
            let row = Row::pack(&datums);
            prop_assert_eq!(row.unpack(), datums.clone());
            prop_assert_eq!(row.len(), datums.len());
            let reparsed = Row::from_bytes(row.as_bytes().to_vec());
            prop_assert_eq!(reparsed, Ok(row));
        }

        #[test]
        fn validating_a_row_agrees_with_validating_its_datums(
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
            prop_assert_eq!(desc.validate_row(&row), desc.validate_datums(&datums));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(row) = Row::from_bytes(bytes.clone()) {
                // Whatever decodes must re-encode to the same bytes.
                prop_assert_eq!(Row::pack(&row.unpack()).into_bytes(), bytes);
            }
        }
    }

    #[test]
    fn rows_serialize_as_their_bytes_and_deserialize_only_if_valid() {
        let row = Row::pack(&[Datum::Int64(-1), Datum::String("é".into())]);
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(
            json,
            serde_json::to_string(&row.as_bytes().to_vec()).unwrap()
        );
        assert_eq!(serde_json::from_str::<Row>(&json).unwrap(), row);
        let bad = serde_json::from_str::<Row>("[6,5,97]").unwrap_err();
        assert!(bad.to_string().contains("length past the end"), "{bad}");
    }

    #[test]
    fn decode_errors_are_typed() {
        let cases: &[(&[u8], &str)] = &[
            (&[42], "unknown datum tag"),
            (&[tag::INT64], "truncated"),
            (&[tag::STRING, 5, b'a'], "length past the end"),
            (&[tag::STRING, 1, 0xff], "invalid utf-8"),
            (&[tag::FLOAT64, 1, 2], "truncated"),
            (
                &[
                    tag::UINT64,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0xff,
                    0x7f,
                ],
                "varint overflows 64 bits",
            ),
        ];
        for (bytes, reason) in cases {
            let err = Row::from_bytes(bytes.to_vec()).expect_err("must fail");
            assert_eq!(err.reason, *reason, "{bytes:?}");
        }
    }

    #[test]
    fn small_values_are_compact() {
        let row = Row::pack(&[Datum::Int64(1), Datum::UInt64(2), Datum::Bool(true)]);
        assert_eq!(row.as_bytes().len(), 5);
    }

    #[test]
    fn validate_reports_each_mismatch() {
        let desc = RelationDesc::builder()
            .with_column("a", ScalarType::Int64.nullable(false))
            .with_column("b", ScalarType::String.nullable(true))
            .finish();
        let check = |datums: Vec<Datum>, expected: Result<(), RowMismatch>| {
            assert_eq!(
                desc.validate_row(&Row::pack(&datums)),
                expected,
                "{datums:?}"
            );
        };
        check(vec![Datum::Int64(1), Datum::String("x".into())], Ok(()));
        check(vec![Datum::Int64(1), Datum::Null], Ok(()));
        check(
            vec![Datum::Int64(1)],
            Err(RowMismatch::Arity {
                expected: 2,
                actual: 1,
            }),
        );
        check(
            vec![Datum::Null, Datum::Null],
            Err(RowMismatch::Null { column: "a".into() }),
        );
        check(
            vec![Datum::UInt64(1), Datum::Null],
            Err(RowMismatch::Type {
                column: "a".into(),
                expected: ScalarType::Int64,
                actual: ScalarType::UInt64,
            }),
        );
        // The first mismatch in column order, and a wrong arity before any mismatch.
        check(
            vec![Datum::Null, Datum::Bool(true)],
            Err(RowMismatch::Null { column: "a".into() }),
        );
        check(
            vec![Datum::Bool(true)],
            Err(RowMismatch::Arity {
                expected: 2,
                actual: 1,
            }),
        );
        check(
            vec![Datum::Null, Datum::Null, Datum::Int64(3)],
            Err(RowMismatch::Arity {
                expected: 2,
                actual: 3,
            }),
        );
        check(
            vec![],
            Err(RowMismatch::Arity {
                expected: 2,
                actual: 0,
            }),
        );
    }
}
