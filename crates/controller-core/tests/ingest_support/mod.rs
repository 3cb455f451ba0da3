//! Shared setup for the ingestion tests: a controller whose replicas are in-process
//! `ReplicaServer`s over the same persist location, the auction source's collections,
//! and a loop that drives `ready`/`process`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, ExportDescription, GlobalId,
    IngestionDescription, InstanceId, Instances, Lifecycle, LoadGenerator, Reads, ReplicaConfig,
    ReplicaId, ReplicaLocation, Row, ShardId, SinkConnection, SourceConnection, SourceOutput,
    StorageResponse, StorageTxn, Timestamp,
};
use strata_controller_core::{Controller, ControllerConfig};
use strata_instance_client::{LocalConnector, ReplicaConnector, ReplicaHandler};
use strata_persist_backend::PersistClient;
use strata_replica::ReplicaConfig as ServerConfig;
use strata_replica::generator::{AUCTIONS, BIDS, Generator};
use strata_replica::server::{OffRuntime, ReplicaServer};
use strata_replica::shard::persist::PersistShards;

use crate::controller_support::{Env, t};

/// The replica servers a controller's connector factory started, in order.
pub type Servers = Arc<Mutex<Vec<Arc<ReplicaServer>>>>;

/// How many 20 ms waits `pump_until` allows.
const PUMP_ROUNDS: usize = 3000;

pub const INSTANCE: InstanceId = InstanceId(1);

/// The auction source's collections.
#[derive(Debug, Clone, Copy)]
pub struct Auction {
    pub ingestion: GlobalId,
    pub remap: GlobalId,
    pub auctions: GlobalId,
    pub bids: GlobalId,
}

impl Auction {
    pub fn new(base: u64) -> Self {
        Auction {
            ingestion: GlobalId::User(base),
            remap: GlobalId::User(base + 1),
            auctions: GlobalId::User(base + 2),
            bids: GlobalId::User(base + 3),
        }
    }

    /// Every collection the source writes, remap last.
    pub fn all(&self) -> [GlobalId; 4] {
        [self.ingestion, self.auctions, self.bids, self.remap]
    }

    /// The outputs that hold generated data, with their generator output.
    pub fn outputs(&self) -> [(GlobalId, SourceOutput); 3] {
        [
            (self.ingestion, SourceOutput::Primary),
            (self.auctions, SourceOutput::Named(AUCTIONS.into())),
            (self.bids, SourceOutput::Named(BIDS.into())),
        ]
    }
}

/// The auction connection: `per_tick` offsets per round, seed 42.
pub fn connection(per_tick: u64, tick_interval_ms: u64) -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms,
        offsets_per_tick: per_tick,
        seed: 42,
    }
}

/// The collection descriptions of the auction source, remap first.
pub fn descriptions(
    source: &Auction,
    connection: &SourceConnection,
) -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    let generator = Generator::new(connection).unwrap();
    let desc_of = |output: &SourceOutput| generator.output_desc(output).unwrap();
    let ingestion = IngestionDescription {
        connection: connection.clone(),
        instance_id: INSTANCE,
        remap_collection_id: source.remap,
        source_exports: BTreeMap::new(),
        as_of: None,
    };
    let export = |output: SourceOutput| {
        CollectionDescription::for_source(
            desc_of(&output),
            DataSource::IngestionExport {
                ingestion_id: source.ingestion,
                output,
            },
        )
    };
    vec![
        (
            source.remap,
            CollectionDescription::for_source(
                strata_replica::remap::remap_desc(),
                DataSource::Progress,
            ),
        ),
        (
            source.ingestion,
            CollectionDescription::for_source(
                desc_of(&SourceOutput::Primary),
                DataSource::Ingestion(ingestion),
            ),
        ),
        (
            source.auctions,
            export(SourceOutput::Named(AUCTIONS.into())),
        ),
        (source.bids, export(SourceOutput::Named(BIDS.into()))),
    ]
}

