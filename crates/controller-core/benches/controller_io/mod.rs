//! The controller's I/O comparisons, run from `controller.rs`'s `main`:
//! - bootstrap of N tables on the file backend against creating the same number of
//!   shards directly with persist-backend (both opening at most 32 at once);
//! - `append_table` from 32 concurrent callers, each awaiting its write (acknowledged
//!   writes/s), against single-shard `compare_and_append` from one caller; beside it
//!   the background applier's lag (acknowledgement to the data shard's persist upper
//!   passing the write, p50/p99) and the txns shard's live rows at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_bench_support::{Metric, percentile, report};
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, Datum, GlobalId, MemoryCatalog, RelationDesc,
    Row, ScalarType, ShardId, StorageError, StorageMetadata, StorageTxn, Tables, Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_persist_backend::PersistClient;

pub(crate) struct IoSizes {
    pub(crate) tables: u64,
    pub(crate) callers: usize,
    pub(crate) writes_per_caller: usize,
}

pub(crate) fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

fn file_url(dir: &tempfile::TempDir) -> String {
    format!("file://{}", dir.path().display())
}

pub(crate) fn catalog_fn(catalog: &MemoryCatalog) -> CatalogFn<Timestamp> {
    let catalog = catalog.clone();
    Arc::new(move || {
        Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>
    })
}

async fn controller(url: &str) -> (Controller<Timestamp>, MemoryCatalog) {
    let catalog = MemoryCatalog::new();
    let ctl = Controller::new(ControllerConfig::default(), catalog_fn(&catalog), url)
        .await
        .unwrap();
    (ctl, catalog)
}

/// Tables 1..=n recorded in the catalog (what a host does before creating them): the
/// metadata and the descriptions to create them with.
pub(crate) async fn prepare_tables(
    ctl: &Controller<Timestamp>,
    catalog: &MemoryCatalog,
    n: u64,
) -> (
    StorageMetadata,
    Vec<(GlobalId, CollectionDescription<Timestamp>)>,
) {
    let ids: BTreeSet<GlobalId> = (1..=n).map(GlobalId::User).collect();
    let mut txn = catalog.begin::<Timestamp>();
    ctl.prepare_state(&mut txn, ids.clone(), BTreeSet::new())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let tables = ids
        .into_iter()
        .map(|id| (id, CollectionDescription::table(desc())))
        .collect();
    (StorageMetadata::from_txn(&txn), tables)
}

async fn create_tables(ctl: &mut Controller<Timestamp>, catalog: &MemoryCatalog, n: u64) {
    let (meta, tables) = prepare_tables(ctl, catalog, n).await;
    ctl.create_collections(&meta, Some(Timestamp::new(0)), tables)
        .await
        .unwrap();
}

/// Bootstrap of `n` tables through the controller; returns its duration.
async fn bootstrap(n: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (mut ctl, catalog) = controller(&file_url(&dir)).await;
    let start = Instant::now();
    create_tables(&mut ctl, &catalog, n).await;
    start.elapsed()
}

