//! Read-only mode with a real replica: no ingestion runs and no shard is written until
//! `allow_writes`, which then starts the waiting ingestion.

mod controller_support;
mod ingest_support;

use std::time::Duration;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Collections, GlobalId, Lifecycle, Status, StorageResponse, StorageTxn, Timestamp,
};
use strata_controller_core::WAITING_FOR_INITIALIZATION;

const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_runs_nothing_until_allow_writes() {
    for env in backends() {
        let (mut ctl, servers) = controller(&env, true, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        let source = Auction::new(30);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        let shards: Vec<_> = source
            .all()
            .iter()
            .map(|id| ctl.collection_metadata(*id).unwrap().data_shard)
            .collect();

        // The replica connects and is told everything but gets nothing to run.
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        for _ in 0..25 {
            let _ = tokio::time::timeout(Duration::from_millis(20), ctl.ready()).await;
            while let Some(response) = ctl.process().unwrap() {
                responses.push(response);
            }
        }
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 0);
        let client = ctl.persist_client().clone();
        for shard in &shards {
            assert!(
                client.inspect(*shard).await.is_err(),
                "{shard} was created in read-only mode on {}",
                env.url
            );
        }
        for id in source.all() {
            assert_eq!(upper(&ctl, id), 0);
        }

        ctl.allow_writes(None).await.unwrap();
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) >= ROUNDS)
        })
        .await;
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 1);
        let offset =
            check_contents(&ctl, &source, &connection, &source.outputs(), ROUNDS - 1).await;
        assert_eq!(offset, LIMIT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altering_an_ingestion_reruns_it_only_when_the_connection_changes() {
    let env = mem_env();
    let (mut ctl, servers) = controller(&env, false, Some(LIMIT)).await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(40);
    let connection = connection(3, 0);
    create_source(&env, &mut ctl, &source, &connection).await;
    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    let server = std::sync::Arc::clone(&servers.lock().unwrap()[0]);
    pump_until(&env, &mut ctl, &mut responses, "the first run", |_, _| {
        server.dataflow_starts() == 1
    })
    .await;

    assert!(matches!(
        ctl.alter_ingestion_connections(std::collections::BTreeMap::from([(
            source.auctions,
            connection.clone()
        )]))
        .await,
        Err(strata_controller_api::StorageError::IdentifierInvalid(_))
    ));
    let counter = strata_controller_api::SourceConnection::LoadGenerator {
        generator: strata_controller_api::LoadGenerator::Counter { max_ticks: None },
        tick_interval_ms: 0,
        offsets_per_tick: 3,
        seed: 42,
    };
    // Another kind of source is checked, and refused, with the documented error;
    // the alter itself refuses it the same way.
    let refused = ctl.check_alter_ingestion_source_desc(source.ingestion, &counter);
    assert!(
        matches!(&refused, Err(strata_controller_api::StorageError::IncompatibleAlter { id, .. }) if *id == source.ingestion),
        "{refused:?}"
    );
    let refused = ctl
        .alter_ingestion_source_desc(source.ingestion, counter)
        .await;
    assert!(
        matches!(
            refused,
            Err(strata_controller_api::StorageError::IncompatibleAlter { .. })
        ),
        "{refused:?}"
    );
    // A subsource is no ingestion, and an unknown id is missing.
    assert!(matches!(
        ctl.check_alter_ingestion_source_desc(source.auctions, &connection),
        Err(strata_controller_api::StorageError::IdentifierInvalid(_))
    ));
    assert!(matches!(
        ctl.check_alter_ingestion_source_desc(GlobalId::User(999), &connection),
        Err(strata_controller_api::StorageError::IdentifierMissing(_))
    ));
    // A compatible one passes the check and changes nothing by it.
    ctl.check_alter_ingestion_source_desc(source.ingestion, &ingest_support::connection(3, 1))
        .unwrap();
    assert_eq!(server.dataflow_starts(), 1);
    // The same connection changes nothing; a new pace re-runs the ingestion.
    ctl.alter_ingestion_connections(std::collections::BTreeMap::from([(
        source.ingestion,
        connection.clone(),
    )]))
    .await
    .unwrap();
    ctl.alter_ingestion_source_desc(source.ingestion, ingest_support::connection(3, 1))
        .await
        .unwrap();
    pump_until(&env, &mut ctl, &mut responses, "the re-run", |_, _| {
        server.dataflow_starts() == 2
    })
    .await;
}

/// Dropping a source that never ran, in read-only mode: the drop succeeds and is
/// confirmed (nothing runs anywhere, so nothing needs to stop), no shard is written,
/// and `allow_writes` starts only the source that is still live: the dropped one's
/// shards are finalized (nothing of them is left) and cleared from the catalog's
/// unfinalized list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_drop_of_an_ingestion_that_never_ran() {
    for env in backends() {
        let (mut ctl, servers) = controller(&env, true, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        let source = Auction::new(140);
        let kept = Auction::new(150);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        create_source(&env, &mut ctl, &kept, &connection).await;
        let shards: Vec<_> = source
            .all()
            .iter()
            .map(|id| ctl.collection_metadata(*id).unwrap().data_shard)
            .collect();

        let all = source.all();
        env.prepare(&ctl, &[], &all).await;
        ctl.drop_sources(all.to_vec()).await.unwrap();
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(&env, &mut ctl, &mut responses, "the drop", |_, r| {
            all.iter()
                .all(|id| dropped(r, *id) && dropped_status(r, *id))
        })
        .await;
        for id in all {
            assert!(ctl.check_exists(id).is_err());
        }
        let client = ctl.persist_client().clone();
        assert_unwritten(&env, &client, &shards).await;
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 0);

        ctl.allow_writes(None).await.unwrap();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the kept source",
            |ctl, _| kept.all().iter().all(|id| upper(ctl, *id) >= ROUNDS),
        )
        .await;
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the finalization",
            |_, _| {
                let unfinalized = env.catalog.begin::<Timestamp>().get_unfinalized_shards();
                shards.iter().all(|shard| !unfinalized.contains(shard))
            },
        )
        .await;
        // Nothing of the dropped source is left: a shard is absent, or a tombstone
        // without parts (the since downgrades deferred in read-only mode run before
        // the finalization, and open the shard to tombstone it).
        for shard in &shards {
            assert!(
                client.inspect(*shard).await.is_err() || finalized(&client, *shard).await,
                "{shard} on {}",
                env.url
            );
        }
        // Only the kept source ever ran.
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 1);
    }
}

