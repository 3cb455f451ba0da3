//! A [`Row`]'s encoding datum by datum, without an owned [`Datum`] (and
//! its heap copy of every string) per value: [`DatumRef`] reads a row's bytes in place
//! and [`RowPacker`] writes them.
//!
//! Columnar code (persist's Parquet parts) uses these to move between rows and columns.
//! A packer only ever appends whole datums, so what it finishes always decodes and needs
//! no second validation pass, unlike bytes handed to [`Row::from_bytes`].

use bytes::Bytes;

use crate::row::{Datum, Row, ScalarType, put_varint, tag, unzigzag, zigzag};

/// A datum borrowed from a row's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DatumRef<'a> {
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
    /// A string's UTF-8 bytes (valid UTF-8 by the row invariant).
    String(&'a [u8]),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A JSON document's UTF-8 bytes, as `String`.
    Jsonb(&'a [u8]),
    /// Milliseconds since the Unix epoch.
    TimestampMillis(u64),
}

impl DatumRef<'_> {
    /// The datum, owned. Text is UTF-8 by the row invariant; were it not, the invalid
    /// sequences would become U+FFFD rather than a panic.
    pub fn to_datum(&self) -> Datum {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match *self {
            DatumRef::Null => Datum::Null,
            DatumRef::Bool(x) => Datum::Bool(x),
            DatumRef::Int64(x) => Datum::Int64(x),
            DatumRef::UInt64(x) => Datum::UInt64(x),
            DatumRef::Float64(x) => Datum::Float64(x),
            DatumRef::String(x) => Datum::String(text(x)),
            DatumRef::Bytes(x) => Datum::Bytes(x.to_vec()),
            DatumRef::Jsonb(x) => Datum::Jsonb(text(x)),
            DatumRef::TimestampMillis(x) => Datum::TimestampMillis(x),
        }
    }

    /// The datum's type; `None` for NULL.
    pub fn scalar_type(&self) -> Option<ScalarType> {
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

/// The datums of a row's bytes, in order (see [`Row::datum_refs`]).
#[derive(Debug, Clone)]
pub struct DatumRefs<'a> {
    bytes: &'a [u8],
}

impl Row {
    /// The datums, borrowed from the row's bytes.
    pub fn datum_refs(&self) -> DatumRefs<'_> {
        DatumRefs {
            bytes: self.as_bytes(),
        }
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
            tag::INT64 => DatumRef::Int64(unzigzag(self.varint()?)),
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

    /// The next datum. A row's bytes always decode; were they not to, the iteration
    /// would end there rather than panic.
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

/// The `push_*` methods of [`RowPacker`] and [`RowsPacker`], both of which append whole
/// datums to their `bytes`.
macro_rules! push_methods {
    () => {
        /// Appends a datum.
        pub fn push(&mut self, datum: &Datum) {
            match datum {
                Datum::Null => self.push_null(),
                Datum::Bool(b) => self.push_bool(*b),
                Datum::Int64(n) => self.push_int64(*n),
                Datum::UInt64(n) => self.push_uint64(*n),
                Datum::Float64(x) => self.push_float64(*x),
                Datum::String(s) => self.push_str(s),
                Datum::Bytes(b) => self.push_bytes(b),
                Datum::Jsonb(s) => self.push_jsonb(s),
                Datum::TimestampMillis(ms) => self.push_timestamp_millis(*ms),
            }
        }

        /// Appends NULL.
        pub fn push_null(&mut self) {
            self.bytes.push(tag::NULL);
        }

        /// Appends a boolean.
        pub fn push_bool(&mut self, b: bool) {
            self.bytes.push(if b { tag::TRUE } else { tag::FALSE });
        }

        /// Appends a signed integer.
        pub fn push_int64(&mut self, n: i64) {
            self.bytes.push(tag::INT64);
            put_varint(&mut self.bytes, zigzag(n));
        }

        /// Appends an unsigned integer.
        pub fn push_uint64(&mut self, n: u64) {
            self.bytes.push(tag::UINT64);
            put_varint(&mut self.bytes, n);
        }

        /// Appends a float.
        pub fn push_float64(&mut self, x: f64) {
            self.bytes.push(tag::FLOAT64);
            self.bytes.extend_from_slice(&x.to_le_bytes());
        }

        /// Appends a string.
        pub fn push_str(&mut self, s: &str) {
            self.push_len_prefixed(tag::STRING, s.as_bytes());
        }

        /// Appends a byte string.
        pub fn push_bytes(&mut self, b: &[u8]) {
            self.push_len_prefixed(tag::BYTES, b);
        }

        /// Appends a JSON document.
        pub fn push_jsonb(&mut self, json: &str) {
            self.push_len_prefixed(tag::JSONB, json.as_bytes());
        }

        /// Appends a timestamp in milliseconds since the Unix epoch.
        pub fn push_timestamp_millis(&mut self, ms: u64) {
            self.bytes.push(tag::TIMESTAMP);
            put_varint(&mut self.bytes, ms);
        }

        fn push_len_prefixed(&mut self, tag: u8, payload: &[u8]) {
            self.bytes.push(tag);
            put_varint(&mut self.bytes, payload.len() as u64);
            self.bytes.extend_from_slice(payload);
        }
    };
}

/// Builds a [`Row`] datum by datum from borrowed values.
///
/// ```
/// use strata_controller_api::{Datum, Row, RowPacker};
///
/// let mut packer = RowPacker::with_capacity(16);
/// packer.push_int64(-3);
/// packer.push_str("hi");
/// packer.push_null();
/// let row = packer.finish();
/// assert_eq!(row, Row::pack(&[Datum::Int64(-3), Datum::String("hi".into()), Datum::Null]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RowPacker {
    bytes: Vec<u8>,
}

impl RowPacker {
    /// A packer whose first row needs no reallocation up to `bytes` encoded bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        RowPacker {
            bytes: Vec::with_capacity(bytes),
        }
    }

    push_methods!();

    /// The row packed so far; the packer is left empty, with no capacity.
    pub fn finish(&mut self) -> Row {
        Row::from_packed(Bytes::from(std::mem::take(&mut self.bytes)))
    }
}

