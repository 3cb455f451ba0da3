//! Introspection through the controller: a host creates collections with
//! `DataSource::Introspection(kind)` and the controller keeps them written — shard
//! mapping and frontiers exactly, status history from replicas with their replica id,
//! reconciliation after a restart, and nothing written while read-only.

mod controller_support;
mod ingest_support;
mod introspection_support;

use std::collections::BTreeMap;

use controller_support::*;
use ingest_support::*;
use introspection_support::*;
use strata_controller_api::{
    Antichain, Collections, Datum, ExportDescription, Exports, GlobalId, Instances, Introspection,
    IntrospectionType, Lifecycle, Row, SinkConnection, StorageError, StorageResponse, Tables,
    Timestamp,
};
use strata_controller_core::{Controller, ControllerConfig};
use strata_introspection::status::status_from_row;
use strata_persist_backend::PersistClient;

const MAPPING: GlobalId = GlobalId::System(1);
const FRONTIERS: GlobalId = GlobalId::System(2);
const SOURCE_STATUS: GlobalId = GlobalId::System(3);
const SINK_STATUS: GlobalId = GlobalId::System(4);
const SOURCE_STATISTICS: GlobalId = GlobalId::System(5);
const REPLICA_FRONTIERS: GlobalId = GlobalId::System(6);

