//! A decoder of the logical replication messages of `pgoutput` (protocol version 1,
//! text format) that the Postgres source needs. Pure: bytes in, messages out, and any
//! malformed input is a [`DecodeError`], never a panic.

use bytes::{Buf, Bytes};

/// One column of a relation, as a `Relation` message describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// The column's name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Its type modifier.
    pub type_modifier: i32,
}

/// A column value of a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value (not sent).
    Unchanged,
    /// The value's text form.
    Text(String),
}

/// A decoded `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The schema of a relation, sent before its first change in a session.
    Relation {
        /// The relation's OID.
        oid: u32,
        /// Its schema.
        namespace: String,
        /// Its name.
        name: String,
        /// Its replica identity setting (`f` for FULL).
        replica_identity: u8,
        /// Its columns.
        columns: Vec<RelationColumn>,
    },
    /// A row was inserted.
    Insert {
        /// The relation.
        oid: u32,
        /// The new row.
        new: Vec<TupleValue>,
    },
    /// A row was updated; `old` is present under REPLICA IDENTITY FULL (or when the
    /// key changed).
    Update {
        /// The relation.
        oid: u32,
        /// The old row or its key, if sent.
        old: Option<Vec<TupleValue>>,
        /// The new row.
        new: Vec<TupleValue>,
    },
    /// A row was deleted.
    Delete {
        /// The relation.
        oid: u32,
        /// The old row (or its key only, without REPLICA IDENTITY FULL).
        old: Vec<TupleValue>,
        /// Whether `old` is the whole row (`O`) rather than the key (`K`).
        full: bool,
    },
    /// Relations were truncated.
    Truncate {
        /// The relations.
        oids: Vec<u32>,
    },
    /// Something the source does not need (origin, type, logical message).
    Other(u8),
}

/// Bytes that are not a `pgoutput` message this decoder knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message: {0}")]
pub struct DecodeError(pub String);

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), DecodeError> {
    if buf.remaining() < n {
        return Err(DecodeError(format!(
            "{what}: needs {n} bytes, {} left",
            buf.remaining()
        )));
    }
    Ok(())
}

fn u8_(buf: &mut Bytes, what: &str) -> Result<u8, DecodeError> {
    need(buf, 1, what)?;
    Ok(buf.get_u8())
}

fn i16_(buf: &mut Bytes, what: &str) -> Result<i16, DecodeError> {
    need(buf, 2, what)?;
    Ok(buf.get_i16())
}

fn i32_(buf: &mut Bytes, what: &str) -> Result<i32, DecodeError> {
    need(buf, 4, what)?;
    Ok(buf.get_i32())
}

fn u32_(buf: &mut Bytes, what: &str) -> Result<u32, DecodeError> {
    need(buf, 4, what)?;
    Ok(buf.get_u32())
}

/// A NUL-terminated string.
fn string(buf: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    let end = buf
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| DecodeError(format!("{what}: unterminated string")))?;
    let bytes = buf.split_to(end);
    buf.advance(1);
    String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError(format!("{what}: {e}")))
}

fn tuple(buf: &mut Bytes) -> Result<Vec<TupleValue>, DecodeError> {
    let count = i16_(buf, "tuple column count")?;
    let count = usize::try_from(count)
        .map_err(|_| DecodeError(format!("negative tuple column count {count}")))?;
    let mut values = Vec::with_capacity(count.min(1600));
    for _ in 0..count {
        let value = match u8_(buf, "tuple column kind")? {
            b'n' => TupleValue::Null,
            b'u' => TupleValue::Unchanged,
            b't' => {
                let len = i32_(buf, "text value length")?;
                let len = usize::try_from(len)
                    .map_err(|_| DecodeError(format!("negative value length {len}")))?;
                need(buf, len, "text value")?;
                let bytes = buf.split_to(len);
                TupleValue::Text(
                    String::from_utf8(bytes.to_vec())
                        .map_err(|e| DecodeError(format!("text value: {e}")))?,
                )
            }
            b'b' => return Err(DecodeError("binary tuple values are not requested".into())),
            other => {
                return Err(DecodeError(format!(
                    "unknown tuple column kind {other:#04x}"
                )));
            }
        };
        values.push(value);
    }
    Ok(values)
}

