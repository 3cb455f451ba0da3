//! Shared setup for the controller integration tests: a catalog plus a persist
//! location (memory or file), and helpers to start controllers and write tables.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, Datum, GlobalId, MemoryCatalog,
    ReadPolicy, RelationDesc, Row, ScalarType, ShardId, StorageMetadata, StorageTxn, Tables,
    Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_persist_backend::{PersistClient, WriteHandle};
pub use strata_testkit::faults::{GatedLocation, gated_memory_location};

/// How often the tests' controllers read the uppers nothing reports to them (shorter
/// than the default, so that tests waiting for one finish sooner).
pub const UPPER_WATCH_INTERVAL: Duration = Duration::from_millis(20);

/// A catalog and a persist location that outlive controllers.
pub struct Env {
    pub catalog: MemoryCatalog,
    pub url: String,
    pub dir: Option<tempfile::TempDir>,
}

/// A memory and a file environment, for tests that run on both.
pub fn backends() -> Vec<Env> {
    vec![mem_env(), file_env()]
}

pub fn mem_env() -> Env {
    Env {
        catalog: MemoryCatalog::new(),
        url: format!("mem://controller-test-{}", uuid::Uuid::new_v4().simple()),
        dir: None,
    }
}

pub fn file_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        catalog: MemoryCatalog::new(),
        url: format!("file://{}", dir.path().display()),
        dir: Some(dir),
    }
}

/// A memory environment whose location is under a `WriteGate`: `env.url` writes
/// through the gate, `location.ungated_url` reaches the same store without it.
pub async fn gated_env() -> (Env, GatedLocation) {
    let location = gated_memory_location("controller-test").await.unwrap();
    let env = Env {
        catalog: MemoryCatalog::new(),
        url: location.url.clone(),
        dir: None,
    };
    (env, location)
}

impl Env {
    pub fn catalog_fn(&self) -> CatalogFn<Timestamp> {
        let catalog = self.catalog.clone();
        Arc::new(move || {
            Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>
        })
    }

    /// A new controller at a fresh (higher) epoch.
    pub async fn controller(&self, read_only: bool) -> Controller<Timestamp> {
        self.try_controller(read_only).await.unwrap()
    }

    pub async fn try_controller(
        &self,
        read_only: bool,
    ) -> Result<Controller<Timestamp>, strata_controller_api::StorageError<Timestamp>> {
        self.try_controller_on(&self.url, read_only).await
    }

    /// A new controller at a fresh (higher) epoch on another URL of the same location
    /// (for example the ungated URL of a [`gated_env`]).
    pub async fn controller_on(&self, url: &str, read_only: bool) -> Controller<Timestamp> {
        self.try_controller_on(url, read_only).await.unwrap()
    }

    async fn try_controller_on(
        &self,
        url: &str,
        read_only: bool,
    ) -> Result<Controller<Timestamp>, strata_controller_api::StorageError<Timestamp>> {
        self.catalog.bump_epoch();
        let config = ControllerConfig {
            read_only,
            upper_watch_interval: UPPER_WATCH_INTERVAL,
            ..ControllerConfig::default()
        };
        Controller::new(config, self.catalog_fn(), url).await
    }

    /// A new writable controller at a fresh epoch with `config` (its upper watch at
    /// [`UPPER_WATCH_INTERVAL`] unless `config` says otherwise).
    pub async fn controller_with(
        &self,
        config: ControllerConfig<Timestamp>,
    ) -> Controller<Timestamp> {
        self.catalog.bump_epoch();
        Controller::new(config, self.catalog_fn(), &self.url)
            .await
            .unwrap()
    }

    /// The catalog's mapping, as hosts pass it.
    pub fn metadata(&self) -> StorageMetadata {
        StorageMetadata::from_txn(&self.catalog.begin::<Timestamp>())
    }

