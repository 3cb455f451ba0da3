//! Strata persist against SlateDB 0.18 on the same local directory, fsync on, 1 KiB
//! values, measured in the same run:
//! - durable single-write latency (p50, p99): a SlateDB `put` whose handle is awaited
//!   until durable (`WriteHandle::await_durable`; `put` alone returns at the memtable), and
//!   a Strata single-row `compare_and_append`;
//! - 32 concurrent writers for a fixed time: SlateDB puts into one database, Strata
//!   appends each to its own shard. Beside them, the ceiling of any design that gives
//!   each shard its own log of objects (DESIGN.md's consensus): 32 writers doing nothing
//!   but raw `PutMode::Create`s of a state-sized object each, through the same store;
//! - 32 concurrent `append_table` callers of a `Controller`, one table each, one 1 KiB
//!   row per write, each awaiting its acknowledgement (durable: the txns commit is
//!   fsynced), against SlateDB's 32 writers: acknowledged writes/s, ack latency p50 and
//!   p99 beside SlateDB's durable-put latency under the same load, and the mean group
//!   size (acknowledged writes per distinct commit timestamp).
//!
//! SlateDB runs twice: with its default settings and with `flush_interval` = 1 ms. Both
//! systems write through the same `object_store` `LocalFileSystem` with fsync enabled.
//! Each metric is reported through `strata-bench-support` (one JSON line appended to
//! `$STRATA_BENCH_OUT`, see xtask's bench module); `--quick` shrinks the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slatedb::config::Settings;
use strata_bench_support::{Metric, Mode, report};
use slatedb::object_store::ObjectStore;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, ColumnType, Datum, GlobalId, MemoryCatalog, RelationDesc, Row,
    ScalarType, ShardId, StorageError, StorageMetadata, StorageTxn, Tables, Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_persist_backend::{Location, PersistClient, PersistConfig};

const VALUE_BYTES: usize = 1024;
const WRITERS: usize = 32;

struct Sizes {
    latency_ops_fast: usize,
    latency_ops_slow: usize,
    concurrent_for: Duration,
}

fn sizes() -> Sizes {
    if Mode::current() != Mode::Full {
        Sizes { latency_ops_fast: 100, latency_ops_slow: 20, concurrent_for: Duration::from_secs(2) }
    } else {
        Sizes { latency_ops_fast: 500, latency_ops_slow: 60, concurrent_for: Duration::from_secs(6) }
    }
}

/// Milliseconds at quantile `p` of `samples`.
fn percentile(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    strata_bench_support::percentile(&mut ms, p)
}

fn value() -> Vec<u8> {
    (0..VALUE_BYTES).map(|i| (i * 31 % 251) as u8).collect()
}

async fn fsync_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    let url = format!("file://{}", dir.display());
    Location::open(&url).await.expect("open file location").store
}

fn slatedb_settings(flush: Option<Duration>) -> Settings {
    let mut settings = Settings::default();
    if let Some(flush) = flush {
        settings.flush_interval = Some(flush);
    }
    settings
}

async fn slatedb_latency(store: Arc<dyn ObjectStore>, settings: Settings, ops: usize) -> Vec<Duration> {
    let db = slatedb::Db::builder("latency", store).with_settings(settings).build().await.expect("open slatedb");
    let v = value();
    let mut samples = Vec::with_capacity(ops);
    for i in 0..ops {
        let start = Instant::now();
        // In 0.18 `put` returns once the write is in the memtable; durability is awaited
        // on the handle it returns.
        let handle = db.put(format!("key-{i:08}").as_bytes(), &v).await.expect("slatedb put");
        handle.await_durable().await.expect("slatedb durable");
        samples.push(start.elapsed());
    }
    db.close().await.expect("close slatedb");
    samples
}

/// Spawns one task per writer, `start(w, deadline)`, each returning how many operations
/// it completed before the deadline; returns the total per second.
async fn ops_per_sec<F: Future<Output = u64> + Send + 'static>(
    run_for: Duration,
    mut start: impl FnMut(usize, Instant) -> F,
) -> f64 {
    let deadline = Instant::now() + run_for;
    let began = Instant::now();
    let tasks: Vec<_> = (0..WRITERS).map(|w| tokio::spawn(start(w, deadline))).collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.expect("writer task");
    }
    done as f64 / began.elapsed().as_secs_f64()
}

