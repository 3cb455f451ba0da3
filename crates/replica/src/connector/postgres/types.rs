//! Postgres column types the source supports, and how their text form (the same from
//! `pgoutput` and from a snapshot query, with the session settings of
//! [`SESSION_OPTIONS`]) becomes a [`Datum`].
//!
//! | Postgres | Strata |
//! |---|---|
//! | `bool` | `Bool` |
//! | `int2`, `int4`, `int8` | `Int64` |
//! | `float4`, `float8` | `Float64` |
//! | `text`, `varchar`, `bpchar` | `String` |
//! | `numeric` | `String`, its exact text |
//! | `date`, `timestamp`, `timestamptz` | `String`, ISO 8601 (timestamptz in UTC) |
//! | `bytea` | `Bytes` |
//!
//! Dates and timestamps are text because `TimestampMillis` cannot hold a time before
//! 1970, and numeric because no Strata type holds it exactly.

use strata_controller_api::{Datum, ScalarType};

/// Session settings that pin the text form of values: ISO dates, UTC, and floats that
/// round-trip.
pub const SESSION_OPTIONS: &str =
    "-c DateStyle=ISO -c TimeZone=UTC -c extra_float_digits=3 -c bytea_output=hex";

/// The Strata type of a Postgres type, or `None` if the source does not support it.
pub fn scalar_type(oid: u32) -> Option<ScalarType> {
    Some(match oid {
        16 => ScalarType::Bool,
        17 => ScalarType::Bytes,
        20 | 21 | 23 => ScalarType::Int64,
        700 | 701 => ScalarType::Float64,
        25 | 1042 | 1043 | 1700 | 1082 | 1114 | 1184 => ScalarType::String,
        _ => return None,
    })
}

/// The datum of the text form `text` of a value of type `scalar`.
pub fn datum(scalar: ScalarType, text: &str) -> Result<Datum, String> {
    Ok(match scalar {
        ScalarType::Bool => match text {
            "t" => Datum::Bool(true),
            "f" => Datum::Bool(false),
            other => return Err(format!("{other:?} is not a bool")),
        },
        ScalarType::Int64 => Datum::Int64(
            text.parse()
                .map_err(|e| format!("{text:?} is not an integer: {e}"))?,
        ),
        ScalarType::Float64 => Datum::Float64(
            text.parse()
                .map_err(|e| format!("{text:?} is not a float: {e}"))?,
        ),
        ScalarType::Bytes => Datum::Bytes(hex_bytes(text)?),
        ScalarType::String => Datum::String(text.to_owned()),
        other => return Err(format!("the Postgres source does not produce {other:?}")),
    })
}

/// Decodes `bytea`'s hex output (`\x0aff`).
fn hex_bytes(text: &str) -> Result<Vec<u8>, String> {
    let hex = text
        .strip_prefix("\\x")
        .ok_or_else(|| format!("{text:?} is not hex bytea output"))?;
    if hex.len() % 2 != 0 {
        return Err(format!("{text:?} has an odd number of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn supported_types_map_and_others_do_not() {
        let cases = [
            (16, Some(ScalarType::Bool)),
            (21, Some(ScalarType::Int64)),
            (23, Some(ScalarType::Int64)),
            (20, Some(ScalarType::Int64)),
            (700, Some(ScalarType::Float64)),
            (701, Some(ScalarType::Float64)),
            (25, Some(ScalarType::String)),
            (1043, Some(ScalarType::String)),
            (1700, Some(ScalarType::String)),
            (1082, Some(ScalarType::String)),
            (1114, Some(ScalarType::String)),
            (1184, Some(ScalarType::String)),
            (17, Some(ScalarType::Bytes)),
            (114, None),  // json
            (2950, None), // uuid
            (1007, None), // int4[]
        ];
        for (oid, expected) in cases {
            assert_eq!(scalar_type(oid), expected, "oid {oid}");
        }
    }

    #[test]
    fn text_forms_become_datums() {
        let ok = [
            (ScalarType::Bool, "t", Datum::Bool(true)),
            (ScalarType::Bool, "f", Datum::Bool(false)),
            (ScalarType::Int64, "-32768", Datum::Int64(-32768)),
            (ScalarType::Float64, "1.5", Datum::Float64(1.5)),
            (
                ScalarType::Float64,
                "-Infinity",
                Datum::Float64(f64::NEG_INFINITY),
            ),
            (
                ScalarType::String,
                "12.3400",
                Datum::String("12.3400".into()),
            ),
            (
                ScalarType::Bytes,
                "\\x00ff10",
                Datum::Bytes(vec![0, 255, 16]),
            ),
            (ScalarType::Bytes, "\\x", Datum::Bytes(Vec::new())),
        ];
        for (scalar, text, expected) in ok {
            assert_eq!(datum(scalar, text).unwrap(), expected, "{text}");
        }
        let bad = [
            (ScalarType::Bool, "true"),
            (ScalarType::Int64, "1.5"),
            (ScalarType::Float64, "x"),
            (ScalarType::Bytes, "00ff"),
            (ScalarType::Bytes, "\\x0"),
            (ScalarType::Bytes, "\\xzz"),
            (ScalarType::UInt64, "1"),
        ];
        for (scalar, text) in bad {
            assert!(datum(scalar, text).is_err(), "{scalar:?} {text}");
        }
    }
}