    /// Records new collections in the catalog (what a host does before creating them).
    pub async fn prepare(&self, ctl: &Controller<Timestamp>, add: &[GlobalId], drop: &[GlobalId]) {
        let mut txn = self.catalog.begin::<Timestamp>();
        ctl.prepare_state(
            &mut txn,
            add.iter().copied().collect::<BTreeSet<_>>(),
            drop.iter().copied().collect::<BTreeSet<_>>(),
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
}

pub fn t(ms: u64) -> Timestamp {
    Timestamp::new(ms)
}

pub fn id(n: u64) -> GlobalId {
    GlobalId::User(n)
}

pub fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .with_column("s", ScalarType::String.nullable(true))
        .finish()
}

pub fn row(x: i64) -> Row {
    Row::pack(&[
        Datum::Int64(x),
        Datum::String(format!("row number {x:>12}")),
    ])
}

/// Creates tables `ids` (recording them in the catalog first), registered at `ts`.
pub async fn create_tables(
    env: &Env,
    ctl: &mut Controller<Timestamp>,
    ids: &[GlobalId],
    ts: Timestamp,
) {
    env.prepare(ctl, ids, &[]).await;
    let collections = ids
        .iter()
        .map(|id| (*id, CollectionDescription::table(desc())))
        .collect();
    ctl.create_collections(&env.metadata(), Some(ts), collections)
        .await
        .unwrap();
}

/// Creates `id` as a collection written outside the controller (`DataSource::Other`,
/// say a compute layer's materialized view) with `desc()`, recording it in the catalog
/// first; returns its shard.
pub async fn create_other(env: &Env, ctl: &mut Controller<Timestamp>, id: GlobalId) -> ShardId {
    env.prepare(ctl, &[id], &[]).await;
    let description = CollectionDescription::for_source(desc(), DataSource::Other);
    ctl.create_collections(&env.metadata(), None, vec![(id, description)])
        .await
        .unwrap();
    ctl.collection_metadata(id).unwrap().data_shard
}

/// A writer of `shard` on a persist client of its own: the outside writer of an
/// `Other` collection.
pub async fn outside_writer(env: &Env, shard: ShardId) -> WriteHandle<Timestamp> {
    let outside = PersistClient::open(&env.url).await.unwrap();
    outside
        .open_writer::<Timestamp>(shard, desc())
        .await
        .unwrap()
}

/// Appends `rows` at time `at` from the writer's upper, moving the upper to `to`
/// (`None`: closing it).
pub async fn write_outside(
    writer: &mut WriteHandle<Timestamp>,
    rows: Vec<(Row, i64)>,
    at: u64,
    to: Option<u64>,
) {
    let updates: Vec<_> = rows
        .into_iter()
        .map(|(row, diff)| (Ok(row), t(at), diff))
        .collect();
    let lower = writer.upper().clone();
    let upper = to.map_or_else(Antichain::new, |to| Antichain::from_elem(t(to)));
    writer
        .compare_and_append(&updates, lower, upper)
        .await
        .unwrap()
        .unwrap();
}

/// Appends `rows` to each table at `ts`, advancing to `ts + 1`, and waits for it.
pub async fn append(
    ctl: &mut Controller<Timestamp>,
    ts: u64,
    writes: Vec<(GlobalId, Vec<(Row, i64)>)>,
) {
    ctl.append_table(t(ts), t(ts + 1), writes)
        .unwrap()
        .await
        .unwrap();
}

/// A multiset of rows as a map.
pub fn as_map(rows: Vec<(Row, i64)>) -> BTreeMap<Row, i64> {
    rows.into_iter().collect()
}

/// Polls `check` (calling `apply_pending` first) until it holds, at most ~20 s.
pub async fn eventually(
    ctl: &mut Controller<Timestamp>,
    mut check: impl FnMut(&mut Controller<Timestamp>) -> bool,
) -> bool {
    for _ in 0..2000 {
        ctl.apply_pending();
        if check(ctl) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Moves tokio's paused clock forward by `by` in steps of a hundredth, firing the timers
/// on the way in order and letting the woken tasks run after each step: an explicit
/// clock for tests that run with `start_paused`, not a wait (no real time passes).
pub async fn drive_clock(by: Duration) {
    let step = (by / 100).max(Duration::from_millis(1));
    let until = tokio::time::Instant::now() + by;
    while tokio::time::Instant::now() < until {
        tokio::time::advance(step).await;
        tokio::task::yield_now().await;
    }
}

/// A read policy that keeps everything.
pub fn keep_all() -> ReadPolicy<Timestamp> {
    ReadPolicy::ValidFrom(strata_controller_api::Antichain::from_elem(t(0)))
}
