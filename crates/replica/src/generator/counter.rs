//! `counter`: offset `n` inserts the row `(n + 1)`.

use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, SourceOutput};

use super::GeneratedUpdate;

pub(super) fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("counter", ScalarType::Int64.nullable(false))
        .finish()
}

pub(super) fn updates_at(offset: u64) -> Vec<GeneratedUpdate> {
    let value = i64::try_from(offset).map_or(i64::MAX, |n| n.saturating_add(1));
    vec![(SourceOutput::Primary, Row::pack(&[Datum::Int64(value)]), 1)]
}
