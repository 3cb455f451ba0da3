//! The rest of the controller surface through a real controller: instances and the
//! `ready`/`process` loop with an in-process replica (fenced by a newer controller's
//! Hello), monotonic appenders, altering a table, exports holding their input,
//! cursors, statistics and persist inspection.

#![cfg(test)]

mod controller_support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use controller_support::*;
use futures::StreamExt;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, ExportDescription, Exports,
    InstanceId, Instances, Lifecycle, Reads, ReplicaConfig, ReplicaId, ReplicaLocation,
    SinkConnection, StorageError, StorageResponse, Tables, Timestamp,
};
use strata_controller_core::{Controller, ControllerConfig};
use strata_instance_client::{
    CommandReceiver, Hello, LocalConnector, ReplicaConnector, ReplicaHandler, ReplicaResponse,
    ResponseSender, StorageCommand,
};

/// A replica that records its commands and reports an upper for `report` at connect.
struct Recorder {
    hellos: Mutex<Vec<u64>>,
    commands: Mutex<Vec<StorageCommand<Timestamp>>>,
    report: strata_controller_api::GlobalId,
}

#[async_trait]
impl ReplicaHandler<Timestamp> for Recorder {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        self.hellos.lock().unwrap().push(hello.epoch);
        let _ = responses.send(ReplicaResponse::FrontierUppers(vec![(
            self.report,
            Antichain::from_elem(t(7)),
        )]));
        while let Some(command) = commands.recv().await {
            self.commands.lock().unwrap().push(command);
        }
    }
}

