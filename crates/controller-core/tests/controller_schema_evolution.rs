//! `ALTER TABLE … ADD COLUMN` through the real controller: write, alter, write, and
//! read across both versions, before and after a restart; readers of the old version
//! keep working; incompatible changes are typed errors that change nothing.

#![cfg(test)]

mod controller_support;

use controller_support::*;
use strata_controller_api::{
    CollectionDescription, Collections, Datum, Reads, RelationDesc, Row, ScalarType, StorageError,
    Tables, Timestamp,
};
use strata_persist_backend::PersistClient;

/// `desc()` plus a nullable `note`.
fn desc_v2() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .with_column("s", ScalarType::String.nullable(true))
        .with_column("note", ScalarType::String.nullable(true))
        .finish()
}

/// `row(x)` as the new version sees it: with `note`.
fn row_v2(x: i64, note: Option<&str>) -> Row {
    let mut datums = row(x).unpack();
    datums.push(note.map_or(Datum::Null, |n| Datum::String(n.to_owned())));
    Row::pack(&datums)
}

#[tokio::test]
async fn a_table_gains_a_column_and_reads_across_both_versions() {
    for env in backends() {
        let table = id(1);
        let mut ctl = env.controller(false).await;
        create_tables(&env, &mut ctl, &[table], t(0)).await;
        append(&mut ctl, 1, vec![(table, vec![(row(1), 1), (row(2), 1)])]).await;

        // An incompatible change is refused, and the table goes on as it was.
        let retyped = RelationDesc::builder()
            .with_column("x", ScalarType::String.nullable(false))
            .with_column("s", ScalarType::String.nullable(true))
            .finish();
        let refused = ctl.alter_table_desc(table, retyped, t(2), t(3)).await;
        assert!(
            matches!(&refused, Err(StorageError::IncompatibleAlter { id, reason }) if *id == table && reason.contains("column 0")),
            "{refused:?}"
        );
        append(&mut ctl, 2, vec![(table, vec![(row(3), 1)])]).await;

        ctl.alter_table_desc(table, desc_v2(), t(3), t(4))
            .await
            .unwrap();
        assert_eq!(
            ctl.collection_metadata(table).unwrap().relation_desc,
            desc_v2()
        );
        // Rows of the old version are refused now; the new version's are written.
        assert!(matches!(
            ctl.append_table(t(5), t(6), vec![(table, vec![(row(9), 1)])]),
            Err(StorageError::InvalidRow { .. })
        ));
        append(
            &mut ctl,
            5,
            vec![(
                table,
                vec![(row_v2(4, Some("added")), 1), (row_v2(5, None), 1)],
            )],
        )
        .await;

        let expected = as_map(vec![
            (row_v2(1, None), 1),
            (row_v2(2, None), 1),
            (row_v2(3, None), 1),
            (row_v2(4, Some("added")), 1),
            (row_v2(5, None), 1),
        ]);
        assert_eq!(
            as_map(ctl.snapshot(table, t(5)).await.unwrap()),
            expected,
            "{}",
            env.url
        );
        // A time before the alter reads under the new version too.
        assert_eq!(
            as_map(ctl.snapshot(table, t(2)).await.unwrap()),
            as_map(vec![
                (row_v2(1, None), 1),
                (row_v2(2, None), 1),
                (row_v2(3, None), 1)
            ])
        );

        // A reader of the old version (say, a consumer not yet upgraded) keeps working.
        let shard = ctl.collection_metadata(table).unwrap().data_shard;
        let outside = PersistClient::open(&env.url).await.unwrap();
        let mut old_reader = outside
            .open_leased_reader::<Timestamp>(shard, desc())
            .await
            .unwrap();
        let old_view: Vec<(Row, i64)> = old_reader
            .snapshot(&t(5))
            .await
            .unwrap()
            .into_iter()
            .map(|(data, _, diff)| (data.unwrap(), diff))
            .collect();
        assert_eq!(
            as_map(old_view),
            as_map((1..=5).map(|x| (row(x), 1)).collect())
        );
        drop(old_reader);
        drop(ctl);

        // After a restart (the host passes the new version) everything reads the same.
        let mut ctl = env.controller(false).await;
        ctl.create_collections(
            &env.metadata(),
            Some(t(6)),
            vec![(table, CollectionDescription::table(desc_v2()))],
        )
        .await
        .unwrap();
        assert_eq!(as_map(ctl.snapshot(table, t(5)).await.unwrap()), expected);
        append(
            &mut ctl,
            7,
            vec![(table, vec![(row_v2(6, Some("after")), 1)])],
        )
        .await;
        assert_eq!(ctl.snapshot(table, t(7)).await.unwrap().len(), 6);
    }
}
