//! A file sink of an auction subsource run by the controller: it holds its input,
//! writes output, and its drop is confirmed by the replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Antichain, Collections, ExportDescription, Exports, GlobalId, SinkConnection, StorageError,
    StorageResponse, Timestamp,
};

const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sink_runs_holds_its_input_and_is_dropped() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, Some(LIMIT)).await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(90);
    let connection = connection(3, 0);
    create_source(&env, &mut ctl, &source, &connection).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("auctions.ndjson");
    let sink = GlobalId::User(99);
    let export = ExportDescription {
        from: source.auctions,
        from_desc: ctl
            .collection_metadata(source.auctions)
            .unwrap()
            .relation_desc,
        connection: SinkConnection::File {
            path: path.to_str().unwrap().to_owned(),
        },
        as_of: Antichain::from_elem(t(0)),
        with_snapshot: true,
        instance_id: INSTANCE,
    };
    let mut missing = export.clone();
    missing.instance_id = strata_controller_api::InstanceId(42);
    assert!(matches!(
        ctl.create_exports(vec![(sink, missing)]).await,
        Err(StorageError::InstanceMissing(_))
    ));
    ctl.create_exports(vec![(sink, export.clone())])
        .await
        .unwrap();
    let mut changed = export.clone();
    changed.with_snapshot = false;
    assert!(matches!(
        ctl.create_exports(vec![(sink, changed)]).await,
        Err(StorageError::SinkIdReused(_))
    ));

    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the sink's upper",
        |ctl, _| {
            upper(ctl, source.auctions) >= ROUNDS
                && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
        },
    )
    .await;
    ctl.drop_sinks(vec![sink]).unwrap();
    pump_until(&env, &mut ctl, &mut responses, "the sink drop", |_, r| {
        dropped(r, sink)
    })
    .await;
    assert!(dropped_status(&responses, sink));
    // Without the sink's hold the input's since follows its upper again.
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the input's since",
        |ctl, _| since(ctl, source.auctions) == ROUNDS - 1,
    )
    .await;
}