/// A replica config whose clock is frozen at 0, so round `i` binds at time `i`, and
/// whose sources stop at `limit` offsets.
pub fn server_config(limit: Option<u64>) -> ServerConfig {
    ServerConfig {
        max_ticks_per_round: 1,
        workers: 1,
        clock: Arc::new(|| Timestamp::new(0)),
        offset_limit: limit,
        statistics_interval: Duration::from_millis(50),
        retry_backoff: Duration::from_millis(5),
        ..ServerConfig::default()
    }
}

/// A controller whose replicas are fresh `ReplicaServer`s on `env`'s location.
pub async fn controller(
    env: &Env,
    read_only: bool,
    limit: Option<u64>,
) -> (Controller<Timestamp>, Servers) {
    controller_with(env, read_only, move |_| server_config(limit)).await
}

/// A controller whose `n`-th replica connection (counting from 0) gets a fresh
/// `ReplicaServer` configured by `config(n)`.
pub async fn controller_with(
    env: &Env,
    read_only: bool,
    config: impl Fn(usize) -> ServerConfig + Send + Sync + 'static,
) -> (Controller<Timestamp>, Servers) {
    let servers: Servers = Arc::default();
    let ctl = controller_over(env, read_only, &servers, config).await;
    (ctl, servers)
}

/// A controller (at a new epoch) whose `n`-th replica connection (counting from 0)
/// reconnects to `servers[n]` if that exists, as a restarted controller reaches the
/// replicas that kept running; later ones get a fresh server configured by `config(n)`,
/// appended to `servers`.
pub async fn controller_over(
    env: &Env,
    read_only: bool,
    servers: &Servers,
    config: impl Fn(usize) -> ServerConfig + Send + Sync + 'static,
) -> Controller<Timestamp> {
    controller_over_with(env, read_only, servers, config, ControllerConfig::default()).await
}

/// [`controller_over`], with the rest of the controller's configuration (upstream
/// probes, say) from `base`.
pub async fn controller_over_with(
    env: &Env,
    read_only: bool,
    servers: &Servers,
    config: impl Fn(usize) -> ServerConfig + Send + Sync + 'static,
    base: ControllerConfig<Timestamp>,
) -> Controller<Timestamp> {
    let url = env.url.clone();
    let started = Arc::clone(servers);
    let connects = Arc::new(Mutex::new(0_usize));
    let config = Arc::new(config);
    let factory: strata_controller_core::ConnectorFactory<Timestamp> =
        Arc::new(move |_: &ReplicaConfig| {
            let index = {
                let mut connects = connects.lock().unwrap();
                *connects += 1;
                *connects - 1
            };
            let existing = started.lock().unwrap().get(index).cloned();
            let server = match existing {
                Some(server) => server,
                None => {
                    let url = url.clone();
                    let config = config(index);
                    // PersistShards blocks on its own runtime: start it off this
                    // runtime's thread.
                    let server = std::thread::spawn(move || {
                        let shards = PersistShards::open(&url).unwrap();
                        ReplicaServer::start(config, Arc::new(shards)).unwrap()
                    })
                    .join()
                    .unwrap();
                    started.lock().unwrap().push(Arc::clone(&server));
                    server
                }
            };
            Ok(LocalConnector::new(
                Arc::new(OffRuntime::new(server)) as Arc<dyn ReplicaHandler<Timestamp>>
            ) as Arc<dyn ReplicaConnector<Timestamp>>)
        });
    let config = ControllerConfig {
        connector_factory: Some(factory),
        upper_watch_interval: crate::controller_support::UPPER_WATCH_INTERVAL,
        // Every table's frontiers move on every commit, so that the frontiers
        // introspection rows equal `collection_frontiers` at once (by default, tables
        // nobody wrote move in a sweep once a second; `controller_table_sweep`).
        table_upper_sweep_interval: std::time::Duration::ZERO,
        ..base
    };
    env.catalog.bump_epoch();
    let config = ControllerConfig {
        read_only,
        ..config
    };
    Controller::new(config, env.catalog_fn(), &env.url)
        .await
        .unwrap()
}