/// Creating `n` shards directly with persist; returns its duration.
async fn bare_shards(n: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let client = PersistClient::open(&file_url(&dir)).await.unwrap();
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            async move {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&(i + 1).to_be_bytes());
                let writer = client
                    .open_writer::<Timestamp>(ShardId::from_bytes(bytes), desc())
                    .await
                    .unwrap();
                drop(writer);
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

/// What the concurrent-append run measured.
struct AppendRun {
    /// Acknowledged writes per second.
    writes_per_sec: f64,
    /// From each write's acknowledgement to its data shard's persist upper passing it
    /// (the background applier's lag), in ms: p50 and p99.
    applied_p50_ms: f64,
    applied_p99_ms: f64,
    /// Live rows in the txns shard at the end, as a second handle reads it.
    txns_live_rows: usize,
}

/// `callers` tasks each append and await `writes` single-row writes to one of 4
/// tables at the time the table's upper shows. A watcher meanwhile notes when each
/// table's data shard's persist upper passes each acknowledged write.
async fn concurrent_appends(callers: usize, writes: usize) -> AppendRun {
    let dir = tempfile::tempdir().unwrap();
    let (mut ctl, catalog) = controller(&file_url(&dir)).await;
    create_tables(&mut ctl, &catalog, 4).await;
    let client = ctl.persist_client().clone();
    let shards: Vec<ShardId> = (1..=4)
        .map(|t| {
            ctl.collection_metadata(GlobalId::User(t))
                .unwrap()
                .data_shard
        })
        .collect();
    let txns_shard = ctl.txns_shard();
    let ctl = Arc::new(tokio::sync::Mutex::new(ctl));
    // Per table: (commit time, acknowledged at, lag once applied).
    type Acks = Vec<Vec<(u64, Instant, Option<f64>)>>;
    let acks: Arc<std::sync::Mutex<Acks>> = Arc::new(std::sync::Mutex::new(vec![Vec::new(); 4]));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (acks, done, client, shards) = (
            Arc::clone(&acks),
            Arc::clone(&done),
            client.clone(),
            shards.clone(),
        );
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                for (i, shard) in shards.iter().enumerate() {
                    let upper = client
                        .fetch_recent_upper::<Timestamp>(*shard)
                        .await
                        .unwrap();
                    let now = Instant::now();
                    let mut acks = acks.lock().unwrap();
                    for (ts, at, lag) in acks[i].iter_mut().filter(|a| a.2.is_none()) {
                        if !upper.less_equal(&Timestamp::new(*ts)) {
                            *lag = Some(now.saturating_duration_since(*at).as_secs_f64() * 1e3);
                        }
                    }
                }
                let all_applied = acks.lock().unwrap().iter().flatten().all(|a| a.2.is_some());
                if (finished && all_applied) || Instant::now() > deadline {
                    let acks = acks.lock().unwrap();
                    return acks
                        .iter()
                        .flatten()
                        .filter_map(|a| a.2)
                        .collect::<Vec<f64>>();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (ctl, acks) = (Arc::clone(&ctl), Arc::clone(&acks));
            tokio::spawn(async move {
                let slot = caller % 4;
                let table = GlobalId::User(slot as u64 + 1);
                for i in 0..writes {
                    let row = Row::pack(&[Datum::Int64((caller * writes + i) as i64)]);
                    loop {
                        let (write, ts) = {
                            let mut ctl = ctl.lock().await;
                            let ts = ctl.table_write_ts().unwrap();
                            let next = Timestamp::new(ts.as_millis() + 1);
                            match ctl.append_table(ts, next, vec![(table, vec![(row.clone(), 1)])])
                            {
                                Ok(write) => (write, ts.as_millis()),
                                Err(StorageError::UpdateBeforeUpper { .. }) => continue,
                                Err(error) => panic!("{error}"),
                            }
                        };
                        match write.await {
                            Ok(()) => {
                                acks.lock().unwrap()[slot].push((ts, Instant::now(), None));
                                break;
                            }
                            Err(StorageError::UpdateBeforeUpper { .. }) => continue,
                            Err(error) => panic!("{error}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let writes_per_sec = (callers * writes) as f64 / start.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut lags = watcher.await.unwrap();
    let mut txns = strata_persist_backend::txns::TxnsHandle::<Timestamp>::open(client, txns_shard)
        .await
        .unwrap();
    txns.fetch_txns_upper().await.unwrap();
    AppendRun {
        writes_per_sec,
        applied_p50_ms: percentile(&mut lags, 0.5),
        applied_p99_ms: percentile(&mut lags, 0.99),
        txns_live_rows: txns.live_rows(),
    }
}

/// One caller doing `n` single-row `compare_and_append`s to one shard; writes/s.
async fn single_shard_appends(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let client = PersistClient::open(&file_url(&dir)).await.unwrap();
    let mut writer = client
        .open_writer::<Timestamp>(ShardId::from_bytes([7; 16]), desc())
        .await
        .unwrap();
    let start = Instant::now();
    for i in 0..n as u64 {
        let row = Row::pack(&[Datum::Int64(i as i64)]);
        let (lower, upper) = (
            Antichain::from_elem(Timestamp::new(i)),
            Antichain::from_elem(Timestamp::new(i + 1)),
        );
        writer
            .compare_and_append(&[(Ok(row), Timestamp::new(i), 1)], lower, upper)
            .await
            .unwrap()
            .unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Runs both comparisons and reports them.
pub(crate) fn run(sizes: IoSizes) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let controller = bootstrap(sizes.tables).await;
        let bare = bare_shards(sizes.tables).await;
        let appends = concurrent_appends(sizes.callers, sizes.writes_per_caller).await;
        let single = single_shard_appends(sizes.callers * sizes.writes_per_caller).await;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        report(&Metric::new(
            "controller_bootstrap_file_tables",
            ms(controller),
            "ms",
            "persist_create_shards_directly",
            ms(bare),
        ));
        report(&Metric::new(
            "append_table_32_concurrent_callers",
            appends.writes_per_sec,
            "writes/s",
            "single_shard_compare_and_append",
            single,
        ));
        // No baseline: the targets are absolute (applied within 1 s p99; live rows
        // bounded, not growing with the number of writes).
        for (label, lag) in [
            ("p50", appends.applied_p50_ms),
            ("p99", appends.applied_p99_ms),
        ] {
            report(&Metric::new(
                format!("applier_lag_{label}_32_callers"),
                lag,
                "ms",
                "target_p99_bound",
                1000.0,
            ));
        }
        report(&Metric::new(
            "txns_live_rows_after_32_callers",
            appends.txns_live_rows as f64,
            "rows",
            "writes_committed",
            (sizes.callers * sizes.writes_per_caller) as f64,
        ));
    });
}