/// Checks `ShardMapping` and `Frontiers` against the controller's own view of `live`
/// (the non-introspection collections that must be there, and nothing else) plus the
/// introspection collections `system`.
async fn check_mapping_and_frontiers(
    ctl: &mut Controller<Timestamp>,
    system: &[GlobalId],
    live: &[GlobalId],
    what: &str,
) {
    let mapping = read_introspection(ctl, MAPPING).await;
    let mut mapped: Vec<GlobalId> = live.to_vec();
    mapped.extend(system);
    assert_eq!(
        mapping,
        expected_shard_mapping(ctl, &mapped),
        "shard mapping {what}"
    );
    let frontiers = read_introspection(ctl, FRONTIERS).await;
    assert_eq!(frontiers, expected_frontiers(ctl, live), "frontiers {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_mapping_and_frontiers_equal_the_live_collections_exactly() {
    for env in backends() {
        // Replicas can be connected, but none is: the source's collections exist and
        // keep their frontiers, so the expected rows are fixed.
        let (mut ctl, _servers) = controller(&env, false, None).await;
        ctl.create_instance(INSTANCE).unwrap();
        create_introspection(
            &env,
            &mut ctl,
            &[
                (MAPPING, IntrospectionType::ShardMapping),
                (FRONTIERS, IntrospectionType::Frontiers),
            ],
        )
        .await;
        create_tables(&env, &mut ctl, &[id(1), id(2), id(3)], t(1)).await;
        append(&mut ctl, 2, vec![(id(1), vec![(row(1), 1)])]).await;
        let source = Auction::new(10);
        create_source(&env, &mut ctl, &source, &connection(3, 0)).await;
        let all = [
            id(1),
            id(2),
            id(3),
            source.ingestion,
            source.remap,
            source.auctions,
            source.bids,
        ];
        check_mapping_and_frontiers(&mut ctl, &[MAPPING, FRONTIERS], &all, "after creating").await;
        // The rendering is the documented one: `[t]` text in both frontier columns.
        let frontiers = read_introspection(&mut ctl, FRONTIERS).await;
        let u1 = frontiers
            .keys()
            .find(|r| object_id(r) == "u1")
            .unwrap()
            .unpack();
        assert!(
            matches!(u1.as_slice(), [_, Datum::String(since), Datum::String(upper)]
                if since.starts_with('[') && upper == "[3]"),
            "{u1:?}"
        );

        ctl.drop_tables(vec![id(2)], t(3)).await.unwrap();
        ctl.drop_sources(vec![source.bids]).await.unwrap();
        // A later write waits behind the forget, so the tables' upper has settled.
        append(&mut ctl, 5, vec![(id(3), vec![(row(3), 1)])]).await;
        let live = [
            id(1),
            id(3),
            source.ingestion,
            source.remap,
            source.auctions,
        ];
        check_mapping_and_frontiers(
            &mut ctl,
            &[MAPPING, FRONTIERS],
            &live,
            "after dropping a table and a subsource",
        )
        .await;

        ctl.drop_sources(vec![source.ingestion, source.auctions, source.remap])
            .await
            .unwrap();
        check_mapping_and_frontiers(
            &mut ctl,
            &[MAPPING, FRONTIERS],
            &[id(1), id(3)],
            "after dropping the source",
        )
        .await;
        let mapping = read_introspection(&mut ctl, MAPPING).await;
        assert_eq!(
            object_ids(&mapping),
            ["s1", "s2", "u1", "u3"],
            "{}",
            env.url
        );
        // Dropping an introspection collection retracts its own mapping row.
        ctl.drop_sources(vec![FRONTIERS]).await.unwrap();
        let mapping = read_introspection(&mut ctl, MAPPING).await;
        assert_eq!(object_ids(&mapping), ["s1", "u1", "u3"], "{}", env.url);
    }
}

/// The status-history rows of `id` on `replica`, oldest first, as `(status, error)`.
fn history_of(
    rows: &BTreeMap<Row, i64>,
    id: GlobalId,
    replica: &str,
) -> Vec<(String, Option<String>)> {
    let mut updates: Vec<_> = rows
        .iter()
        .filter(|(_, diff)| **diff > 0)
        .filter_map(|(row, _)| status_from_row(row))
        .filter(|u| u.id == id && u.replica_id.map(|r| r.to_string()).as_deref() == Some(replica))
        .collect();
    updates.sort_by_key(|u| u.timestamp_ms);
    updates
        .into_iter()
        .map(|u| (u.status.as_str().to_owned(), u.error))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_statuses_reach_the_status_histories_with_their_replica() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, Some(60)).await;
    add_replica(&mut ctl, 1);
    create_introspection(
        &env,
        &mut ctl,
        &[
            (SOURCE_STATUS, IntrospectionType::SourceStatusHistory),
            (SINK_STATUS, IntrospectionType::SinkStatusHistory),
            (SOURCE_STATISTICS, IntrospectionType::SourceStatistics),
            (REPLICA_FRONTIERS, IntrospectionType::ReplicaFrontiers),
        ],
    )
    .await;
    let source = Auction::new(20);
    create_source(&env, &mut ctl, &source, &connection(3, 0)).await;
    let sink = GlobalId::User(29);
    let out = tempfile::tempdir().unwrap();
    let export = ExportDescription {
        from: source.auctions,
        from_desc: ctl
            .collection_metadata(source.auctions)
            .unwrap()
            .relation_desc,
        connection: SinkConnection::File {
            path: out
                .path()
                .join("auctions.ndjson")
                .to_str()
                .unwrap()
                .to_owned(),
        },
        as_of: Antichain::from_elem(t(0)),
        with_snapshot: true,
        instance_id: INSTANCE,
    };
    ctl.create_exports(vec![(sink, export)]).await.unwrap();

    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    let mut found = false;
    for _ in 0..100 {
        let mut rounds = 0;
        pump_until(&env, &mut ctl, &mut responses, "a few rounds", |_, _| {
            rounds += 1;
            rounds > 5
        })
        .await;
        let sources = read_introspection(&mut ctl, SOURCE_STATUS).await;
        let sinks = read_introspection(&mut ctl, SINK_STATUS).await;
        let statistics = read_introspection(&mut ctl, SOURCE_STATISTICS).await;
        let replica_frontiers = read_introspection(&mut ctl, REPLICA_FRONTIERS).await;
        let running = |h: &[(String, Option<String>)]| h.iter().any(|(s, _)| s == "running");
        let source_history = history_of(&sources, source.ingestion, "r1");
        let sink_history = history_of(&sinks, sink, "r1");
        let on_r1 = |rows: &BTreeMap<Row, i64>| {
            rows.keys()
                .any(|row| matches!(row.unpack().get(1), Some(Datum::String(r)) if r == "r1"))
        };
        let (has_statistics, has_replica_frontier) =
            (on_r1(&statistics), on_r1(&replica_frontiers));
        if running(&source_history)
            && running(&sink_history)
            && has_statistics
            && has_replica_frontier
        {
            // De-duplicated: no status repeats the one before it on the same replica.
            for history in [&source_history, &sink_history] {
                assert!(history.windows(2).all(|w| w[0] != w[1]), "{history:?}");
            }
            // Sinks are not in the source history, and the other way round.
            assert!(history_of(&sources, sink, "r1").is_empty());
            assert!(history_of(&sinks, source.ingestion, "r1").is_empty());
            found = true;
            break;
        }
    }
    assert!(
        found,
        "statuses, statistics and replica frontiers from r1 never appeared"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_reconciles_the_shard_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let collections = [
        (MAPPING, IntrospectionType::ShardMapping),
        (FRONTIERS, IntrospectionType::Frontiers),
    ];
    let tables = |ids: &[GlobalId]| {
        ids.iter()
            .map(|id| {
                (
                    *id,
                    strata_controller_api::CollectionDescription::<Timestamp>::table(desc()),
                )
            })
            .collect::<Vec<_>>()
    };
    let before = {
        let mut ctl = Controller::open_durable(ControllerConfig::default(), &url)
            .await
            .unwrap();
        create_introspection_durable(&mut ctl, &collections).await;
        ctl.create_collections(
            &Default::default(),
            Some(t(1)),
            tables(&[id(1), id(2), id(3)]),
        )
        .await
        .unwrap();
        let mapping = read_introspection(&mut ctl, MAPPING).await;
        assert_eq!(object_ids(&mapping), ["s1", "s2", "u1", "u2", "u3"]);
        mapping
    };
    // The host no longer wants u3: it is not re-created, and its rows go.
    let mut ctl = Controller::open_durable(ControllerConfig::default(), &url)
        .await
        .unwrap();
    create_introspection_durable(&mut ctl, &collections).await;
    ctl.create_collections(&Default::default(), Some(t(10)), tables(&[id(1), id(2)]))
        .await
        .unwrap();
    let mapping = read_introspection(&mut ctl, MAPPING).await;
    assert_eq!(
        mapping,
        expected_shard_mapping(&ctl, &[MAPPING, FRONTIERS, id(1), id(2)])
    );
    // The same shards as before: the rows of the surviving collections are unchanged.
    let mut expected = before;
    expected.retain(|row, _| object_id(row) != "u3");
    assert_eq!(mapping, expected);
    let frontiers = read_introspection(&mut ctl, FRONTIERS).await;
    assert_eq!(frontiers, expected_frontiers(&ctl, &[id(1), id(2)]));
}

/// The gate refuses every write from the controller's start until `allow_writes`: a
/// write of the manager's tasks at any time in between fails there and is recorded.
/// The clock is paused and driven through several of the manager's ticks before the
/// gate opens.
#[tokio::test(start_paused = true)]
async fn a_read_only_controller_writes_no_introspection_until_allow_writes() {
    let (env, location) = gated_env().await;
    location.gate.deny_all();
    let mut ctl = env.controller(true).await;
    create_introspection(
        &env,
        &mut ctl,
        &[
            (MAPPING, IntrospectionType::ShardMapping),
            (FRONTIERS, IntrospectionType::Frontiers),
            (SOURCE_STATUS, IntrospectionType::SourceStatusHistory),
        ],
    )
    .await;
    create_tables(&env, &mut ctl, &[id(1), id(2)], t(1)).await;
    let shards: Vec<_> = [MAPPING, FRONTIERS, SOURCE_STATUS]
        .iter()
        .map(|id| ctl.collection_metadata(*id).unwrap().data_shard)
        .collect();
    let status = strata_introspection::status::status_row(&strata_controller_api::StatusUpdate {
        id: id(1),
        replica_id: None,
        status: strata_controller_api::Status::Running,
        timestamp_ms: 1,
        error: None,
        hints: Vec::new(),
    });
    // Read-only, appends are dropped rather than failing (the trait's contract);
    // misuse still fails.
    ctl.append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![(status, 1)])
        .unwrap();
    assert!(matches!(
        ctl.append_introspection_updates(IntrospectionType::ShardMapping, vec![]),
        Err(StorageError::InvalidUsage(_))
    ));
    assert!(matches!(
        ctl.append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![(row(1), 1)]),
        Err(StorageError::InvalidRow { .. })
    ));
    ctl.record_frontiers();
    assert!(matches!(
        ctl.sync_introspection().await,
        Err(StorageError::ReadOnly)
    ));
    let tick = ControllerConfig::<Timestamp>::default()
        .introspection
        .tick_interval;
    drive_clock(tick * 5).await;
    ctl.apply_pending();
    let client = PersistClient::open(&env.url).await.unwrap();
    for shard in &shards {
        assert!(
            client.inspect(*shard).await.is_err(),
            "{shard} was written read-only"
        );
    }
    location
        .gate
        .assert_nothing_refused("by a read-only controller's introspection");
    location.gate.allow();

    ctl.allow_writes(Some(t(5))).await.unwrap();
    check_mapping_and_frontiers(
        &mut ctl,
        &[MAPPING, FRONTIERS, SOURCE_STATUS],
        &[id(1), id(2)],
        "after allow_writes",
    )
    .await;
    let mapping = read_introspection(&mut ctl, MAPPING).await;
    assert_eq!(object_ids(&mapping), ["s1", "s2", "s3", "u1", "u2"]);
}

