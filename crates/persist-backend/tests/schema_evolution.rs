//! Schema evolution of a shard: a relation gains nullable columns at its end. Parts
//! and inline batches written under either version read under both, before and after
//! compaction, on every backend kind that needs no server; any other change is a typed
//! error that changes nothing.

#![cfg(test)]

use strata_controller_api::{
    Antichain, Datum, IncompatibleSchema, RelationDesc, Row, ScalarType, ShardId, Timestamp,
};
use strata_persist_backend::{PersistClient, PersistError};

fn v1() -> RelationDesc {
    RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("name", ScalarType::String.nullable(true))
        .finish()
}

fn v2() -> RelationDesc {
    RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("name", ScalarType::String.nullable(true))
        .with_column("note", ScalarType::String.nullable(true))
        .finish()
}

fn row1(i: i64) -> Row {
    Row::pack(&[Datum::Int64(i), Datum::String(format!("n{i}"))])
}

fn row2(i: i64, note: Option<&str>) -> Row {
    let note = note.map_or(Datum::Null, |n| Datum::String(n.to_owned()));
    Row::pack(&[Datum::Int64(i), Datum::String(format!("n{i}")), note])
}

fn t(ms: u64) -> Timestamp {
    Timestamp::new(ms)
}

/// Appends `rows` at `ts` (upper `ts + 1`).
async fn write(
    client: &PersistClient,
    shard: ShardId,
    desc: RelationDesc,
    ts: u64,
    rows: Vec<Row>,
) {
    let mut writer = client.open_writer::<Timestamp>(shard, desc).await.unwrap();
    let updates: Vec<_> = rows.into_iter().map(|r| (Ok(r), t(ts), 1)).collect();
    writer
        .compare_and_append(
            &updates,
            Antichain::from_elem(t(ts)),
            Antichain::from_elem(t(ts + 1)),
        )
        .await
        .unwrap()
        .unwrap();
}

async fn read(client: &PersistClient, shard: ShardId, desc: RelationDesc, at: u64) -> Vec<Row> {
    let mut reader = client
        .open_leased_reader::<Timestamp>(shard, desc)
        .await
        .unwrap();
    let mut rows: Vec<Row> = reader
        .snapshot(&t(at))
        .await
        .unwrap()
        .into_iter()
        .map(|(data, _, diff)| {
            assert_eq!(diff, 1);
            data.unwrap()
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn old_and_new_versions_read_each_others_parts() {
    let dir = tempfile::tempdir().unwrap();
    let urls = [
        format!("mem://evolution-{}", uuid::Uuid::new_v4().simple()),
        format!("file://{}", dir.path().display()),
    ];
    for url in urls {
        let client = PersistClient::open(&url).await.unwrap();
        let shard = ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
        // Version 1: a small (inline) batch and a large one (in parts).
        write(&client, shard, v1(), 0, vec![row1(0)]).await;
        write(&client, shard, v1(), 1, (1..5000).map(row1).collect()).await;

        client.evolve_schema(shard, &v2()).await.unwrap();
        // The same version again changes nothing.
        client.evolve_schema(shard, &v2()).await.unwrap();
        write(&client, shard, v2(), 2, vec![row2(5000, Some("new"))]).await;
        write(
            &client,
            shard,
            v2(),
            3,
            (5001..9000).map(|i| row2(i, None)).collect(),
        )
        .await;

        let expected_v2: Vec<Row> = {
            let mut rows: Vec<Row> = (0..5000).map(|i| row2(i, None)).collect();
            rows.push(row2(5000, Some("new")));
            rows.extend((5001..9000).map(|i| row2(i, None)));
            rows.sort();
            rows
        };
        let expected_v1: Vec<Row> = {
            let mut rows: Vec<Row> = (0..9000).map(row1).collect();
            rows.sort();
            rows
        };
        assert_eq!(read(&client, shard, v2(), 3).await, expected_v2, "{url}");
        // A reader of the old version keeps working: the new column is left out.
        assert_eq!(read(&client, shard, v1(), 3).await, expected_v1, "{url}");

        // Compaction rewrites the parts under the shard's (new) version; both still read.
        while client.compact(shard, 8).await.unwrap() > 0 {}
        assert_eq!(read(&client, shard, v2(), 3).await, expected_v2, "{url}");
        assert_eq!(read(&client, shard, v1(), 3).await, expected_v1, "{url}");
        let state = client.inspect_shard(shard).await.unwrap();
        assert_eq!(state.schema, serde_json::to_value(v2()).unwrap());
    }
}

#[tokio::test]
async fn incompatible_changes_are_refused_and_change_nothing() {
    let client = PersistClient::open(&format!(
        "mem://evolution-{}",
        uuid::Uuid::new_v4().simple()
    ))
    .await
    .unwrap();
    let shard = ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
    write(&client, shard, v2(), 0, vec![row2(0, Some("x"))]).await;
    let not_null = RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("name", ScalarType::String.nullable(true))
        .with_column("note", ScalarType::String.nullable(true))
        .with_column("count", ScalarType::Int64.nullable(false))
        .finish();
    let cases = [
        (v1(), "dropped"),
        (not_null, "nullable"),
        (
            RelationDesc::builder()
                .with_column("id", ScalarType::String.nullable(false))
                .finish(),
            "change",
        ),
    ];
    for (desc, what) in cases {
        match client.evolve_schema(shard, &desc).await {
            Err(PersistError::IncompatibleSchema { shard: s, reason }) => {
                assert_eq!(s, shard);
                assert!(reason.to_string().contains(what), "{reason}");
                assert!(matches!(
                    reason,
                    IncompatibleSchema::ColumnDropped { .. }
                        | IncompatibleSchema::AddedNotNullable { .. }
                        | IncompatibleSchema::ColumnChanged { .. }
                ));
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    let state = client.inspect_shard(shard).await.unwrap();
    assert_eq!(state.schema, serde_json::to_value(v2()).unwrap());
    assert_eq!(
        read(&client, shard, v2(), 0).await,
        vec![row2(0, Some("x"))]
    );
}