/// SlateDB with 32 writers into one database: durable puts/s, and every put's latency.
async fn slatedb_concurrent(store: Arc<dyn ObjectStore>, settings: Settings, run_for: Duration) -> (f64, Vec<Duration>) {
    let db = Arc::new(
        slatedb::Db::builder("concurrent", store).with_settings(settings).build().await.expect("open slatedb"),
    );
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rate = ops_per_sec(run_for, |w, deadline| {
        let (db, latencies) = (Arc::clone(&db), Arc::clone(&latencies));
        async move {
            let v = value();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                let handle = db.put(format!("w{w:02}-{i:08}").as_bytes(), &v).await.expect("slatedb put");
                handle.await_durable().await.expect("slatedb durable");
                latencies.lock().unwrap().push(start.elapsed());
                i += 1;
            }
            i
        }
    })
    .await;
    db.close().await.expect("close slatedb");
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    (rate, latencies)
}

fn desc() -> RelationDesc {
    RelationDesc::builder().with_column("value", ColumnType { scalar_type: ScalarType::Bytes, nullable: false }).finish()
}

fn shard(n: u64) -> ShardId {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    bytes[0] = 0x5a;
    ShardId::from_bytes(bytes)
}

async fn strata_latency(client: &PersistClient, ops: usize) -> Vec<Duration> {
    let mut writer = client.open_writer::<Timestamp>(shard(1_000_000), desc()).await.expect("open writer");
    let row = Row::pack(&[Datum::Bytes(value())]);
    let mut samples = Vec::with_capacity(ops);
    for t in 0..ops as u64 {
        let update = (Ok(row.clone()), Timestamp::new(t), 1);
        let start = Instant::now();
        writer
            .compare_and_append(&[update], Antichain::from_elem(Timestamp::new(t)), Antichain::from_elem(Timestamp::new(t + 1)))
            .await
            .expect("append")
            .expect("no other writer");
        samples.push(start.elapsed());
    }
    samples
}

async fn strata_concurrent(client: &PersistClient, run_for: Duration) -> f64 {
    let mut writers = Vec::new();
    for w in 0..WRITERS as u64 {
        writers.push(client.open_writer::<Timestamp>(shard(w), desc()).await.expect("open writer"));
    }
    let mut writers = writers.into_iter();
    ops_per_sec(run_for, |_, deadline| {
        let mut writer = writers.next().expect("one writer per task");
        async move {
            let row = Row::pack(&[Datum::Bytes(value())]);
            let mut t = 0u64;
            while Instant::now() < deadline {
                let update = (Ok(row.clone()), Timestamp::new(t), 1);
                writer
                    .compare_and_append(&[update], Antichain::from_elem(Timestamp::new(t)), Antichain::from_elem(Timestamp::new(t + 1)))
                    .await
                    .expect("append")
                    .expect("one writer per shard");
                t += 1;
            }
            t
        }
    })
    .await
}

/// 32 writers, each creating the next object of its own log (`PutMode::Create` of a
/// state-sized payload, fsynced), with nothing else: no reads, no encoding, no GC.
async fn raw_create_concurrent(store: Arc<dyn ObjectStore>, payload: usize, run_for: Duration) -> f64 {
    use slatedb::object_store::{PutMode, PutOptions, PutPayload, path::Path};
    ops_per_sec(run_for, |w, deadline| {
        let store = Arc::clone(&store);
        async move {
            let mut seqno = 0u64;
            while Instant::now() < deadline {
                let key = Path::from(format!("floor/{w}/state/{:020}", seqno + 1));
                store
                    .put_opts(&key, PutPayload::from(vec![7u8; payload]), PutOptions::from(PutMode::Create))
                    .await
                    .expect("raw create");
                seqno += 1;
            }
            seqno
        }
    })
    .await
}

/// What the 32 `append_table` callers measured.
struct TableRun {
    writes_per_sec: f64,
    /// From a caller's first attempt to its acknowledgement, over every acknowledged write.
    ack_latencies: Vec<Duration>,
    /// Acknowledged writes per distinct commit timestamp.
    mean_group_size: f64,
}

