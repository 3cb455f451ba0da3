//! Rows of the introspection collections, decoded with the schemas of
//! `strata_introspection::schema` into what `strata top` shows. Rows that do not fit
//! a schema are skipped: a view must not fail on one odd row.

use std::collections::BTreeMap;

use strata_controller_api::{Datum, IntrospectionType, RelationDesc, Row};
use strata_introspection::schema::desc;

use super::model::{Frontier, ReportedFrontiers, StatusEntry};

/// The introspection collection whose schema is `schema` (a shard state's `schema`
/// field). The two status histories share a schema and are both reported as
/// [`IntrospectionType::SourceStatusHistory`].
pub(crate) fn recognise(schema: Option<&serde_json::Value>) -> Option<IntrospectionType> {
    let schema: RelationDesc = serde_json::from_value(schema?.clone()).ok()?;
    IntrospectionType::ALL
        .into_iter()
        .find(|typ| desc(*typ) == schema)
}

/// Whether `top` reads the rows of this kind of collection.
pub(crate) fn is_read(typ: IntrospectionType) -> bool {
    matches!(
        typ,
        IntrospectionType::ShardMapping
            | IntrospectionType::Frontiers
            | IntrospectionType::SourceStatusHistory
            | IntrospectionType::SinkStatusHistory
    )
}

/// The datums of `row` by column name of `typ`'s schema, if the row fits it.
fn columns(typ: IntrospectionType, row: &Row) -> Option<BTreeMap<String, Datum>> {
    let d = desc(typ);
    d.validate_row(row).ok()?;
    Some(d.names().map(str::to_owned).zip(row.unpack()).collect())
}

fn text(cols: &BTreeMap<String, Datum>, name: &str) -> Option<String> {
    match cols.get(name)? {
        Datum::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// The newest status of each object in status history rows (ties: the later row wins).
pub(crate) fn statuses<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    into: &mut BTreeMap<String, StatusEntry>,
) {
    for row in rows {
        let Some(cols) = columns(IntrospectionType::SourceStatusHistory, row) else {
            continue;
        };
        let (Some(Datum::TimestampMillis(at)), Some(id), Some(status)) = (
            cols.get("occurred_at"),
            text(&cols, "id"),
            text(&cols, "status"),
        ) else {
            continue;
        };
        let entry = StatusEntry {
            occurred_at: *at,
            status,
            error: text(&cols, "error"),
        };
        match into.get(&id) {
            Some(seen) if seen.occurred_at > entry.occurred_at => {}
            _ => {
                into.insert(id, entry);
            }
        }
    }
}

/// The Frontiers collection's rows by object id.
pub(crate) fn frontiers<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> BTreeMap<String, ReportedFrontiers> {
    rows.into_iter()
        .filter_map(|row| {
            let cols = columns(IntrospectionType::Frontiers, row)?;
            let report = ReportedFrontiers {
                read: Frontier::from_text(text(&cols, "read_frontier").as_deref()),
                write: Frontier::from_text(text(&cols, "upper").as_deref()),
            };
            Some((text(&cols, "object_id")?, report))
        })
        .collect()
}

/// The ShardMapping collection's rows: object id to shard id.
pub(crate) fn shard_mapping<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
) -> BTreeMap<String, String> {
    rows.into_iter()
        .filter_map(|row| {
            let cols = columns(IntrospectionType::ShardMapping, row)?;
            Some((text(&cols, "object_id")?, text(&cols, "shard_id")?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Datum {
        Datum::String(text.to_owned())
    }

    fn status_row(at: u64, id: &str, status: &str, error: Option<&str>) -> Row {
        Row::pack(&[
            Datum::TimestampMillis(at),
            s(id),
            s(status),
            error.map_or(Datum::Null, s),
            Datum::Null,
            s("r1"),
        ])
    }

    #[test]
    fn recognises_every_schema_by_value() {
        for typ in IntrospectionType::ALL {
            let json = serde_json::to_value(desc(typ)).unwrap();
            let got = recognise(Some(&json)).unwrap();
            assert_eq!(desc(got), desc(typ), "{typ:?}");
        }
        let other = serde_json::to_value(
            RelationDesc::builder()
                .with_column(
                    "x",
                    strata_controller_api::ScalarType::Int64.nullable(false),
                )
                .finish(),
        )
        .unwrap();
        assert_eq!(recognise(Some(&other)), None);
        assert_eq!(recognise(Some(&serde_json::json!("junk"))), None);
        assert_eq!(recognise(None), None);
    }

    #[test]
    fn newest_status_wins_per_object() {
        let rows = vec![
            status_row(5, "u1", "starting", None),
            status_row(9, "u1", "stalled", Some("boom")),
            status_row(7, "u1", "running", None),
            status_row(3, "u2", "running", None),
            // Does not fit the schema: skipped.
            Row::pack(&[s("u3"), s("running")]),
        ];
        let mut got = BTreeMap::new();
        statuses(&rows, &mut got);
        assert_eq!(got.len(), 2);
        assert_eq!(got["u1"].status, "stalled");
        assert_eq!(got["u1"].error.as_deref(), Some("boom"));
        assert_eq!(got["u2"].status, "running");
        assert_eq!(got["u2"].error, None);
    }

    #[test]
    fn frontiers_and_shard_mapping_rows() {
        let rows = vec![
            Row::pack(&[s("u1"), s("[3]"), s("[10]")]),
            Row::pack(&[s("u2"), Datum::Null, s("[]")]),
            Row::pack(&[s("u3")]),
        ];
        let got = frontiers(&rows);
        assert_eq!(got.len(), 2);
        assert_eq!(got["u1"].read, Frontier::At(3));
        assert_eq!(got["u1"].write, Frontier::At(10));
        assert_eq!(got["u2"].read, Frontier::Unknown);
        assert_eq!(got["u2"].write, Frontier::Closed);

        let rows = vec![Row::pack(&[s("u1"), s("sabc")]), Row::pack(&[s("u2")])];
        let got = shard_mapping(&rows);
        assert_eq!(got, BTreeMap::from([("u1".to_owned(), "sabc".to_owned())]));
    }
}
