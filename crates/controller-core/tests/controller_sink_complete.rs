//! A sink whose input is complete (its upper reached `[]`) completes too: it writes
//! everything, its upper reaches `[]`, and it stops holding its input, as the
//! reference releases it. Dropping it afterwards is final at once.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, ExportDescription, Exports,
    Lifecycle, ReadPolicy, Reads, SinkConnection, Timestamp,
};
use strata_persist_backend::PersistClient;

#[tokio::test]
async fn a_sink_of_a_complete_input_releases_it() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, None).await;
    add_replica(&mut ctl, 1);
    let (view, sink) = (id(1), id(2));
    env.prepare(&ctl, &[view], &[]).await;
    ctl.create_collections(
        &env.metadata(),
        None,
        vec![(
            view,
            CollectionDescription::for_source(desc(), DataSource::Other),
        )],
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    ctl.create_exports(vec![(
        sink,
        ExportDescription {
            from: view,
            from_desc: desc(),
            connection: SinkConnection::File {
                path: path.to_str().unwrap().to_owned(),
            },
            as_of: Antichain::from_elem(t(0)),
            with_snapshot: true,
            instance_id: INSTANCE,
        },
    )])
    .await
    .unwrap();
    ctl.initialization_complete();
    // Left to itself the view would be readable from 5 on; only the sink holds it back.
    ctl.set_read_policy(vec![(
        view,
        ReadPolicy::ValidFrom(Antichain::from_elem(t(5))),
    )])
    .unwrap();
    assert_eq!(since(&ctl, view), 0);

    // The compute layer writes five rows and then closes the view.
    let shard = ctl.collection_metadata(view).unwrap().data_shard;
    let outside = PersistClient::open(&env.url).await.unwrap();
    let mut writer = outside
        .open_writer::<Timestamp>(shard, desc())
        .await
        .unwrap();
    let updates: Vec<_> = (0..5).map(|i| (Ok(row(i)), t(i as u64), 1)).collect();
    let lower = writer.upper().clone();
    writer
        .compare_and_append(&updates, lower, Antichain::from_elem(t(5)))
        .await
        .unwrap()
        .unwrap();
    writer
        .compare_and_append(&[], Antichain::from_elem(t(5)), Antichain::new())
        .await
        .unwrap()
        .unwrap();

    let mut responses = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the sink to complete",
        |ctl, _| upper(ctl, view) == u64::MAX && upper(ctl, sink) == u64::MAX,
    )
    .await;
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(written.lines().count(), 5, "{written}");
    // Complete, the sink holds nothing: the view's since is what its policy says.
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the hold's release",
        |ctl, _| since(ctl, sink) == u64::MAX && since(ctl, view) == 5,
    )
    .await;

    // The replicas stopped the sink when it completed: its drop is final at once.
    ctl.drop_sinks(vec![sink]).unwrap();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the drop",
        |_, responses| dropped(responses, sink) && dropped_status(responses, sink),
    )
    .await;
    assert!(ctl.collection_frontiers(sink).is_err());
}