/// Packs many rows into one buffer that the finished rows share: one allocation for
/// all of them instead of one per row, for code that builds rows in bulk (decoding a
/// part of a shard). The buffer is freed when the last of its rows is dropped.
///
/// ```
/// use strata_controller_api::{Datum, Row, RowsPacker};
///
/// let mut rows = RowsPacker::with_capacity(2, 16);
/// for i in 0..2 {
///     rows.push_int64(i);
///     rows.end_row();
/// }
/// let built: Vec<Row> = rows.finish().collect();
/// assert_eq!(built, vec![Row::pack(&[Datum::Int64(0)]), Row::pack(&[Datum::Int64(1)])]);
/// ```
#[derive(Debug, Default)]
pub struct RowsPacker {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl RowsPacker {
    /// A packer for about `rows` rows of `bytes` encoded bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        RowsPacker {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(rows),
        }
    }

    push_methods!();

    /// Ends the current row (an empty row if nothing was pushed since the last end).
    pub fn end_row(&mut self) {
        self.ends.push(self.bytes.len());
    }

    /// The rows ended so far, in order; datums pushed after the last end are dropped.
    pub fn finish(self) -> impl ExactSizeIterator<Item = Row> {
        let buffer = Bytes::from(self.bytes);
        let mut start = 0;
        self.ends.into_iter().map(move |end| {
            let row = Row::from_packed(buffer.slice(start..end));
            start = end;
            row
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arbitrary::arb_datum;
    use proptest::prelude::*;

    fn pack(packer: &mut RowPacker, d: &Datum) {
        match d {
            Datum::Null => packer.push_null(),
            Datum::Bool(x) => packer.push_bool(*x),
            Datum::Int64(x) => packer.push_int64(*x),
            Datum::UInt64(x) => packer.push_uint64(*x),
            Datum::Float64(x) => packer.push_float64(*x),
            Datum::String(x) => packer.push_str(x),
            Datum::Bytes(x) => packer.push_bytes(x),
            Datum::Jsonb(x) => packer.push_jsonb(x),
            Datum::TimestampMillis(x) => packer.push_timestamp_millis(*x),
        }
    }

    proptest! {
        #[test]
        fn borrowed_datums_match_unpack(datums in proptest::collection::vec(arb_datum(), 0..12)) {
            let row = Row::pack(&datums);
            let borrowed: Vec<Datum> = row.datum_refs().map(|d| d.to_datum()).collect();
            prop_assert_eq!(borrowed, datums.clone());
            let types: Vec<_> = row.datum_refs().map(|d| d.scalar_type()).collect();
            let expected: Vec<_> = datums.iter().map(Datum::scalar_type).collect();
            prop_assert_eq!(types, expected);
        }

        #[test]
        fn a_packed_row_is_the_row_pack_builds_and_decodes(
            datums in proptest::collection::vec(arb_datum(), 0..12),
        ) {
            let mut packer = RowPacker::default();
            for d in &datums {
                pack(&mut packer, d);
            }
            let row = packer.finish();
            prop_assert_eq!(&row, &Row::pack(&datums));
            prop_assert_eq!(Row::from_bytes(row.as_bytes().to_vec()), Ok(row));
            prop_assert!(packer.finish().is_empty());
        }

        #[test]
        fn rows_packed_together_are_the_rows_packed_alone(
            rows in proptest::collection::vec(proptest::collection::vec(arb_datum(), 0..5), 0..8),
        ) {
            let mut together = RowsPacker::default();
            for datums in &rows {
                for d in datums {
                    together.push(d);
                }
                together.end_row();
            }
            // Datums after the last end are not a row.
            together.push_null();
            let built: Vec<Row> = together.finish().collect();
            let alone: Vec<Row> = rows.iter().map(Row::pack).collect();
            prop_assert_eq!(&built, &alone);
            for row in built {
                prop_assert_eq!(Row::from_bytes(row.as_bytes().to_vec()), Ok(row.clone()));
            }
        }
    }

    #[test]
    fn bytes_that_do_not_decode_end_the_iteration() {
        // `Row` never holds such bytes; the iterator's answer to them is still no panic.
        let row = Row::pack(&[Datum::Int64(7)]);
        let mut refs = row.datum_refs();
        refs.bytes = &[tag::INT64, 0x80];
        assert_eq!(refs.next(), None);
        assert_eq!(refs.next(), None);
    }
}