/// Creates the instance and connects replica `replica` to it.
pub fn add_replica(ctl: &mut Controller<Timestamp>, replica: u64) {
    if ctl.create_instance(INSTANCE).is_err() {
        // The instance exists already.
    }
    ctl.connect_replica(
        INSTANCE,
        ReplicaId(replica),
        ReplicaConfig {
            location: ReplicaLocation::InProcess { workers: 1 },
        },
    )
    .unwrap();
}

/// Records the source in the catalog and creates its collections.
pub async fn create_source(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    source: &Auction,
    connection: &SourceConnection,
) {
    env.prepare(ctl, &source.all(), &[]).await;
    ctl.create_collections(&env.metadata(), None, descriptions(source, connection))
        .await
        .unwrap();
    ctl.initialization_complete();
}

/// Drives `ready`/`process` until `done` holds, collecting every response; fails after
/// a generous bound (a hang guard, not a speed assertion).
pub async fn pump_until(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    responses: &mut Vec<StorageResponse<Timestamp>>,
    what: &str,
    mut done: impl FnMut(&mut Controller<Timestamp>, &[StorageResponse<Timestamp>]) -> bool,
) {
    for _ in 0..PUMP_ROUNDS {
        ctl.apply_pending();
        if done(ctl, responses) {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), ctl.ready()).await;
        let mut idle = true;
        while let Some(response) = ctl.process().unwrap() {
            responses.push(response);
            idle = false;
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let statuses: Vec<_> = responses
        .iter()
        .filter(|r| matches!(r, StorageResponse::StatusUpdates(_)))
        .collect();
    panic!(
        "gave up waiting for {what} on {}; statuses: {statuses:?}; last: {:?}",
        env.url,
        responses.last()
    );
}

/// Pumps until every collection of `source` has an upper of at least `rounds`.
pub async fn wait_for_uppers(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    responses: &mut Vec<StorageResponse<Timestamp>>,
    source: &Auction,
    rounds: u64,
) {
    pump_until(env, ctl, responses, "the uppers", |ctl, _| {
        source.all().iter().all(|id| upper(ctl, *id) >= rounds)
    })
    .await;
}

/// The upper of `id` as a time in milliseconds (`u64::MAX` for `[]`).
pub fn upper(ctl: &Controller<Timestamp>, id: GlobalId) -> u64 {
    frontier_ms(&ctl.collection_frontiers(id).unwrap().upper)
}

/// The since of `id` as a time in milliseconds (`u64::MAX` for `[]`).
pub fn since(ctl: &Controller<Timestamp>, id: GlobalId) -> u64 {
    frontier_ms(&ctl.collection_frontiers(id).unwrap().since)
}

pub fn frontier_ms(frontier: &Antichain<Timestamp>) -> u64 {
    frontier
        .elements()
        .first()
        .map_or(u64::MAX, |t| t.as_millis())
}

/// The offset the remap collection binds at `time`.
pub async fn bound_offset(ctl: &Controller<Timestamp>, remap: GlobalId, time: u64) -> u64 {
    ctl.snapshot(remap, t(time))
        .await
        .unwrap()
        .into_iter()
        .find_map(|(row, diff)| match (row.unpack().as_slice(), diff) {
            ([strata_controller_api::Datum::UInt64(o)], 1) => Some(*o),
            _ => None,
        })
        .unwrap_or(0)
}

/// Consolidated rows, sorted, without zero multiplicities.
pub fn consolidate(rows: impl IntoIterator<Item = (Row, i64)>) -> BTreeMap<Row, i64> {
    let mut out = BTreeMap::new();
    for (row, diff) in rows {
        *out.entry(row).or_insert(0) += diff;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// What the generator produces for offsets `0..offset` on `output`.
pub fn model(
    connection: &SourceConnection,
    output: &SourceOutput,
    offset: u64,
) -> BTreeMap<Row, i64> {
    let generator = Generator::new(connection).unwrap();
    consolidate(
        generator
            .updates_in(0..offset)
            .into_iter()
            .filter(|(o, _, _)| o == output)
            .map(|(_, row, diff)| (row, diff)),
    )
}

/// Checks that every output of `source` at `time` holds exactly what the generator
/// produced for the offsets bound by then; returns that offset.
pub async fn check_contents(
    ctl: &Controller<Timestamp>,
    source: &Auction,
    connection: &SourceConnection,
    outputs: &[(GlobalId, SourceOutput)],
    time: u64,
) -> u64 {
    let offset = bound_offset(ctl, source.remap, time).await;
    for (id, output) in outputs {
        let read = ctl.snapshot(*id, t(time)).await;
        let frontiers = ctl.collection_frontiers(*id);
        let got = consolidate(
            read.unwrap_or_else(|e| panic!("{id} at {time}: {e:?}; frontiers {frontiers:?}")),
        );
        assert_eq!(
            got,
            model(connection, output, offset),
            "{id} ({output:?}) at {time}, offset {offset}"
        );
    }
    offset
}

/// Whether the shard is finalized (a tombstone whose since and upper are `[]`) and GC
/// left no parts in the store.
pub async fn finalized(client: &PersistClient, shard: ShardId) -> bool {
    let Ok(state) = client.inspect(shard).await else {
        return false;
    };
    let empty = |key: &str| state[key].as_array().is_some_and(Vec::is_empty);
    state["tombstone"].as_bool().unwrap_or(false)
        && empty("since")
        && empty("upper")
        && client.list_part_keys(shard).await.unwrap().is_empty()
        && client.referenced_part_keys(shard).await.unwrap().is_empty()
}

/// Waits for `shard` to be finalized and out of the catalog's unfinalized list.
pub async fn wait_finalized(env: &Env, client: &PersistClient, shard: ShardId) {
    for _ in 0..3000 {
        let unfinalized = env.catalog.begin::<Timestamp>().get_unfinalized_shards();
        if !unfinalized.contains(&shard) && finalized(client, shard).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = client.inspect(shard).await.ok();
    panic!("{shard} was not finalized on {}: {state:?}", env.url);
}

/// Whether `responses` confirm the drop of `id`.
pub fn dropped(responses: &[StorageResponse<Timestamp>], id: GlobalId) -> bool {
    responses
        .iter()
        .any(|r| matches!(r, StorageResponse::DroppedIds(ids) if ids.contains(&id)))
}

/// Whether `responses` carry a `Dropped` status for `id`.
pub fn dropped_status(responses: &[StorageResponse<Timestamp>], id: GlobalId) -> bool {
    responses.iter().any(|r| match r {
        StorageResponse::StatusUpdates(updates) => updates
            .iter()
            .any(|u| u.id == id && u.status == strata_controller_api::Status::Dropped),
        _ => false,
    })
}

/// Waits until the controller has done its part of finalizing `shard`: the upper is
/// closed and the controller's critical since released. (The tombstone then waits for
/// every replica reader lease on the shard to go; see `wait_finalized`.)
pub async fn wait_released(env: &Env, client: &PersistClient, shard: ShardId) {
    let mut state = None;
    for _ in 0..1000 {
        if let Ok(current) = client.inspect(shard).await {
            let closed = current["upper"].as_array().is_some_and(Vec::is_empty);
            let released = current["critical_readers"]
                .as_array()
                .is_some_and(|readers| {
                    readers
                        .iter()
                        .all(|r| r["since"].as_array().is_some_and(Vec::is_empty))
                });
            if closed && released {
                return;
            }
            state = Some(current);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{shard} was not released on {}: {state:?}", env.url);
}

/// A file sink of `from` (of schema `desc()`) at `as_of`, with its snapshot, on the test
/// instance.
pub fn file_sink(
    from: GlobalId,
    path: &std::path::Path,
    as_of: u64,
) -> ExportDescription<Timestamp> {
    ExportDescription {
        from,
        from_desc: crate::controller_support::desc(),
        connection: SinkConnection::File {
            path: path.to_str().unwrap_or_default().to_owned(),
        },
        as_of: Antichain::from_elem(t(as_of)),
        with_snapshot: true,
        instance_id: INSTANCE,
    }
}