/// A status row `id` reports as running at `ms`.
fn running_status(id: GlobalId, ms: u64) -> Row {
    strata_introspection::status::status_row(&strata_controller_api::StatusUpdate {
        id,
        replica_id: None,
        status: strata_controller_api::Status::Running,
        timestamp_ms: ms,
        error: None,
        hints: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_controller_writes_no_more_introspection() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let collections = [(SOURCE_STATUS, IntrospectionType::SourceStatusHistory)];
    let mut old = Controller::open_durable(ControllerConfig::default(), &url)
        .await
        .unwrap();
    create_introspection_durable(&mut old, &collections).await;
    let before = running_status(id(1), 1);
    old.append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![(before, 1)])
        .unwrap();
    old.sync_introspection().await.unwrap();

    // A newer controller takes over the same location.
    let mut new = Controller::open_durable(ControllerConfig::default(), &url)
        .await
        .unwrap();
    create_introspection_durable(&mut new, &collections).await;

    // The old controller's manager is still running, but its writes are fenced.
    let stale = running_status(id(2), 2);
    old.append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![(stale, 1)])
        .unwrap();
    assert!(
        old.sync_introspection().await.is_err(),
        "a fenced controller's introspection write succeeded"
    );

    // The new controller writes, and sees its own row but never the old one's.
    let fresh = running_status(id(3), 3);
    new.append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![(fresh, 1)])
        .unwrap();
    let rows = read_introspection(&mut new, SOURCE_STATUS).await;
    let ids: Vec<String> = rows
        .keys()
        .map(|row| status_from_row(row).unwrap().id.to_string())
        .collect();
    assert_eq!(ids, ["u1", "u3"], "{rows:?}");
}
