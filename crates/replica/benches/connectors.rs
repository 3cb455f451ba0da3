//! `cargo xtask bench connectors`: the Postgres CDC source (xtask starts a server and
//! sets `STRATA_TEST_POSTGRES_URL`).
//!
//! - `connectors_postgres_cdc_ingest_file`: rows/s of a replica ingesting a backlog of
//!   inserts (transactions of `PER_TXN` rows) from its slot into the persist file
//!   backend, until every row is committed to the data shard; against the baseline, the
//!   same change stream read from a second slot by `pgwire-replication` alone, into
//!   nothing (events counted, not decoded), in the same run.
//! - `connectors_postgres_commit_to_upper_lag_p50`/`_p99`: per single-row transaction,
//!   the time from sending the transaction's `COMMIT` upstream to the data shard's upper
//!   passing the transaction (the replica's report of it reaches the controller one
//!   message later); against the time from sending it to the replication client
//!   receiving the commit.
//!
//! Without the URL, or run without `--bench` (as `cargo test --all-targets` does), it
//! reports nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use strata_bench_support::{Metric, Mode, report, report_percentiles};
use strata_controller_api::{
    CollectionMetadata, GlobalId, IngestionDescription, InstanceId, ShardId, SourceConnection,
    SourceOutput, Timestamp,
};
use strata_instance_client::{ReplicaResponse, RunIngestionCommand, StorageCommand};
use strata_replica::connector::postgres::{self, Settings};
use strata_replica::remap::remap_desc;
use strata_replica::shard::persist::PersistShards;
use strata_replica::shard::{ShardWriter, Shards, frontier_time};
use strata_replica::{Replica, ReplicaConfig, ResponseSink};
use tokio_postgres::Client;

/// Rows per upstream transaction of the backlog.
const PER_TXN: u64 = 100;

fn settings(url: &str) -> Settings {
    Settings {
        url: url.to_owned(),
        publication: "bench_pub".into(),
        slot: "bench_slot".into(),
    }
}

fn ingestion(settings: &Settings) -> RunIngestionCommand<Timestamp> {
    let outputs = postgres::outputs(settings).unwrap();
    let (id, remap, table) = (GlobalId::User(1), GlobalId::User(2), GlobalId::User(3));
    let (output, desc) = outputs
        .into_iter()
        .find(|(o, _)| *o != SourceOutput::Primary)
        .unwrap();
    let meta = |n: u8, desc| CollectionMetadata {
        persist_location: String::new(),
        data_shard: ShardId::from_bytes([n, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]),
        remap_shard: None,
        txns_shard: None,
        relation_desc: desc,
    };
    RunIngestionCommand {
        id,
        description: IngestionDescription {
            connection: SourceConnection::Connector(settings.to_config()),
            instance_id: InstanceId(1),
            remap_collection_id: remap,
            source_exports: BTreeMap::from([(table, output)]),
            as_of: None,
        },
        storage_metadata: BTreeMap::from([(table, meta(1, desc)), (remap, meta(2, remap_desc()))]),
    }
}