/// A controller on the file location `dir` with `WRITERS` tables; each caller appends
/// single rows to its own table at `Controller::table_write_ts` (the time that joins
/// the next group commit) and awaits the acknowledgement, retrying at a new time when a
/// commit started in between (`UpdateBeforeUpper`).
async fn strata_table_callers(dir: &std::path::Path, run_for: Duration) -> TableRun {
    let url = format!("file://{}", dir.display());
    let catalog = MemoryCatalog::new();
    let begin: CatalogFn<Timestamp> = {
        let catalog = catalog.clone();
        Arc::new(move || Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>)
    };
    let mut ctl = Controller::new(ControllerConfig::default(), begin, &url).await.expect("open controller");
    let ids: std::collections::BTreeSet<GlobalId> = (1..=WRITERS as u64).map(GlobalId::User).collect();
    let mut txn = catalog.begin::<Timestamp>();
    ctl.prepare_state(&mut txn, ids.clone(), Default::default()).await.expect("prepare state");
    txn.commit().await.expect("commit catalog");
    let meta = StorageMetadata::from_txn(&txn);
    let tables = ids.iter().map(|id| (*id, CollectionDescription::table(desc()))).collect();
    ctl.create_collections(&meta, Some(Timestamp::new(0)), tables).await.expect("create tables");

    let ctl = Arc::new(tokio::sync::Mutex::new(ctl));
    // (commit timestamp, latency) of every acknowledged write.
    let acks = Arc::new(std::sync::Mutex::new(Vec::<(u64, Duration)>::new()));
    let writes_per_sec = ops_per_sec(run_for, |w, deadline| {
        let (ctl, acks) = (Arc::clone(&ctl), Arc::clone(&acks));
        async move {
            let table = GlobalId::User(w as u64 + 1);
            let row = Row::pack(&[Datum::Bytes(value())]);
            let mut acked = 0u64;
            while Instant::now() < deadline {
                let start = Instant::now();
                loop {
                    let (write, ts) = {
                        let mut ctl = ctl.lock().await;
                        let ts = ctl.table_write_ts().expect("open tables");
                        let next = Timestamp::new(ts.as_millis() + 1);
                        // A commit that started after `table_write_ts` makes this late.
                        match ctl.append_table(ts, next, vec![(table, vec![(row.clone(), 1)])]) {
                            Ok(write) => (write, ts.as_millis()),
                            Err(StorageError::UpdateBeforeUpper { .. }) => continue,
                            Err(error) => panic!("append_table: {error}"),
                        }
                    };
                    match write.await {
                        Ok(()) => {
                            acks.lock().unwrap().push((ts, start.elapsed()));
                            acked += 1;
                            break;
                        }
                        Err(StorageError::UpdateBeforeUpper { .. }) => continue,
                        Err(error) => panic!("append_table: {error}"),
                    }
                }
            }
            acked
        }
    })
    .await;
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    let commits: std::collections::BTreeSet<u64> = acks.iter().map(|(ts, _)| *ts).collect();
    TableRun {
        writes_per_sec,
        mean_group_size: acks.len() as f64 / commits.len().max(1) as f64,
        ack_latencies: acks.into_iter().map(|(_, latency)| latency).collect(),
    }
}

