//! A sink whose input is complete (its upper reached `[]`) completes too: it writes
//! everything, its upper reaches `[]`, and it stops holding its input, as the
//! reference releases it. Dropping it afterwards is final at once.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Antichain, Collections, Exports, Lifecycle, ReadPolicy, Reads};

#[tokio::test]
async fn a_sink_of_a_complete_input_releases_it() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, None).await;
    add_replica(&mut ctl, 1);
    let (view, sink) = (id(1), id(2));
    let shard = create_other(&env, &mut ctl, view).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.ndjson");
    ctl.create_exports(vec![(sink, file_sink(view, &path, 0))])
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
    let mut writer = outside_writer(&env, shard).await;
    write_outside(
        &mut writer,
        (0..5).map(|i| (row(i), 1)).collect(),
        0,
        Some(5),
    )
    .await;
    write_outside(&mut writer, Vec::new(), 5, None).await;

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
