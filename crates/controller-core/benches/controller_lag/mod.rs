//! The end-to-end lag of an ingestion, run from `controller.rs`'s `main`: from a load
//! generator emitting offset `n` to the controller's view of the collection's upper
//! passing `n`'s timestamp, against the same emission to the data shard's upper in
//! persist passing it (durability, seen by a persist waiter).
//!
//! # Setup
//!
//! A real controller on the memory backend with one in-process `ReplicaServer` running
//! a `counter` source: one offset per tick every `tick_interval_ms`, one tick per
//! round (`max_ticks_per_round = 1`), so every binding carries exactly one offset and a
//! per-binding sample is a per-offset sample. The source stops at `offsets`.
//!
//! # Instants
//!
//! - **Emitted**: the replica's leader reads its [`Clock`] exactly once per binding it
//!   mints, at the moment it decides the next round's offsets exist (before the remap
//!   and data `compare_and_append`s). The bench's clock returns 1, 2, 3, … and records
//!   the instant of each read, so offset `n - 1` binds at time `n`, read at instant
//!   `emitted[n]`. That needs no seam in the replica: the clock is public configuration.
//!   The run checks the mapping held (the final upper is exactly `offsets + 1`, so no
//!   clock read went unbound and no binding was pushed past its read).
//! - **Controller**: the host loop (`ready`, then `process` until empty) records the
//!   instant `collection_frontiers(source).upper` first passes each time.
//! - **Persist** (the baseline): a task waits on the data shard's upper through the
//!   replica's own `PersistClient` (which shares its shard cache, so a local append
//!   wakes it without polling) and records the instant the upper first passes each
//!   time. It waits through a write handle that never appends (persist's upper waiter
//!   lives there), so it holds back no since.
//!
//! The lag of offset `n` is the first such instant past its time minus `emitted`. The
//! first [`WARMUP`] offsets are dropped (dataflow start, cold code paths). The ratio of
//! the controller's lag to persist's is the controller's extra lag: the replica's
//! `FrontierUppers` response, the instance's merge and `process`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_bench_support::report_percentiles;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, GlobalId, IngestionDescription,
    InstanceId, Instances, Lifecycle, LoadGenerator, MemoryCatalog, ReplicaConfig, ReplicaId,
    ReplicaLocation, SourceConnection, SourceOutput, StorageMetadata, StorageTxn, Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_instance_client::{LocalConnector, ReplicaConnector, ReplicaHandler};
use strata_persist_backend::PersistClient;
use strata_replica::generator::Generator;
use strata_replica::server::{OffRuntime, ReplicaServer};
use strata_replica::shard::persist::PersistShards;
use strata_replica::{Clock, ReplicaConfig as ServerConfig};

pub(crate) struct LagSizes {
    /// Offsets the source emits; more than [`WARMUP`].
    pub(crate) offsets: u64,
    /// Milliseconds between the generator's ticks (one offset each).
    pub(crate) tick_interval_ms: u64,
}

/// Offsets left out of the percentiles.
const WARMUP: u64 = 10;
/// A hang guard on the whole run, not a speed assertion.
const GIVE_UP: Duration = Duration::from_secs(300);

const INSTANCE: InstanceId = InstanceId(1);
const SOURCE: GlobalId = GlobalId::User(1);
const REMAP: GlobalId = GlobalId::User(2);

/// `(time, instant)` pairs, in the order they were recorded.
type Log = Arc<Mutex<Vec<(u64, Instant)>>>;

/// A clock that returns 1, 2, 3, … and records when each value was read.
fn recording_clock(log: Log) -> Clock {
    Arc::new(move || {
        let mut log = log.lock().unwrap();
        let time = log.len() as u64 + 1;
        log.push((time, Instant::now()));
        Timestamp::new(time)
    })
}

fn connection(sizes: &LagSizes) -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator: LoadGenerator::Counter { max_ticks: None },
        tick_interval_ms: sizes.tick_interval_ms,
        offsets_per_tick: 1,
        seed: 1,
    }
}

fn descriptions(
    connection: &SourceConnection,
) -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    let generator = Generator::new(connection).unwrap();
    vec![
        (
            REMAP,
            CollectionDescription::for_source(
                strata_replica::remap::remap_desc(),
                DataSource::Progress,
            ),
        ),
        (
            SOURCE,
            CollectionDescription::for_source(
                generator.output_desc(&SourceOutput::Primary).unwrap(),
                DataSource::Ingestion(IngestionDescription {
                    connection: connection.clone(),
                    instance_id: INSTANCE,
                    remap_collection_id: REMAP,
                    source_exports: BTreeMap::new(),
                    as_of: None,
                }),
            ),
        ),
    ]
}

/// Starts the replica off the runtime (its persist adapter blocks on a runtime of its
/// own); returns it with its persist client.
fn start_replica(
    url: &str,
    emitted: &Log,
    sizes: &LagSizes,
) -> (Arc<ReplicaServer>, PersistClient) {
    let config = ServerConfig {
        workers: 1,
        clock: recording_clock(Arc::clone(emitted)),
        offset_limit: Some(sizes.offsets),
        max_ticks_per_round: 1,
        statistics_interval: Duration::from_secs(1),
        retry_backoff: Duration::from_millis(5),
        ..ServerConfig::default()
    };
    let url = url.to_owned();
    std::thread::spawn(move || {
        let shards = PersistShards::open(&url).unwrap();
        let client = shards.client().clone();
        (
            ReplicaServer::start(config, Arc::new(shards)).unwrap(),
            client,
        )
    })
    .join()
    .unwrap()
}

