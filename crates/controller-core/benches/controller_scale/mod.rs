//! Cost per operation against the number of tables, run from `controller.rs`'s `main`
//! (`STRATA_BENCH_ONLY=scale`): a controller on the memory backend with N tables, at a
//! small and a large N, timing what a host does one operation at a time:
//! - creating all N tables (one `create_collections`);
//! - one 1-row `append_table`, awaited, and the `process` round that reports it
//!   (medians over several writes), and the `process` round of the sweep that moves
//!   the tables nobody wrote (once per sweep interval);
//! - read holds on all N (`acquire_read_holds`);
//! - reopening: a new controller over the same catalog and location, bootstrapping
//!   all N;
//! - the store requests per second while every table is idle (over one lease
//!   renewal period, which is when idle handles would talk to the store);
//! - resident memory per table (the large N only, measured first, before the
//!   allocator holds freed memory from an earlier run), and how much of it is the
//!   memory backend's own data (the stored objects' sizes, per table).
//!
//! Each figure at the large N is reported against the same figure at the small N, in
//! the same run: the target is that the ratio stays small (the cost per operation does
//! not grow with N). Idle requests and memory per table are absolute.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::memory::InMemory;
use strata_bench_support::{Metric, report};
use strata_controller_api::{
    CollectionDescription, Collections, Datum, GlobalId, Lifecycle, MemoryCatalog, Reads, Row,
    StorageMetadata, StorageResponse, Tables, Timestamp,
};
use strata_controller_core::{Controller, ControllerConfig};
use strata_persist_backend::location::{register_memory_location, unregister_memory_location};
use strata_testkit::faults::{FaultHandle, FaultyObjectStore};

use crate::controller_io::{catalog_fn, desc, prepare_tables};

pub(crate) struct ScaleSizes {
    pub(crate) small: u64,
    pub(crate) large: u64,
    /// Single-row writes timed per size (the median is reported).
    pub(crate) writes: usize,
    /// How long the idle store traffic is counted.
    pub(crate) idle_window: Duration,
}

/// Everything measured at one N.
struct Figures {
    create: Duration,
    append: Duration,
    process: Duration,
    sweep: Duration,
    holds: Duration,
    reopen: Duration,
    idle_requests_per_sec: f64,
    rss_bytes_per_table: f64,
    /// The bytes the memory store holds per table (object sizes only): the part of
    /// the resident memory that is the backend's data, not the controller's state.
    store_bytes_per_table: f64,
}

/// The total size of the objects in `store`.
async fn stored_bytes(store: &InMemory) -> u64 {
    use futures::StreamExt;
    use object_store::ObjectStore;
    let mut total = 0;
    let mut objects = store.list(None);
    while let Some(meta) = objects.next().await {
        total += meta.map_or(0, |m| m.size);
    }
    total
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn open(catalog: &MemoryCatalog, url: &str) -> Controller<Timestamp> {
    catalog.bump_epoch();
    Controller::new(ControllerConfig::default(), catalog_fn(catalog), url)
        .await
        .unwrap()
}

/// The descriptions of tables 1..=n, as a restarted host passes them again.
fn table_descriptions(n: u64) -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    (1..=n)
        .map(|i| (GlobalId::User(i), CollectionDescription::table(desc())))
        .collect()
}

/// One awaited single-row write to table 1, then `process` rounds until one reports
/// table 1 past the write; returns the write's and the rounds' durations.
async fn one_write(ctl: &mut Controller<Timestamp>, value: i64) -> (Duration, Duration) {
    let table = GlobalId::User(1);
    let start = Instant::now();
    let ts = ctl.table_write_ts().unwrap();
    let next = Timestamp::new(ts.as_millis() + 1);
    let row = Row::pack(&[Datum::Int64(value)]);
    ctl.append_table(ts, next, vec![(table, vec![(row, 1)])])
        .unwrap()
        .await
        .unwrap();
    let append = start.elapsed();
    let mut process = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no upper report for the write");
        let _ = tokio::time::timeout(Duration::from_millis(100), ctl.ready()).await;
        let round = Instant::now();
        let response = ctl.process().unwrap();
        process += round.elapsed();
        if let Some(StorageResponse::FrontierUpdates(updates)) = response
            && updates
                .iter()
                .any(|(id, upper)| *id == table && !upper.less_equal(&ts))
        {
            return (append, process);
        }
    }
}

/// After one more write, the `process` rounds until the sweep that moves every
/// table's frontiers to the shared upper has been reported: what the tables nobody
/// wrote cost, at most once per sweep interval.
async fn sweep_round(ctl: &mut Controller<Timestamp>, n: u64) -> Duration {
    one_write(ctl, -1).await;
    let mut total = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no sweep reported");
        let _ = tokio::time::timeout(Duration::from_secs(2), ctl.ready()).await;
        let round = Instant::now();
        let response = ctl.process().unwrap();
        total += round.elapsed();
        if let Some(StorageResponse::FrontierUpdates(updates)) = response
            && updates.len() as u64 >= n
        {
            return total;
        }
    }
}