async fn controller_with(
    env: &Env,
    connector: Arc<LocalConnector<Timestamp>>,
) -> Controller<Timestamp> {
    let factory: strata_controller_core::ConnectorFactory<Timestamp> =
        Arc::new(move |_: &ReplicaConfig| {
            Ok(Arc::clone(&connector) as Arc<dyn ReplicaConnector<Timestamp>>)
        });
    let config = ControllerConfig {
        connector_factory: Some(factory),
        ..ControllerConfig::default()
    };
    env.catalog.bump_epoch();
    Controller::new(config, env.catalog_fn(), &env.url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_feed_the_process_loop_and_hello_fences_old_controllers() {
    let env = mem_env();
    let source = id(5);
    let recorder = Arc::new(Recorder {
        hellos: Mutex::default(),
        commands: Mutex::default(),
        report: source,
    });
    let connector =
        LocalConnector::new(Arc::clone(&recorder) as Arc<dyn ReplicaHandler<Timestamp>>);
    let mut ctl = controller_with(&env, Arc::clone(&connector)).await;
    // The replica reports the upper of a sink it runs (an instance tracks uppers only
    // for the objects it runs).
    let table = id(4);
    create_tables(&env, &mut ctl, &[table], t(0)).await;

    let (instance, replica) = (InstanceId(1), ReplicaId(1));
    let config = ReplicaConfig {
        location: ReplicaLocation::InProcess { workers: 1 },
    };
    assert!(matches!(
        ctl.connect_replica(instance, replica, config.clone()),
        Err(StorageError::InstanceMissing(_))
    ));
    ctl.create_instance(instance).unwrap();
    assert!(matches!(
        ctl.create_instance(instance),
        Err(StorageError::InstanceExists(_))
    ));
    env.prepare(&ctl, &[source], &[]).await;
    let export = ExportDescription {
        from: table,
        from_desc: desc(),
        connection: SinkConnection::File {
            path: "/dev/null".into(),
        },
        as_of: Antichain::from_elem(t(0)),
        with_snapshot: true,
        instance_id: instance,
    };
    ctl.create_exports(vec![(source, export)]).await.unwrap();
    ctl.connect_replica(instance, replica, config.clone())
        .unwrap();
    assert!(matches!(
        ctl.connect_replica(instance, replica, config.clone()),
        Err(StorageError::ReplicaExists { .. })
    ));
    ctl.initialization_complete();

    let mut reported = None;
    for _ in 0..100 {
        tokio::time::timeout(std::time::Duration::from_secs(5), ctl.ready())
            .await
            .unwrap();
        if let Some(StorageResponse::FrontierUpdates(updates)) = ctl.process().unwrap()
            && let Some((_, upper)) = updates.into_iter().find(|(id, _)| *id == source)
        {
            reported = Some(upper);
            break;
        }
    }
    assert_eq!(reported, Some(Antichain::from_elem(t(7))));
    assert_eq!(
        ctl.collection_frontiers(source).unwrap().upper,
        Antichain::from_elem(t(7))
    );
    assert_eq!(recorder.hellos.lock().unwrap().clone(), vec![ctl.epoch()]);

    // A newer controller's Hello fences this one on the replica.
    let mut newer = controller_with(&env, Arc::clone(&connector)).await;
    newer.create_instance(instance).unwrap();
    newer.connect_replica(instance, replica, config).unwrap();
    for _ in 0..500 {
        if connector.fence().highest() == newer.epoch() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(connector.fence().highest(), newer.epoch());
    assert!(!connector.fence().is_current(ctl.epoch()));
    ctl.drop_replica(instance, replica).unwrap();
    assert!(matches!(
        ctl.drop_replica(instance, replica),
        Err(StorageError::ReplicaMissing { .. })
    ));
    ctl.drop_instance(instance).unwrap();
    assert!(matches!(
        ctl.drop_instance(instance),
        Err(StorageError::InstanceMissing(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monotonic_appenders_alter_exports_cursors_stats_and_inspect() {
    for env in backends() {
        let mut ctl = env.controller(false).await;
        let (table, hook, sink) = (id(1), id(2), id(3));
        create_tables(&env, &mut ctl, &[table], t(0)).await;
        env.prepare(&ctl, &[hook], &[]).await;
        let webhook = CollectionDescription::for_source(desc(), DataSource::Webhook);
        ctl.create_collections(&env.metadata(), None, vec![(hook, webhook)])
            .await
            .unwrap();

        // Monotonic appends land at successive times; negative diffs are refused.
        let appender = ctl.monotonic_appender(hook).unwrap();
        appender.append(vec![(row(1), 1)]).await.unwrap();
        appender.append(vec![(row(2), 2)]).await.unwrap();
        assert!(matches!(
            appender.append(vec![(row(3), -1)]).await,
            Err(StorageError::InvalidUsage(_))
        ));
        assert!(matches!(
            ctl.monotonic_appender(table),
            Err(StorageError::IdentifierInvalid(_))
        ));
        ctl.apply_pending();
        assert_eq!(
            ctl.collection_frontiers(hook).unwrap().upper,
            Antichain::from_elem(t(2))
        );
        assert_eq!(
            as_map(ctl.snapshot_latest(hook).await.unwrap()),
            as_map(vec![(row(1), 1), (row(2), 2)])
        );

        // Altering a table forgets it at one time and registers it at a later one.
        append(&mut ctl, 1, vec![(table, vec![(row(1), 1)])]).await;
        ctl.alter_table_desc(table, desc(), t(2), t(3))
            .await
            .unwrap();
        append(&mut ctl, 4, vec![(table, vec![(row(4), 1)])]).await;
        assert_eq!(ctl.snapshot(table, t(4)).await.unwrap().len(), 2);
        // An incompatible schema is refused, typed, before anything changes.
        let other = strata_controller_api::RelationDesc::builder()
            .with_column(
                "y",
                strata_controller_api::ScalarType::Int64.nullable(false),
            )
            .finish();
        let refused = ctl.alter_table_desc(table, other, t(5), t(6)).await;
        assert!(
            matches!(refused, Err(StorageError::IncompatibleAlter { id, .. }) if id == table),
            "{refused:?}"
        );
        append(&mut ctl, 5, vec![(table, vec![(row(5), 1)])]).await;
        assert_eq!(ctl.snapshot(table, t(5)).await.unwrap().len(), 3);
        assert!(matches!(
            ctl.alter_table_desc(hook, desc(), t(6), t(7)).await,
            Err(StorageError::IdentifierInvalid(_))
        ));

        // Cursors agree with snapshots; statistics and inspection come from the shard.
        let chunks: Vec<_> = ctl
            .snapshot_cursor(table, t(4))
            .await
            .unwrap()
            .collect()
            .await;
        // A row may appear in several chunks: the chunks consolidate to the snapshot.
        let mut rows: std::collections::BTreeMap<_, i64> = Default::default();
        for (row, diff) in chunks.into_iter().flat_map(Result::unwrap) {
            *rows.entry(row).or_default() += diff;
        }
        rows.retain(|_, diff| *diff != 0);
        assert_eq!(rows, as_map(ctl.snapshot(table, t(4)).await.unwrap()));
        let stats = ctl
            .snapshot_stats(hook, Antichain::from_elem(t(1)))
            .await
            .unwrap();
        assert_eq!(stats.num_updates, 2);
        let state = strata_controller_api::Introspection::inspect_persist_state(&ctl, hook)
            .await
            .unwrap();
        assert_eq!(state["upper"], serde_json::json!([2]));
        assert!(
            strata_controller_api::Introspection::inspect_persist_state(&ctl, id(99))
                .await
                .is_err()
        );

        // An export holds its input at its as_of.
        ctl.set_read_policy(vec![(
            table,
            strata_controller_api::ReadPolicy::step_back(),
        )])
        .unwrap();
        let since = ctl.collection_frontiers(table).unwrap().since;
        ctl.create_instance(InstanceId(1)).unwrap();
        let export = ExportDescription {
            from: table,
            from_desc: desc(),
            connection: SinkConnection::File {
                path: "/dev/null".into(),
            },
            as_of: since.clone(),
            with_snapshot: true,
            instance_id: InstanceId(1),
        };
        ctl.create_exports(vec![(sink, export.clone())])
            .await
            .unwrap();
        ctl.create_exports(vec![(sink, export.clone())])
            .await
            .unwrap();
        let mut changed = export.clone();
        changed.with_snapshot = false;
        assert!(matches!(
            ctl.create_exports(vec![(sink, changed)]).await,
            Err(StorageError::SinkIdReused(_))
        ));
        append(&mut ctl, 6, vec![(table, vec![(row(6), 1)])]).await;
        ctl.apply_pending();
        assert_eq!(ctl.collection_frontiers(table).unwrap().since, since);
        ctl.drop_sinks(vec![sink]).unwrap();
        ctl.apply_pending();
        assert_eq!(
            ctl.collection_frontiers(table).unwrap().since,
            Antichain::from_elem(t(6))
        );
        assert!(matches!(
            ctl.drop_sinks(vec![sink]),
            Err(StorageError::IdentifierMissing(_))
        ));
    }
}