fn frontier_ms(frontier: &Antichain<Timestamp>) -> u64 {
    frontier.as_option().map_or(u64::MAX, |t| t.as_millis())
}

/// Records each advance of `shard`'s upper until it reaches `target`.
async fn watch_persist(
    client: PersistClient,
    shard: strata_controller_api::ShardId,
    desc: strata_controller_api::RelationDesc,
    target: u64,
) -> Vec<(u64, Instant)> {
    let mut writer = client.open_writer::<Timestamp>(shard, desc).await.unwrap();
    let mut seen = Vec::new();
    let mut upper = frontier_ms(writer.upper());
    while upper < target {
        let past = Antichain::from_elem(Timestamp::new(upper));
        writer.wait_for_upper_past(&past).await.unwrap();
        upper = frontier_ms(writer.upper());
        seen.push((upper, Instant::now()));
    }
    seen
}

/// The emission log and the controller's and persist's upper logs of one run.
struct Run {
    emitted: Vec<(u64, Instant)>,
    controller: Vec<(u64, Instant)>,
    persist: Vec<(u64, Instant)>,
}

async fn run_source(sizes: &LagSizes) -> Run {
    let url = format!("mem://bench-lag-{}", uuid::Uuid::new_v4().simple());
    let emitted: Log = Arc::default();
    let (server, client) = start_replica(&url, &emitted, sizes);
    let handler = Arc::new(OffRuntime::new(Arc::clone(&server)));
    let config = ControllerConfig {
        connector_factory: Some(Arc::new(move |_: &ReplicaConfig| {
            Ok(
                LocalConnector::new(Arc::clone(&handler) as Arc<dyn ReplicaHandler<Timestamp>>)
                    as Arc<dyn ReplicaConnector<Timestamp>>,
            )
        })),
        ..ControllerConfig::default()
    };
    let catalog = MemoryCatalog::new();
    let catalog_fn: CatalogFn<Timestamp> = {
        let catalog = catalog.clone();
        Arc::new(move || {
            Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>
        })
    };
    let mut ctl = Controller::new(config, catalog_fn, &url).await.unwrap();
    ctl.create_instance(INSTANCE).unwrap();
    let connection = connection(sizes);
    let mut txn = catalog.begin::<Timestamp>();
    ctl.prepare_state(&mut txn, [SOURCE, REMAP].into(), Default::default())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let metadata = StorageMetadata::from_txn(&catalog.begin::<Timestamp>());
    ctl.create_collections(&metadata, None, descriptions(&connection))
        .await
        .unwrap();
    ctl.initialization_complete();

    // The last offset binds at time `offsets`, so both uppers end at `offsets + 1`.
    let target = sizes.offsets + 1;
    let meta = ctl.collection_metadata(SOURCE).unwrap();
    let persist = tokio::spawn(watch_persist(
        client,
        meta.data_shard,
        meta.relation_desc,
        target,
    ));
    // Only now does the source start: the watcher is in place before the first round.
    ctl.connect_replica(
        INSTANCE,
        ReplicaId(1),
        ReplicaConfig {
            location: ReplicaLocation::InProcess { workers: 1 },
        },
    )
    .unwrap();

    let give_up = Instant::now() + GIVE_UP;
    let mut controller = Vec::new();
    let mut upper = 0;
    while upper < target {
        assert!(
            Instant::now() < give_up,
            "the source's upper stopped at {upper}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), ctl.ready()).await;
        while ctl.process().unwrap().is_some() {}
        let now = frontier_ms(&ctl.collection_frontiers(SOURCE).unwrap().upper);
        if now > upper {
            upper = now;
            controller.push((upper, Instant::now()));
        }
    }
    let persist = persist.await.unwrap();
    assert_eq!(upper, target, "a clock read went unbound");
    assert_eq!(persist.last().map(|(u, _)| *u), Some(target));
    server.shutdown();
    drop(ctl);
    let emitted = emitted.lock().unwrap().clone();
    Run {
        emitted,
        controller,
        persist,
    }
}

/// The first instant in `log` at which the upper is past `time`.
fn first_past(log: &[(u64, Instant)], time: u64) -> Option<Instant> {
    let i = log.partition_point(|(upper, _)| *upper <= time);
    log.get(i).map(|(_, at)| *at)
}

/// Runs the comparison and reports p50 and p99.
pub(crate) fn run(sizes: LagSizes) {
    assert!(sizes.offsets > WARMUP);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = runtime.block_on(run_source(&sizes));
    let (mut controller, mut persist) = (Vec::new(), Vec::new());
    for (time, emitted) in &run.emitted {
        if *time <= WARMUP || *time > sizes.offsets {
            continue;
        }
        let seen = first_past(&run.controller, *time).unwrap();
        let durable = first_past(&run.persist, *time).unwrap();
        controller.push(seen.saturating_duration_since(*emitted));
        persist.push(durable.saturating_duration_since(*emitted));
    }
    assert_eq!(controller.len() as u64, sizes.offsets - WARMUP);
    let ms = |lags: Vec<Duration>| -> Vec<f64> {
        lags.iter().map(|d| d.as_secs_f64() * 1000.0).collect()
    };
    report_percentiles(
        &mut ms(controller),
        &mut ms(persist),
        "ms",
        |p| format!("ingestion_lag_emit_to_controller_upper_{p}"),
        |p| format!("ingestion_lag_emit_to_persist_upper_{p}"),
    );
}