fn start(
    shards: &Arc<PersistShards>,
    cmd: &RunIngestionCommand<Timestamp>,
    epoch: u64,
) -> (Replica, Receiver<ReplicaResponse<Timestamp>>) {
    let config = ReplicaConfig {
        statistics_interval: Duration::from_millis(5),
        retry_backoff: Duration::from_millis(20),
        ..ReplicaConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let sink: Arc<dyn ResponseSink> = Arc::new(Mutex::new(tx));
    let mut replica = Replica::start(config, Arc::clone(shards) as Arc<dyn Shards>, sink).unwrap();
    for command in [
        StorageCommand::Hello {
            nonce: epoch,
            epoch,
        },
        StorageCommand::RunIngestion(cmd.clone()),
        StorageCommand::InitializationComplete,
        StorageCommand::AllowWrites,
    ] {
        replica.handle(command);
    }
    (replica, rx)
}

/// The updates the replica has committed so far, from its statistics.
fn committed(rx: &Receiver<ReplicaResponse<Timestamp>>, last: &mut u64) -> u64 {
    for response in rx.try_iter() {
        if let ReplicaResponse::StatisticsUpdates { sources, .. } = response {
            for (_, stats) in sources {
                *last = (*last).max(stats.updates_committed);
            }
        }
    }
    *last
}

fn data_upper(shards: &PersistShards, cmd: &RunIngestionCommand<Timestamp>) -> u64 {
    let shard = cmd.storage_metadata[&GlobalId::User(3)].data_shard;
    shards
        .upper(shard)
        .ok()
        .and_then(|u| frontier_time(&u))
        .map_or(0, |t| t.as_millis())
}

async fn sql(url: &str) -> Client {
    postgres::sql_client(url).await.unwrap()
}

/// A replication client on the baseline slot `bench_base`, from its start.
async fn baseline_client(url: &str) -> ReplicationClient {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let replication = ReplicationConfig::new(
        "127.0.0.1",
        config.get_user().unwrap_or("postgres"),
        "",
        config.get_dbname().unwrap_or("postgres"),
        "bench_base",
        "bench_pub",
    )
    .with_port(port)
    .with_start_lsn(Lsn::from_u64(0));
    ReplicationClient::connect(replication).await.unwrap()
}

fn main() {
    let mode = Mode::current();
    let Some(url) = std::env::var("STRATA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !mode.is_bench(),
            "the connectors bench needs STRATA_TEST_POSTGRES_URL; `cargo xtask bench connectors` starts a server"
        );
        return;
    };
    if !mode.is_bench() {
        return;
    }
    let rows = mode.pick(1_000, 40_000, 400_000);
    let lag_samples = mode.pick(10, 100, 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(sql(&url));
    rt.block_on(client.batch_execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
           WHERE slot_name IN ('bench_slot', 'bench_base') AND NOT active;
         DROP PUBLICATION IF EXISTS bench_pub;
         DROP TABLE IF EXISTS bench_t;
         CREATE TABLE bench_t (id int8 NOT NULL, v text, n float8);
         ALTER TABLE bench_t REPLICA IDENTITY FULL;
         CREATE PUBLICATION bench_pub FOR TABLE bench_t;",
    ))
    .unwrap();
    let settings = settings(&url);
    let cmd = ingestion(&settings);
    let dir = tempfile::tempdir().unwrap();
    let shards =
        Arc::new(PersistShards::open(&format!("file://{}", dir.path().display())).unwrap());
    for meta in cmd.storage_metadata.values() {
        shards.register_schema(meta.data_shard, &meta.relation_desc);
    }

    // The source takes its (empty) snapshot and stops; the baseline slot starts at the
    // same point; then the backlog is written.
    let (replica, _rx) = start(&shards, &cmd, 1);
    while data_upper(&shards, &cmd) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    replica.shutdown();
    rt.block_on(
        client.batch_execute("SELECT pg_create_logical_replication_slot('bench_base', 'pgoutput')"),
    )
    .unwrap();
    rt.block_on(async {
        for t in 0..rows / PER_TXN {
            let first = t * PER_TXN;
            client
                .batch_execute(&format!(
                    "INSERT INTO bench_t SELECT g, 'row ' || g, g * 0.5 \
                     FROM generate_series({first}, {}) g",
                    first + PER_TXN - 1
                ))
                .await
                .unwrap();
        }
    });
    let total = rows / PER_TXN * PER_TXN;

    // Strata: from the restart until every row is in the data shard.
    let started = Instant::now();
    let (replica, rx) = start(&shards, &cmd, 2);
    let mut seen = 0;
    while committed(&rx, &mut seen) < total {
        std::thread::sleep(Duration::from_millis(1));
    }
    let strata = total as f64 / started.elapsed().as_secs_f64();

    // Baseline: the replication client alone reads the same stream.
    let baseline = rt.block_on(async {
        let started = Instant::now();
        let mut client = baseline_client(&url).await;
        let mut inserts = 0u64;
        while inserts < total {
            if let Some(ReplicationEvent::XLogData { data, .. }) = client.recv().await.unwrap()
                && data.first() == Some(&b'I')
            {
                inserts += 1;
            }
        }
        let rate = total as f64 / started.elapsed().as_secs_f64();
        client.stop();
        rate
    });
    report(&Metric::new(
        "connectors_postgres_cdc_ingest_file",
        strata,
        "rows/s",
        "pgwire_replication_client_read_only",
        baseline,
    ));

    // Lag: single-row transactions, one at a time, with the source running. (Reading
    // the shard's upper blocks on persist's own runtime, so it stays outside this one.)
    let mut lags = Vec::new();
    let mut base_lags = Vec::new();
    let mut base = rt.block_on(async {
        let mut base = baseline_client(&url).await;
        // Drain the backlog from the baseline slot first.
        let mut inserts = 0u64;
        while inserts < total {
            if let Some(ReplicationEvent::XLogData { data, .. }) = base.recv().await.unwrap()
                && data.first() == Some(&b'I')
            {
                inserts += 1;
            }
        }
        base
    });
    for i in 0..lag_samples {
        let before = data_upper(&shards, &cmd);
        let id = 10_000_000 + i as u64;
        let committed_at = rt.block_on(async {
            // From the moment the (autocommit) statement, and so its COMMIT, is sent.
            let committed_at = Instant::now();
            client
                .batch_execute(&format!("INSERT INTO bench_t VALUES ({id}, 'lag', 0)"))
                .await
                .unwrap();
            // The replication client sees the commit...
            loop {
                if let Some(ReplicationEvent::Commit { .. }) = base.recv().await.unwrap() {
                    break;
                }
            }
            base_lags.push(committed_at.elapsed().as_secs_f64() * 1000.0);
            committed_at
        });
        // ...and the data shard's upper passes it.
        while data_upper(&shards, &cmd) <= before {
            std::thread::sleep(Duration::from_micros(200));
        }
        lags.push(committed_at.elapsed().as_secs_f64() * 1000.0);
    }
    base.stop();
    replica.shutdown();
    report_percentiles(
        &mut lags,
        &mut base_lags,
        "ms",
        |p| format!("connectors_postgres_commit_to_upper_lag_{p}"),
        |p| format!("pgwire_replication_client_commit_received_{p}"),
    );
    rt.block_on(client.batch_execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
           WHERE slot_name IN ('bench_slot', 'bench_base') AND NOT active;",
    ))
    .unwrap();
}
