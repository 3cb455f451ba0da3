//! The rows of the txns shard and their encoding.
//!
//! Every row names a data shard, a kind, the time code it takes effect at and a
//! payload: the relation description for a registration, nothing for a forget, and the
//! prost-encoded batch for a commit. A row is live while its diff sums to `+1`; it is
//! retracted (diff `-1` at a later time) once it no longer matters, which keeps the
//! txns shard small. The commit time is a column, so a snapshot at any `as_of` still
//! tells each row's time.

use bytes::Bytes;
use prost::Message;
use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, ShardId};

use crate::state::HollowBatch;

/// The relation every txns shard stores: `(data_shard, kind, ts, payload)`.
pub fn txns_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("data_shard", ScalarType::String.nullable(false))
        .with_column("kind", ScalarType::UInt64.nullable(false))
        .with_column("ts", ScalarType::UInt64.nullable(false))
        .with_column("payload", ScalarType::Bytes.nullable(false))
        .finish()
}

const REGISTER: u64 = 0;
const FORGET: u64 = 1;
const BATCH: u64 = 2;

/// One decoded row of the txns shard. Times are time codes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TxnsRow {
    /// `shard` is written through txns from `ts` on; `schema` is its description JSON.
    Register {
        shard: ShardId,
        ts: u64,
        schema: String,
    },
    /// `shard` leaves txns at `ts`: its upper becomes `ts + 1` once applied.
    Forget { shard: ShardId, ts: u64 },
    /// A committed batch of `shard` at `ts`, not yet known to be applied by everyone.
    Batch {
        shard: ShardId,
        ts: u64,
        batch: HollowBatch,
    },
}

impl TxnsRow {
    /// The data shard the row is about.
    pub(crate) fn shard(&self) -> ShardId {
        match self {
            TxnsRow::Register { shard, .. }
            | TxnsRow::Forget { shard, .. }
            | TxnsRow::Batch { shard, .. } => *shard,
        }
    }

    /// Packs the row.
    pub(crate) fn encode(&self) -> Row {
        let (shard, kind, ts, payload) = match self {
            TxnsRow::Register { shard, ts, schema } => {
                (shard, REGISTER, ts, schema.as_bytes().to_vec())
            }
            TxnsRow::Forget { shard, ts } => (shard, FORGET, ts, Vec::new()),
            TxnsRow::Batch { shard, ts, batch } => (shard, BATCH, ts, batch.encode_to_vec()),
        };
        Row::pack(&[
            Datum::String(shard.to_string()),
            Datum::UInt64(kind),
            Datum::UInt64(*ts),
            Datum::Bytes(payload),
        ])
    }

    /// Unpacks a row; the error says what is wrong with it.
    pub(crate) fn decode(row: &Row) -> Result<TxnsRow, String> {
        let datums = row.unpack();
        let [
            Datum::String(shard),
            Datum::UInt64(kind),
            Datum::UInt64(ts),
            Datum::Bytes(payload),
        ] = datums.as_slice()
        else {
            return Err(format!("row {datums:?} does not match the txns relation"));
        };
        let shard: ShardId = shard
            .parse()
            .map_err(|e| format!("bad data shard id: {e}"))?;
        let ts = *ts;
        match *kind {
            REGISTER => {
                let schema = String::from_utf8(payload.clone())
                    .map_err(|e| format!("registration of {shard}: {e}"))?;
                serde_json::from_str::<RelationDesc>(&schema)
                    .map_err(|e| format!("registration of {shard}: {e}"))?;
                Ok(TxnsRow::Register { shard, ts, schema })
            }
            FORGET => Ok(TxnsRow::Forget { shard, ts }),
            BATCH => {
                let batch = HollowBatch::decode(Bytes::from(payload.clone()))
                    .map_err(|e| format!("batch of {shard}: {e}"))?;
                if batch.upper != ts.checked_add(1) || batch.lower > ts {
                    return Err(format!(
                        "batch of {shard} at {ts} has bounds [{}, {:?})",
                        batch.lower, batch.upper
                    ));
                }
                Ok(TxnsRow::Batch { shard, ts, batch })
            }
            other => Err(format!("unknown row kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(row: TxnsRow) {
        let packed = row.encode();
        txns_desc().validate_row(&packed).unwrap();
        assert_eq!(TxnsRow::decode(&packed).unwrap(), row);
    }

    #[test]
    fn rows_round_trip() {
        let shard = ShardId::from_bytes([3; 16]);
        let schema = serde_json::to_string(&txns_desc()).unwrap();
        check(TxnsRow::Register {
            shard,
            ts: 4,
            schema,
        });
        check(TxnsRow::Forget { shard, ts: 9 });
        let batch = HollowBatch {
            lower: 7,
            upper: Some(8),
            since: 7,
            len: 1,
            ..HollowBatch::default()
        };
        check(TxnsRow::Batch {
            shard,
            ts: 7,
            batch,
        });
    }

    #[test]
    fn malformed_rows_are_errors() {
        let bad = |datums: &[Datum]| TxnsRow::decode(&Row::pack(datums)).unwrap_err();
        let id = Datum::String(ShardId::from_bytes([1; 16]).to_string());
        bad(&[Datum::Int64(1)]);
        bad(&[
            Datum::String("nope".into()),
            Datum::UInt64(1),
            Datum::UInt64(0),
            Datum::Bytes(vec![]),
        ]);
        bad(&[
            id.clone(),
            Datum::UInt64(9),
            Datum::UInt64(0),
            Datum::Bytes(vec![]),
        ]);
        bad(&[
            id.clone(),
            Datum::UInt64(0),
            Datum::UInt64(0),
            Datum::Bytes(b"{".to_vec()),
        ]);
        bad(&[
            id.clone(),
            Datum::UInt64(2),
            Datum::UInt64(0),
            Datum::Bytes(vec![0xff, 0xff]),
        ]);
        let wrong_bounds = HollowBatch {
            lower: 0,
            upper: Some(3),
            ..HollowBatch::default()
        };
        bad(&[
            id,
            Datum::UInt64(2),
            Datum::UInt64(0),
            Datum::Bytes(wrong_bounds.encode_to_vec()),
        ]);
    }
}