/// The mean size of the shards' head files (their latest states) under `dir`.
fn mean_head_bytes(dir: &std::path::Path) -> usize {
    let shards = dir.join("shards");
    let sizes: Vec<u64> = std::fs::read_dir(&shards)
        .expect("shards dir")
        .filter_map(|entry| std::fs::metadata(entry.ok()?.path().join("head")).ok())
        .map(|meta| meta.len())
        .collect();
    assert!(!sizes.is_empty(), "no head files under {}", shards.display());
    (sizes.iter().sum::<u64>() / sizes.len() as u64) as usize
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let s = sizes();
    let dir = tempfile::tempdir().expect("tempdir");
    let store_for = |name: &str| dir.path().join(name);

    let slate_default_lat =
        slatedb_latency(fsync_store(&store_for("slate-default-lat")).await, slatedb_settings(None), s.latency_ops_slow).await;
    let slate_fast_lat = slatedb_latency(
        fsync_store(&store_for("slate-1ms-lat")).await,
        slatedb_settings(Some(Duration::from_millis(1))),
        s.latency_ops_fast,
    )
    .await;
    let (slate_default_rate, _) =
        slatedb_concurrent(fsync_store(&store_for("slate-default-conc")).await, slatedb_settings(None), s.concurrent_for).await;
    let (slate_fast_rate, slate_fast_conc_lat) = slatedb_concurrent(
        fsync_store(&store_for("slate-1ms-conc")).await,
        slatedb_settings(Some(Duration::from_millis(1))),
        s.concurrent_for,
    )
    .await;

    let strata_dir = store_for("strata");
    std::fs::create_dir_all(&strata_dir).expect("strata dir");
    let client = PersistClient::open_with_config(&format!("file://{}", strata_dir.display()), PersistConfig::default())
        .await
        .expect("open strata");
    let strata_lat = strata_latency(&client, s.latency_ops_fast).await;
    let strata_rate = strata_concurrent(&client, s.concurrent_for).await;
    // A state holding one inlined 1 KiB row is about this large...
    let state_bytes = VALUE_BYTES + 512;
    let floor_rate = raw_create_concurrent(fsync_store(&store_for("raw-floor")).await, state_bytes, s.concurrent_for).await;
    // ...but a shard's state carries up to `max_inline_state_bytes` of inline rows before
    // they are flushed to a part, so the states the 32 writers wrote are larger: the
    // floor at their measured mean size is the like-for-like one.
    let mean_state = mean_head_bytes(&strata_dir);
    let sized_floor_rate =
        raw_create_concurrent(fsync_store(&store_for("raw-floor-sized")).await, mean_state, s.concurrent_for).await;

    let tables_dir = store_for("strata-tables");
    std::fs::create_dir_all(&tables_dir).expect("strata tables dir");
    let tables = strata_table_callers(&tables_dir, s.concurrent_for).await;

    let (ours_p50, ours_p99) = (percentile(&strata_lat, 0.5), percentile(&strata_lat, 0.99));
    let (fast_p50, fast_p99) = (percentile(&slate_fast_lat, 0.5), percentile(&slate_fast_lat, 0.99));
    let default_p50 = percentile(&slate_default_lat, 0.5);

    let r = |name: &str, value: f64, unit: &str, baseline_name: &str, baseline_value: f64| {
        report(&Metric::new(name, value, unit, baseline_name, baseline_value));
    };
    r("strata_durable_append_p50", ours_p50, "ms", "slatedb_1ms_flush_durable_put_p50", fast_p50);
    r("strata_durable_append_p99", ours_p99, "ms", "slatedb_1ms_flush_durable_put_p99", fast_p99);
    r("strata_durable_append_p50_vs_default", ours_p50, "ms", "slatedb_default_durable_put_p50", default_p50);
    r("strata_32_writers", strata_rate, "appends/s", "slatedb_1ms_flush_32_writers", slate_fast_rate);
    r("strata_32_writers_vs_default", strata_rate, "appends/s", "slatedb_default_32_writers", slate_default_rate);
    r("strata_32_writers_vs_raw_create_floor", strata_rate, "appends/s", "raw_create_32_writers", floor_rate);
    r("raw_create_32_writers", floor_rate, "creates/s", "slatedb_1ms_flush_32_writers", slate_fast_rate);
    r(
        "strata_32_writers_vs_raw_create_of_mean_state_size",
        strata_rate,
        "appends/s",
        "raw_create_32_writers_mean_state_size",
        sized_floor_rate,
    );
    r("strata_mean_state_bytes", mean_state as f64, "bytes", "one_inline_row_state_bytes", state_bytes as f64);
    r(
        "append_table_32_callers",
        tables.writes_per_sec,
        "writes/s",
        "slatedb_1ms_flush_32_writers",
        slate_fast_rate,
    );
    r(
        "append_table_32_callers_ack_p50",
        percentile(&tables.ack_latencies, 0.5),
        "ms",
        "slatedb_1ms_flush_32_writers_put_p50",
        percentile(&slate_fast_conc_lat, 0.5),
    );
    r(
        "append_table_32_callers_ack_p99",
        percentile(&tables.ack_latencies, 0.99),
        "ms",
        "slatedb_1ms_flush_32_writers_put_p99",
        percentile(&slate_fast_conc_lat, 0.99),
    );
    // No peer figure: the group size is ours alone; the baseline is the caller count.
    r("append_table_32_callers_mean_group_size", tables.mean_group_size, "writes/commit", "callers", WRITERS as f64);
}
