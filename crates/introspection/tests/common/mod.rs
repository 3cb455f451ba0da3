//! Helpers shared by the integration tests: backends, shards, snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_controller_api::{
    Antichain, Datum, GlobalId, IntrospectionType, RelationDesc, Row, ShardId, Timestamp,
};
use strata_introspection::{CollectionKind, schema};
use strata_introspection::{CollectionManager, ControllerMetrics, ManagerConfig, Registration};
use strata_persist_backend::{PersistClient, PersistConfig, WriteHandle};
use strata_testkit::faults::{WriteGate, gated_memory_location};

/// A backend for one test: `mem://` or a fresh directory.
pub struct Backend {
    pub client: PersistClient,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    pub fn from_client(client: PersistClient) -> Backend {
        Backend { client, _dir: None }
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

pub async fn backend(file: bool) -> Backend {
    if file {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let client = PersistClient::open_with_config(&url, PersistConfig::for_tests())
            .await
            .unwrap();
        Backend {
            client,
            _dir: Some(dir),
        }
    } else {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let url = format!("mem://introspection-test-{}-{n}", std::process::id());
        let client = PersistClient::open_with_config(&url, PersistConfig::for_tests())
            .await
            .unwrap();
        Backend { client, _dir: None }
    }
}

/// A memory backend under a write gate (see `strata_testkit::faults::WriteGate`), and a
/// backend on the same store without it, for reads that register a handle (a leased
/// reader writes its lease) while the gate denies writes.
pub async fn gated_backend() -> (Backend, Backend, std::sync::Arc<WriteGate>) {
    let location = gated_memory_location("introspection-test").await.unwrap();
    let open = |url: String| async move {
        let client = PersistClient::open_with_config(&url, PersistConfig::for_tests())
            .await
            .unwrap();
        Backend::from_client(client)
    };
    let gated = open(location.url).await;
    let bare = open(location.ungated_url).await;
    (gated, bare, location.gate)
}

pub fn shard(n: u8) -> ShardId {
    ShardId::from_bytes([n; 16])
}

pub fn text_row(a: &str, b: &str) -> Row {
    Row::pack(&[Datum::String(a.into()), Datum::String(b.into())])
}

pub fn mapping_desc() -> RelationDesc {
    schema::desc(IntrospectionType::ShardMapping)
}

/// A config that ticks and batches quickly and never truncates on its own.
pub fn fast_config() -> ManagerConfig {
    ManagerConfig {
        tick_interval: Duration::from_millis(20),
        batch_duration: Duration::from_millis(2),
        truncation_interval: Duration::from_secs(3600),
        backoff: strata_controller_api::retry::BackoffConfig::doubling(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ),
        ..ManagerConfig::default()
    }
}

pub fn manager(read_only: bool, cfg: ManagerConfig) -> CollectionManager<Timestamp> {
    CollectionManager::new(read_only, cfg, ControllerMetrics::default())
}

pub async fn writer(b: &Backend, shard: ShardId, desc: RelationDesc) -> WriteHandle<Timestamp> {
    b.client
        .open_writer::<Timestamp>(shard, desc)
        .await
        .unwrap()
}

pub async fn register(
    m: &CollectionManager<Timestamp>,
    b: &Backend,
    id: GlobalId,
    shard: ShardId,
    desc: RelationDesc,
    kind: CollectionKind,
) {
    let write = writer(b, shard, desc).await;
    m.register(Registration::new(id, b.client.clone(), write, kind))
        .unwrap();
}

/// Appends `rows` as "a previous process" would, at the shard's upper.
pub async fn seed(b: &Backend, shard: ShardId, desc: RelationDesc, rows: &[(Row, i64)]) {
    let mut w = writer(b, shard, desc).await;
    let upper = *w.fetch_recent_upper().await.unwrap().as_option().unwrap();
    let updates: Vec<_> = rows
        .iter()
        .map(|(r, d)| (Ok(r.clone()), upper, *d))
        .collect();
    w.compare_and_append(
        &updates,
        Antichain::from_elem(upper),
        Antichain::from_elem(Timestamp::new(upper.as_millis() + 1)),
    )
    .await
    .unwrap()
    .unwrap();
}

pub async fn upper(b: &Backend, shard: ShardId) -> Antichain<Timestamp> {
    b.client
        .fetch_recent_upper::<Timestamp>(shard)
        .await
        .unwrap()
}

/// The shard's consolidated contents at `upper - 1`, read directly (not through a
/// manager), as a map from row to multiplicity. Errors are a test failure.
pub async fn contents(b: &Backend, shard: ShardId, desc: RelationDesc) -> BTreeMap<Row, i64> {
    let upper = upper(b, shard).await;
    let Some(as_of) = upper.as_option().unwrap().as_millis().checked_sub(1) else {
        return BTreeMap::new();
    };
    let mut r = b
        .client
        .open_leased_reader::<Timestamp>(shard, desc)
        .await
        .unwrap();
    let snap = r.snapshot(&Timestamp::new(as_of)).await.unwrap();
    let mut out = BTreeMap::new();
    for (data, _, diff) in snap {
        *out.entry(data.expect("no error rows")).or_insert(0) += diff;
    }
    out.retain(|_, d| *d != 0);
    out
}

pub fn map(rows: &[(Row, i64)]) -> BTreeMap<Row, i64> {
    rows.iter().cloned().collect()
}

/// Polls `cond` every 20 ms, up to 30 s; returns whether it became true.
pub async fn eventually<F, Fut>(mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1500 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
