//! `cargo xtask bench persist`: persist-backend figures, each beside a baseline measured
//! in the same process on the same store.
//!
//! - `append_p50_{backend}` / `append_p99_{backend}`: a durable single-row
//!   `compare_and_append`, against the floor: the raw `object_store` writes such an
//!   append needs at minimum (one `PutMode::Create` of a state-sized payload; the row is
//!   inlined, so there is no part put). Append and floor samples alternate, so load on
//!   the machine hits both alike.
//! - `append_throughput_100k_file`: one 100k-row append against a raw put of the
//!   bytes of those updates encoded as one Parquet part, both in MB/s of that size.
//!   The append writes them as several parts of about `append_part_bytes` (put while the
//!   later ones are still being coded), whose sum is a little larger (a footer each).
//! - `snapshot_1m_after_compaction_file`: a consolidated snapshot of 1M rows after
//!   compaction (rows/s) against fetching the same Parquet parts and decoding them raw
//!   with the parquet crate's arrow reader. The snapshot uses what persist does in
//!   production: a large part is fetched as two concurrent ranges and decoded on two
//!   threads into rows; the baseline is one GET and one arrow reader on one thread,
//!   producing Arrow arrays, not rows.
//!
//! - `txns_commit_with_{n}_tables`: a one-row commit through the txns shard with `n`
//!   tables registered, against the same commit with one table registered: a commit's
//!   cost must not grow with the number of tables (target about 1x).
//!
//! Backends: `mem://` and `file://` (a temp dir) always; S3 when
//! `STRATA_S3_TEST_BUCKET` is set along with the AWS variables. To bench against a
//! local moto server, start it as `cargo xtask test` does:
//!
//! ```text
//! $CARGO_TARGET_DIR/moto-venv/bin/moto_server -H 127.0.0.1 -p 5055 &
//! curl -X PUT http://127.0.0.1:5055/strata-bench
//! AWS_ENDPOINT_URL=http://127.0.0.1:5055 AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
//!   STRATA_S3_TEST_BUCKET=strata-bench cargo xtask bench persist
//! ```
//!
//! Micro-benchmarks (criterion groups, see `persist_micro`): consolidation, row
//! encode and row decode, each against a textbook baseline.
//!
//! The end-to-end figures above are measured here and reported through
//! `strata-bench-support`; the percentiles carry `samples`. `--quick` shrinks every
//! size; run without `--bench` (as `cargo test --all-targets` does) criterion runs each
//! group once and the rest runs at a tiny size, reporting nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_bench_support::{Metric, Mode, median, micro, report, report_percentiles};
use strata_controller_api::{
    Antichain, ColumnType, Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp,
};
use strata_persist_backend::part::encode_part;
use strata_persist_backend::{PersistClient, PersistConfig};

mod persist_micro;

struct Sizes {
    latency_ops: usize,
    throughput_rows: usize,
    throughput_reps: usize,
    snapshot_rows: usize,
    snapshot_batches: usize,
    snapshot_reps: usize,
    scale_tables: usize,
    scale_commits: u64,
}

fn sizes(mode: Mode) -> Sizes {
    match mode {
        Mode::Smoke => Sizes {
            latency_ops: 20,
            throughput_rows: 1_000,
            throughput_reps: 1,
            snapshot_rows: 10_000,
            snapshot_batches: 2,
            snapshot_reps: 1,
            scale_tables: 10,
            scale_commits: 5,
        },
        Mode::Quick => Sizes {
            latency_ops: 60,
            throughput_rows: 10_000,
            throughput_reps: 3,
            snapshot_rows: 100_000,
            snapshot_batches: 4,
            snapshot_reps: 3,
            scale_tables: 10_000,
            scale_commits: 200,
        },
        Mode::Full => Sizes {
            latency_ops: 400,
            throughput_rows: 100_000,
            throughput_reps: 5,
            snapshot_rows: 1_000_000,
            snapshot_batches: 10,
            snapshot_reps: 7,
            scale_tables: 100_000,
            scale_commits: 500,
        },
    }
}

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column(
            "id",
            ColumnType {
                scalar_type: ScalarType::Int64,
                nullable: false,
            },
        )
        .with_column(
            "name",
            ColumnType {
                scalar_type: ScalarType::String,
                nullable: false,
            },
        )
        .finish()
}

fn row(i: u64) -> Row {
    Row::pack(&[
        Datum::Int64(i as i64),
        Datum::String(format!("row-{i:012}-abcdefghijklmnop")),
    ])
}

