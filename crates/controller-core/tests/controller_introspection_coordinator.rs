//! Introspection a coordinator writes through the controller: the differential
//! `Compute*` kinds through `update_introspection_collection` (the controller keeps
//! their desired contents, also while read-only, and the collection manager writes
//! them), and statement logging through `append_introspection_updates`, with the same
//! guarantees as the controller's own kinds.

#![cfg(test)]

mod controller_support;
mod ingest_support;
mod introspection_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use controller_support::*;
use introspection_support::*;
use strata_controller_api::{
    Datum, GlobalId, Introspection, IntrospectionType, Lifecycle, Row, StorageError, StorageWriteOp,
};

const DEPENDENCIES: GlobalId = GlobalId::System(1);
const SQL_TEXT: GlobalId = GlobalId::System(2);

fn dependency(object: &str, on: &str) -> Row {
    Row::pack(&[Datum::String(object.into()), Datum::String(on.into())])
}

fn sql(hash: u8, text: &str) -> Row {
    Row::pack(&[Datum::Bytes(vec![hash]), Datum::String(text.into())])
}

fn rows(rows: &[Row]) -> BTreeMap<Row, i64> {
    rows.iter().map(|r| (r.clone(), 1)).collect()
}

const COLLECTIONS: [(GlobalId, IntrospectionType); 2] = [
    (DEPENDENCIES, IntrospectionType::ComputeDependencies),
    (SQL_TEXT, IntrospectionType::SqlText),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_writes_its_introspection_through_the_controller() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        create_introspection(&env, &mut ctl, &COLLECTIONS).await;
        let (a, b, c) = (
            dependency("u1", "u7"),
            dependency("u2", "u7"),
            dependency("u3", "u8"),
        );
        let kind = IntrospectionType::ComputeDependencies;
        ctl.update_introspection_collection(
            kind,
            StorageWriteOp::Append(vec![(a.clone(), 1), (b.clone(), 1)]),
        )
        .unwrap();
        assert_eq!(
            read_introspection(&mut ctl, DEPENDENCIES).await,
            rows(&[a.clone(), b.clone()])
        );
        let gone = a.clone();
        ctl.update_introspection_collection(
            kind,
            StorageWriteOp::DeleteWhere(Arc::new(move |row| *row == gone)),
        )
        .unwrap();
        assert_eq!(
            read_introspection(&mut ctl, DEPENDENCIES).await,
            rows(std::slice::from_ref(&b))
        );
        ctl.update_introspection_collection(kind, StorageWriteOp::Set(vec![(c.clone(), 1)]))
            .unwrap();
        assert_eq!(
            read_introspection(&mut ctl, DEPENDENCIES).await,
            rows(std::slice::from_ref(&c))
        );

        // Misuse is a typed error that changes nothing.
        for wrong in [
            IntrospectionType::ShardMapping,
            IntrospectionType::SourceStatistics,
            IntrospectionType::SqlText,
        ] {
            let refused =
                ctl.update_introspection_collection(wrong, StorageWriteOp::Append(vec![]));
            assert!(
                matches!(refused, Err(StorageError::InvalidUsage(_))),
                "{wrong:?}: {refused:?}"
            );
        }
        let refused =
            ctl.update_introspection_collection(kind, StorageWriteOp::Append(vec![(row(1), 1)]));
        assert!(
            matches!(refused, Err(StorageError::InvalidRow { id, .. }) if id == DEPENDENCIES),
            "{refused:?}"
        );
        assert_eq!(
            read_introspection(&mut ctl, DEPENDENCIES).await,
            rows(std::slice::from_ref(&c))
        );

        // Statement logging is append-only.
        let text = sql(1, "SELECT 1");
        ctl.append_introspection_updates(IntrospectionType::SqlText, vec![(text.clone(), 1)])
            .unwrap();
        assert_eq!(
            read_introspection(&mut ctl, SQL_TEXT).await,
            rows(std::slice::from_ref(&text))
        );
        drop(ctl);

        // A new controller starts from empty desired contents: what the coordinator
        // wrote before is retracted until it writes it again. The log stays.
        let mut ctl = env.controller(false).await;
        create_introspection(&env, &mut ctl, &COLLECTIONS).await;
        assert_eq!(read_introspection(&mut ctl, DEPENDENCIES).await, rows(&[]));
        assert_eq!(read_introspection(&mut ctl, SQL_TEXT).await, rows(&[text]));
        ctl.update_introspection_collection(kind, StorageWriteOp::Append(vec![(a.clone(), 1)]))
            .unwrap();
        assert_eq!(read_introspection(&mut ctl, DEPENDENCIES).await, rows(&[a]));
    }
}

/// Read-only, the controller keeps what the coordinator wants (a write gate refuses
/// and records any write meanwhile) and writes it once writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_controller_keeps_the_coordinators_contents_until_allow_writes() {
    let (env, location) = gated_env().await;
    location.gate.deny_all();
    let mut ctl = env.controller(true).await;
    create_introspection(&env, &mut ctl, &COLLECTIONS[..1]).await;
    let (a, b) = (dependency("u1", "u7"), dependency("u2", "u7"));
    let kind = IntrospectionType::ComputeDependencies;
    ctl.update_introspection_collection(kind, StorageWriteOp::Append(vec![(a.clone(), 1)]))
        .unwrap();
    ctl.update_introspection_collection(kind, StorageWriteOp::Append(vec![(b.clone(), 1)]))
        .unwrap();
    ctl.update_introspection_collection(kind, StorageWriteOp::Append(vec![(a, -1)]))
        .unwrap();
    assert!(matches!(
        ctl.sync_introspection().await,
        Err(StorageError::ReadOnly)
    ));
    location
        .gate
        .assert_nothing_refused("by a read-only controller's coordinator introspection");
    location.gate.allow();

    ctl.allow_writes(None).await.unwrap();
    assert_eq!(read_introspection(&mut ctl, DEPENDENCIES).await, rows(&[b]));
}