async fn assert_unwritten(
    env: &Env,
    client: &strata_persist_backend::PersistClient,
    shards: &[strata_controller_api::ShardId],
) {
    for shard in shards {
        assert!(
            client.inspect(*shard).await.is_err(),
            "{shard} was written on {}",
            env.url
        );
    }
}

/// Before `initialization_complete` a created source runs nowhere, and its status says
/// why; after the call it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_created_before_initialization_complete_says_it_waits() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, Some(LIMIT)).await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(40);
    let connection = connection(3, 0);
    env.prepare(&ctl, &source.all(), &[]).await;
    ctl.create_collections(&env.metadata(), None, descriptions(&source, &connection))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    while let Some(response) = ctl.process().unwrap() {
        if let StorageResponse::StatusUpdates(updates) = response {
            statuses.extend(updates);
        }
    }
    let waiting = statuses
        .iter()
        .find(|u| u.id == source.ingestion)
        .expect("a status for the waiting source");
    assert_eq!(waiting.status, Status::Starting);
    assert_eq!(waiting.hints, vec![WAITING_FOR_INITIALIZATION.to_owned()]);

    ctl.initialization_complete();
    let mut responses = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the source's upper",
        |ctl, _| upper(ctl, source.ingestion) >= 1,
    )
    .await;
}
