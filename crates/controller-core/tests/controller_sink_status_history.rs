//! A dropped sink's statuses, its final `Dropped` included, land in the sink status
//! history and never in the source status history, on a first run and after the
//! controller restarted and the sink was created again under the same id.

#![cfg(test)]

mod controller_support;
mod ingest_support;
mod introspection_support;

use std::collections::BTreeMap;

use controller_support::*;
use ingest_support::*;
use introspection_support::*;
use strata_controller_api::{
    Collections, ExportDescription, Exports, GlobalId, IntrospectionType, Lifecycle, Row,
    SinkConnection, Status, StorageResponse, Timestamp,
};
use strata_controller_core::Controller;
use strata_introspection::status::status_from_row;

const SOURCE_STATUS: GlobalId = GlobalId::System(3);
const SINK_STATUS: GlobalId = GlobalId::System(4);

/// The statuses of `id` in a status history, as `(status, replica)`, oldest first.
fn statuses_of(rows: &BTreeMap<Row, i64>, id: GlobalId) -> Vec<(Status, Option<String>)> {
    let mut updates: Vec<_> = rows
        .iter()
        .filter(|(_, diff)| **diff > 0)
        .filter_map(|(row, _)| status_from_row(row))
        .filter(|u| u.id == id)
        .collect();
    updates.sort_by_key(|u| u.timestamp_ms);
    updates
        .into_iter()
        .map(|u| (u.status, u.replica_id.map(|r| r.to_string())))
        .collect()
}

/// Runs a file sink of `from` until it is running, drops it, and waits for the drop.
async fn run_and_drop_sink(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    from: GlobalId,
    sink: GlobalId,
    path: &std::path::Path,
) {
    let export = ExportDescription {
        from,
        from_desc: ctl.collection_metadata(from).unwrap().relation_desc,
        connection: SinkConnection::File {
            path: path.to_str().unwrap().to_owned(),
        },
        as_of: ctl.collection_frontiers(from).unwrap().since,
        with_snapshot: true,
        instance_id: INSTANCE,
    };
    ctl.create_exports(vec![(sink, export)]).await.unwrap();
    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(env, ctl, &mut responses, "the sink running", |_, r| {
        r.iter().any(|r| match r {
            StorageResponse::StatusUpdates(updates) => updates
                .iter()
                .any(|u| u.id == sink && u.status == Status::Running),
            _ => false,
        })
    })
    .await;
    ctl.drop_sinks(vec![sink]).unwrap();
    pump_until(env, ctl, &mut responses, "the sink drop", |_, r| {
        dropped(r, sink)
    })
    .await;
    assert!(dropped_status(&responses, sink));
}

/// Checks that the sink's statuses are all in the sink history, with a `Running` from
/// its replica, and none in the source history; returns the sink's history.
async fn check_histories(
    ctl: &mut Controller<Timestamp>,
    sink: GlobalId,
) -> Vec<(Status, Option<String>)> {
    let sources = read_introspection(ctl, SOURCE_STATUS).await;
    let sinks = read_introspection(ctl, SINK_STATUS).await;
    assert_eq!(
        statuses_of(&sources, sink),
        Vec::new(),
        "sink statuses in the source status history"
    );
    let history = statuses_of(&sinks, sink);
    assert!(
        history
            .iter()
            .any(|(s, r)| *s == Status::Running && r.is_some()),
        "{history:?}"
    );
    history
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sinks_status_lands_in_the_sink_status_history() {
    let env = mem_env();
    let (mut ctl, servers) = controller(&env, false, Some(60)).await;
    add_replica(&mut ctl, 1);
    create_introspection(
        &env,
        &mut ctl,
        &[
            (SOURCE_STATUS, IntrospectionType::SourceStatusHistory),
            (SINK_STATUS, IntrospectionType::SinkStatusHistory),
        ],
    )
    .await;
    let source = Auction::new(150);
    create_source(&env, &mut ctl, &source, &connection(3, 0)).await;
    let out = tempfile::tempdir().unwrap();
    let sink = GlobalId::User(159);

    run_and_drop_sink(
        &env,
        &mut ctl,
        source.auctions,
        sink,
        &out.path().join("first.ndjson"),
    )
    .await;
    let history = check_histories(&mut ctl, sink).await;
    assert_eq!(
        history.last(),
        Some(&(Status::Dropped, None)),
        "the controller's Dropped ends the sink's history: {history:?}"
    );
    // The source's own history is where its statuses go.
    let sources = read_introspection(&mut ctl, SOURCE_STATUS).await;
    assert!(!statuses_of(&sources, source.ingestion).is_empty());

    // A second run: a new controller over the same catalog and replica creates the
    // sink again under the same id and drops it.
    drop(ctl);
    let mut ctl = controller_over(&env, false, &servers, |_| server_config(Some(60))).await;
    add_replica(&mut ctl, 1);
    ctl.create_collections(
        &env.metadata(),
        None,
        descriptions(&source, &connection(3, 0))
            .into_iter()
            .chain([
                (
                    SOURCE_STATUS,
                    introspection(IntrospectionType::SourceStatusHistory),
                ),
                (
                    SINK_STATUS,
                    introspection(IntrospectionType::SinkStatusHistory),
                ),
            ])
            .collect(),
    )
    .await
    .unwrap();
    ctl.initialization_complete();
    run_and_drop_sink(
        &env,
        &mut ctl,
        source.auctions,
        sink,
        &out.path().join("second.ndjson"),
    )
    .await;
    check_histories(&mut ctl, sink).await;
}