fn shard(n: u8) -> ShardId {
    ShardId::from_bytes([n; 16])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Single-row durable appends against one conditional create of a state-sized payload.
async fn latency(backend: &str, url: &str, ops: usize) {
    let client = PersistClient::open_with_config(url, PersistConfig::default())
        .await
        .expect("open");
    let s = shard(1);
    let mut writer = client
        .open_writer::<Timestamp>(s, desc())
        .await
        .expect("open writer");
    let consensus = strata_persist_backend::consensus::open(client.location());
    let store = client.location().store.clone();
    let floor_prefix = client.location().prefix.clone();
    let (mut ours, mut floor) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    // A short warm-up brings the state to its steady size (compaction keeps it there).
    let warmup = ops / 10;
    for t in 0..(ops + warmup) as u64 {
        let update = (Ok(row(t)), Timestamp::new(t), 1);
        let start = Instant::now();
        writer
            .compare_and_append(
                &[update],
                Antichain::from_elem(Timestamp::new(t)),
                Antichain::from_elem(Timestamp::new(t + 1)),
            )
            .await
            .expect("append")
            .expect("the only writer");
        let took = start.elapsed();
        // The floor writes what this append's create wrote: the head state's bytes.
        let head = consensus.head(s, 0).await.expect("head").expect("written");
        let key = Path::from_iter(
            floor_prefix
                .parts()
                .chain(["floor".into(), format!("{t:020}").as_str().into()]),
        );
        let start = Instant::now();
        store
            .put_opts(
                &key,
                PutPayload::from_bytes(head.data),
                PutOptions::from(PutMode::Create),
            )
            .await
            .expect("floor put");
        let floor_took = start.elapsed();
        if t >= warmup as u64 {
            ours.push(ms(took));
            floor.push(ms(floor_took));
        }
    }
    report_percentiles(
        &mut ours,
        &mut floor,
        "ms",
        |p| format!("append_{p}_{backend}"),
        |p| format!("floor_conditional_create_{p}_{backend}"),
    );
}

/// One large append against a raw put of its Parquet bytes.
async fn throughput(url: &str, rows: usize, reps: usize) {
    let client = PersistClient::open_with_config(url, PersistConfig::for_tests())
        .await
        .expect("open");
    let s = shard(2);
    let mut writer = client
        .open_writer::<Timestamp>(s, desc())
        .await
        .expect("open writer");
    let store = client.location().store.clone();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for rep in 0..reps as u64 {
        let updates: Vec<_> = (0..rows as u64)
            .map(|i| (Ok(row(rep * rows as u64 + i)), Timestamp::new(rep), 1))
            .collect();
        let coded: Vec<_> = updates
            .iter()
            .map(|(d, _, diff)| (d.clone(), rep, *diff))
            .collect();
        let bytes = encode_part(&desc(), &coded).expect("encode");
        let mb = bytes.len() as f64 / 1e6;
        let start = Instant::now();
        writer
            .compare_and_append(
                &updates,
                Antichain::from_elem(Timestamp::new(rep)),
                Antichain::from_elem(Timestamp::new(rep + 1)),
            )
            .await
            .expect("append")
            .expect("the only writer");
        ours.push(mb / start.elapsed().as_secs_f64());
        let key = Path::from(format!("raw/{rep}"));
        let start = Instant::now();
        store
            .put_opts(&key, PutPayload::from_bytes(bytes), PutOptions::default())
            .await
            .expect("raw put");
        raw.push(mb / start.elapsed().as_secs_f64());
    }
    report(&Metric::new(
        format!("append_throughput_{rows}_rows_file"),
        median(ours),
        "MB/s",
        "raw_put_same_bytes_file",
        median(raw),
    ));
}

/// A consolidated snapshot after compaction against a raw arrow decode of its parts.
async fn snapshot(url: &str, rows: usize, batches: usize, reps: usize) {
    let client = PersistClient::open_with_config(url, PersistConfig::for_tests())
        .await
        .expect("open");
    let s = shard(3);
    let mut writer = client
        .open_writer::<Timestamp>(s, desc())
        .await
        .expect("open writer");
    let per = rows / batches;
    for b in 0..batches as u64 {
        let updates: Vec<_> = (0..per as u64)
            .map(|i| (Ok(row(b * per as u64 + i)), Timestamp::new(b), 1))
            .collect();
        writer
            .compare_and_append(
                &updates,
                Antichain::from_elem(Timestamp::new(b)),
                Antichain::from_elem(Timestamp::new(b + 1)),
            )
            .await
            .expect("append")
            .expect("the only writer");
    }
    while client.compact(s, 16).await.expect("compact") > 0 {}
    client.gc(s).await.expect("gc");
    let as_of = Timestamp::new(batches as u64 - 1);
    let mut reader = client
        .open_leased_reader::<Timestamp>(s, desc())
        .await
        .expect("open reader");
    let keys = client.referenced_part_keys(s).await.expect("keys");
    let store = client.location().store.clone();
    let prefix = client.location().prefix.clone();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    // One unrecorded round warms both paths; then the order alternates, so whichever
    // runs second (and may reuse memory the first freed) is not always the same one.
    for rep in 0..=reps {
        let (mut ours_rate, mut raw_rate) = (0.0, 0.0);
        for step in 0..2 {
            if (step == 0) == (rep % 2 == 0) {
                let start = Instant::now();
                let snap = reader.snapshot(&as_of).await.expect("snapshot");
                ours_rate = snap.len() as f64 / start.elapsed().as_secs_f64();
                assert_eq!(snap.len(), per * batches);
            } else {
                let start = Instant::now();
                let n = raw_decode(&store, &prefix, &keys).await;
                raw_rate = n as f64 / start.elapsed().as_secs_f64();
                assert_eq!(n, per * batches);
            }
        }
        if rep > 0 {
            ours.push(ours_rate);
            raw.push(raw_rate);
        }
    }
    let ratios: Vec<f64> = ours.iter().zip(&raw).map(|(o, r)| o / r).collect();
    println!("snapshot ratio per round: {ratios:.2?}");
    report(&Metric::new(
        format!("snapshot_{rows}_rows_after_compaction_file"),
        median(ours),
        "rows/s",
        "raw_arrow_decode_same_parts_file",
        median(raw),
    ));
}

/// Fetches each part whole and decodes it with the parquet crate's arrow reader on
/// this thread; returns the number of rows.
async fn raw_decode(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: &Path,
    keys: &[String],
) -> usize {
    let mut n = 0;
    for key in keys {
        let path = Path::from_iter(prefix.parts().chain(key.split('/').map(Into::into)));
        let bytes: Bytes = store
            .get_opts(&path, Default::default())
            .await
            .expect("get part")
            .bytes()
            .await
            .expect("part bytes");
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader")
        {
            n += batch.expect("batch").num_rows();
        }
    }
    n
}

fn main() {
    let mode = Mode::current();
    micro::run(mode, &[persist_micro::consolidation, persist_micro::rows]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(end_to_end(sizes(mode)));
}

/// The end-to-end figures: append latency per backend, throughput and snapshot.
async fn end_to_end(s: Sizes) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file_url = |name: &str| format!("file://{}", dir.path().join(name).display());

    latency(
        "memory",
        &format!("mem://bench-{}", uuid::Uuid::new_v4().simple()),
        s.latency_ops,
    )
    .await;
    latency("file", &file_url("latency"), s.latency_ops).await;
    // The design decision of #15: the same appends on the older fenced log, chosen by
    // the location's format marker.
    let log_dir = dir.path().join("latency-log");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(log_dir.join("strata-format"), "consensus=log\n").expect("marker");
    latency("file_log", &file_url("latency-log"), s.latency_ops).await;
    match std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
    {
        Some(bucket) => {
            let url = format!("s3://{bucket}/bench-{}", uuid::Uuid::new_v4().simple());
            latency("s3", &url, s.latency_ops).await;
        }
        None => println!(
            "note: STRATA_S3_TEST_BUCKET is unset; skipping the S3 latency figures (see the bench's doc)"
        ),
    }
    throughput(
        &file_url("throughput"),
        s.throughput_rows,
        s.throughput_reps,
    )
    .await;
    snapshot(
        &file_url("snapshot"),
        s.snapshot_rows,
        s.snapshot_batches,
        s.snapshot_reps,
    )
    .await;
    let one = txns_commit_cost(1, s.scale_commits).await;
    let many = txns_commit_cost(s.scale_tables, s.scale_commits).await;
    report(&Metric::new(
        format!("txns_commit_with_{}_tables", s.scale_tables),
        many,
        "ms/commit",
        "txns_commit_with_1_table",
        one,
    ));
}

/// The mean time of a one-row txns commit (memory backend) with `tables` registered.
async fn txns_commit_cost(tables: usize, commits: u64) -> f64 {
    use strata_persist_backend::txns::{Txn, TxnsHandle};
    let url = format!("mem://bench-txns-{}", uuid::Uuid::new_v4().simple());
    let client = PersistClient::open(&url).await.expect("open");
    let mut txns = TxnsHandle::<Timestamp>::open(client, ShardId::from_bytes([0xee; 16]))
        .await
        .expect("txns");
    let shards: Vec<ShardId> = (0..tables as u64)
        .map(|i| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i + 1).to_be_bytes());
            ShardId::from_bytes(bytes)
        })
        .collect();
    txns.register(Timestamp::new(1), shards.iter().map(|s| (*s, desc())))
        .await
        .expect("register")
        .expect("at the upper");
    let start = Instant::now();
    for i in 0..commits {
        let mut txn = Txn::new();
        txn.write(shards[0], [(Ok(row(i)), 1)]);
        // Left unapplied: the figure is the commit (the applier's work is measured by
        // the controller suite).
        let _unapplied = txn
            .commit_at(&mut txns, Timestamp::new(2 + i))
            .await
            .expect("commit")
            .expect("at the upper");
    }
    ms(start.elapsed()) / commits as f64
}