async fn measure(n: u64, sizes: &ScaleSizes, name: &str) -> Figures {
    let memory = Arc::new(InMemory::new());
    let store = FaultyObjectStore::new(Arc::clone(&memory) as Arc<_>, 1);
    let counter: FaultHandle = store.handle();
    register_memory_location(name, Arc::new(store));
    let url = format!("mem://{name}");
    let catalog = MemoryCatalog::new();
    let rss_before = rss_bytes();
    let mut ctl = open(&catalog, &url).await;
    let (meta, tables) = prepare_tables(&ctl, &catalog, n).await;
    let ids: Vec<GlobalId> = tables.iter().map(|(id, _)| *id).collect();
    let start = Instant::now();
    ctl.create_collections(&meta, Some(Timestamp::new(0)), tables)
        .await
        .unwrap();
    let create = start.elapsed();
    ctl.initialization_complete();
    let mut appends = Vec::new();
    let mut processes = Vec::new();
    for i in 0..sizes.writes {
        let (append, process) = one_write(&mut ctl, i as i64).await;
        appends.push(append);
        processes.push(process);
    }
    let sweep = sweep_round(&mut ctl, n).await;
    let start = Instant::now();
    let holds = ctl.acquire_read_holds(ids).unwrap();
    let holds_time = start.elapsed();
    drop(holds);
    let rss_bytes_per_table = rss_bytes().saturating_sub(rss_before) as f64 / n as f64;
    let store_bytes_per_table = stored_bytes(&memory).await as f64 / n as f64;
    // Idle: drain what the writes left, then count what the store sees while nothing
    // happens.
    while let Ok(()) = tokio::time::timeout(Duration::from_millis(200), ctl.ready()).await {
        ctl.process().unwrap();
    }
    let before = counter.counters().calls.total();
    let idle_start = Instant::now();
    let idle_end = idle_start + sizes.idle_window;
    while Instant::now() < idle_end {
        if tokio::time::timeout_at(idle_end.into(), ctl.ready())
            .await
            .is_ok()
        {
            ctl.process().unwrap();
        }
    }
    let idle_requests_per_sec =
        (counter.counters().calls.total() - before) as f64 / idle_start.elapsed().as_secs_f64();
    // A restart: the old controller is gone before the new one starts.
    ctl.close().await;
    let start = Instant::now();
    let mut ctl = open(&catalog, &url).await;
    let meta = StorageMetadata::from_txn(&catalog.begin::<Timestamp>());
    ctl.create_collections_for_bootstrap(
        &meta,
        Some(Timestamp::new(0)),
        table_descriptions(n),
        &BTreeSet::new(),
    )
    .await
    .unwrap();
    let reopen = start.elapsed();
    drop(ctl);
    unregister_memory_location(name);
    Figures {
        create,
        append: median(appends),
        process: median(processes),
        sweep,
        holds: holds_time,
        reopen,
        idle_requests_per_sec,
        rss_bytes_per_table,
        store_bytes_per_table,
    }
}

/// Measures both sizes and reports every figure.
pub(crate) fn run(sizes: ScaleSizes) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let large = measure(sizes.large, &sizes, "bench-scale-large").await;
        let small = measure(sizes.small, &sizes, "bench-scale-small").await;
        let (s, l) = (sizes.small, sizes.large);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Creating and reopening N tables is O(N): their target is absolute, 3 s at
        // 100k tables (scaled to the large N of a quick run).
        let bound_ms = 3000.0 * l as f64 / 100_000.0;
        for (what, figure) in [("create_all", large.create), ("reopen", large.reopen)] {
            report(&Metric::new(
                format!("scale_{what}_{l}_tables"),
                ms(figure),
                "ms",
                "target_bound",
                bound_ms,
            ));
        }
        for (what, large, small) in [
            ("create_all", large.create, small.create),
            ("append_table_1_row", large.append, small.append),
            ("process_round_after_append", large.process, small.process),
            ("process_round_of_a_table_sweep", large.sweep, small.sweep),
            ("read_holds_on_all", large.holds, small.holds),
            ("reopen", large.reopen, small.reopen),
        ] {
            report(&Metric::new(
                format!("scale_{what}_{l}_vs_{s}_tables"),
                ms(large),
                "ms",
                format!("scale_{what}_{s}_tables"),
                ms(small),
            ));
        }
        // Absolute targets: at most 10 store requests/s, at most 2 KiB per table.
        report(&Metric::new(
            format!("scale_idle_store_requests_{l}_tables"),
            large.idle_requests_per_sec,
            "requests/s",
            "target_bound",
            10.0,
        ));
        report(&Metric::new(
            format!("scale_idle_store_requests_{s}_tables"),
            small.idle_requests_per_sec,
            "requests/s",
            "target_bound",
            10.0,
        ));
        report(&Metric::new(
            format!("scale_rss_per_table_{l}_tables"),
            large.rss_bytes_per_table,
            "bytes",
            "target_bound",
            2048.0,
        ));
        // How much of that memory is the memory backend's own data.
        report(&Metric::new(
            format!("scale_store_bytes_per_table_{l}_tables"),
            large.store_bytes_per_table,
            "bytes",
            format!("scale_rss_per_table_{l}_tables"),
            large.rss_bytes_per_table,
        ));
    });
}