/// Decodes one message (the payload of an `XLogData`).
pub fn decode(data: &Bytes) -> Result<Message, DecodeError> {
    let mut buf = data.clone();
    let tag = u8_(&mut buf, "message tag")?;
    let message = match tag {
        b'R' => {
            let oid = u32_(&mut buf, "relation oid")?;
            let namespace = string(&mut buf, "relation namespace")?;
            let name = string(&mut buf, "relation name")?;
            let replica_identity = u8_(&mut buf, "replica identity")?;
            let count = i16_(&mut buf, "relation column count")?;
            let count = usize::try_from(count)
                .map_err(|_| DecodeError(format!("negative column count {count}")))?;
            let mut columns = Vec::with_capacity(count.min(1600));
            for _ in 0..count {
                let _flags = u8_(&mut buf, "column flags")?;
                let name = string(&mut buf, "column name")?;
                let type_oid = u32_(&mut buf, "column type")?;
                let type_modifier = i32_(&mut buf, "column type modifier")?;
                columns.push(RelationColumn {
                    name,
                    type_oid,
                    type_modifier,
                });
            }
            Message::Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            }
        }
        b'I' => {
            let oid = u32_(&mut buf, "insert relation")?;
            match u8_(&mut buf, "insert tuple kind")? {
                b'N' => {}
                other => return Err(DecodeError(format!("insert tuple kind {other:#04x}"))),
            }
            Message::Insert {
                oid,
                new: tuple(&mut buf)?,
            }
        }
        b'U' => {
            let oid = u32_(&mut buf, "update relation")?;
            let mut old = None;
            let mut kind = u8_(&mut buf, "update tuple kind")?;
            if kind == b'K' || kind == b'O' {
                old = Some(tuple(&mut buf)?);
                kind = u8_(&mut buf, "update new tuple kind")?;
            }
            if kind != b'N' {
                return Err(DecodeError(format!("update tuple kind {kind:#04x}")));
            }
            Message::Update {
                oid,
                old,
                new: tuple(&mut buf)?,
            }
        }
        b'D' => {
            let oid = u32_(&mut buf, "delete relation")?;
            let full = match u8_(&mut buf, "delete tuple kind")? {
                b'O' => true,
                b'K' => false,
                other => return Err(DecodeError(format!("delete tuple kind {other:#04x}"))),
            };
            Message::Delete {
                oid,
                old: tuple(&mut buf)?,
                full,
            }
        }
        b'T' => {
            let count = u32_(&mut buf, "truncate relation count")?;
            let _options = u8_(&mut buf, "truncate options")?;
            let mut oids = Vec::new();
            for _ in 0..count {
                oids.push(u32_(&mut buf, "truncated relation")?);
            }
            Message::Truncate { oids }
        }
        other => Message::Other(other),
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn text(s: &str) -> Vec<u8> {
        let mut v = vec![b't'];
        v.extend_from_slice(&(s.len() as i32).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn message(parts: &[&[u8]]) -> Bytes {
        Bytes::from(parts.concat())
    }

    #[test]
    fn messages_decode_to_their_fields() {
        let relation = message(&[
            b"R",
            &16384u32.to_be_bytes(),
            b"public\0t\0f",
            &2i16.to_be_bytes(),
            b"\x01id\0",
            &20u32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            b"\x00name\0",
            &25u32.to_be_bytes(),
            &(-1i32).to_be_bytes(),
        ]);
        assert_eq!(
            decode(&relation).unwrap(),
            Message::Relation {
                oid: 16384,
                namespace: "public".into(),
                name: "t".into(),
                replica_identity: b'f',
                columns: vec![
                    RelationColumn {
                        name: "id".into(),
                        type_oid: 20,
                        type_modifier: -1
                    },
                    RelationColumn {
                        name: "name".into(),
                        type_oid: 25,
                        type_modifier: -1
                    },
                ],
            }
        );
        let new = [&2i16.to_be_bytes()[..], &text("7"), b"n"].concat();
        let old = [&2i16.to_be_bytes()[..], &text("7"), b"u"].concat();
        let cases: Vec<(Bytes, Message)> = vec![
            (
                message(&[b"I", &5u32.to_be_bytes(), b"N", &new]),
                Message::Insert {
                    oid: 5,
                    new: vec![TupleValue::Text("7".into()), TupleValue::Null],
                },
            ),
            (
                message(&[b"U", &5u32.to_be_bytes(), b"O", &old, b"N", &new]),
                Message::Update {
                    oid: 5,
                    old: Some(vec![TupleValue::Text("7".into()), TupleValue::Unchanged]),
                    new: vec![TupleValue::Text("7".into()), TupleValue::Null],
                },
            ),
            (
                message(&[b"U", &5u32.to_be_bytes(), b"N", &new]),
                Message::Update {
                    oid: 5,
                    old: None,
                    new: vec![TupleValue::Text("7".into()), TupleValue::Null],
                },
            ),
            (
                message(&[b"D", &5u32.to_be_bytes(), b"O", &new]),
                Message::Delete {
                    oid: 5,
                    old: vec![TupleValue::Text("7".into()), TupleValue::Null],
                    full: true,
                },
            ),
            (
                message(&[
                    b"T",
                    &2u32.to_be_bytes(),
                    b"\0",
                    &5u32.to_be_bytes(),
                    &6u32.to_be_bytes(),
                ]),
                Message::Truncate { oids: vec![5, 6] },
            ),
            (message(&[b"Y", b"whatever"]), Message::Other(b'Y')),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes).unwrap(), expected, "{bytes:?}");
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: Vec<Bytes> = vec![
            Bytes::new(),
            message(&[b"I", &5u32.to_be_bytes()]),
            message(&[b"I", &5u32.to_be_bytes(), b"X"]),
            message(&[
                b"I",
                &5u32.to_be_bytes(),
                b"N",
                &1i16.to_be_bytes(),
                b"t",
                &(99i32).to_be_bytes(),
                b"ab",
            ]),
            message(&[
                b"I",
                &5u32.to_be_bytes(),
                b"N",
                &1i16.to_be_bytes(),
                b"t",
                &(-1i32).to_be_bytes(),
            ]),
            message(&[b"I", &5u32.to_be_bytes(), b"N", &(-3i16).to_be_bytes()]),
            message(&[b"I", &5u32.to_be_bytes(), b"N", &1i16.to_be_bytes(), b"z"]),
            message(&[b"R", &5u32.to_be_bytes(), b"public"]),
            message(&[b"D", &5u32.to_be_bytes(), b"N"]),
            message(&[b"T", &3u32.to_be_bytes(), b"\0", &5u32.to_be_bytes()]),
        ];
        for bytes in cases {
            assert!(decode(&bytes).is_err(), "{bytes:?} decoded");
        }
    }
}
