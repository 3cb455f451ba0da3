//! The Postgres CDC source against a real PostgreSQL server (`cargo xtask test` starts
//! one and sets `STRATA_TEST_POSTGRES_URL`, and `STRATA_TEST_POSTGRES_RESTART`, a
//! command that restarts it; without the URL these tests return early).
//!
//! Each test makes its own tables, publication and slot, so they run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_controller_api::{
    GlobalId, LoadGenerator, Row, SourceConnection, SourceOutput, Timestamp,
};
use strata_instance_client::{ReplicaResponse, RunIngestionCommand, Status, StorageCommand};
use strata_replica::connector::ConnectorError;
use strata_replica::connector::postgres::{self, Settings};
use strata_replica::shard::memory::MemShards;
use strata_replica::shard::{Shards, consolidate_rows};
use tokio_postgres::Client;

fn url() -> Option<String> {
    std::env::var("STRATA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Tests hold this shared while they use the server; the restart test holds it
/// exclusively, so a restart never breaks another test's connections.
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVER
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

async fn sql(url: &str) -> Client {
    postgres::sql_client(url).await.unwrap()
}

/// The tables of a test, named with `prefix`, with every supported type.
fn schema(prefix: &str) -> String {
    format!(
        "DROP PUBLICATION IF EXISTS {prefix}_pub;
         DROP TABLE IF EXISTS {prefix}_a, {prefix}_b, {prefix}_c;
         SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
           WHERE slot_name = '{prefix}_slot' AND NOT active;
         CREATE TABLE {prefix}_a (id int4 NOT NULL, n int8, s text, b bool);
         CREATE TABLE {prefix}_b (id int2 NOT NULL, f4 float4, f8 float8, v varchar(20), num numeric);
         CREATE TABLE {prefix}_c (id int8 NOT NULL, d date, ts timestamp, tz timestamptz, raw bytea);
         ALTER TABLE {prefix}_a REPLICA IDENTITY FULL;
         ALTER TABLE {prefix}_b REPLICA IDENTITY FULL;
         ALTER TABLE {prefix}_c REPLICA IDENTITY FULL;
         INSERT INTO {prefix}_a VALUES (1, 10, 'one', true), (2, NULL, NULL, NULL);
         INSERT INTO {prefix}_b VALUES (1, 1.5, 2.25, 'x', 12.3400);
         INSERT INTO {prefix}_c VALUES (1, '1969-07-20', '2000-01-01 12:00:00', '2024-02-29 23:59:59+00', '\\x00ff');
         CREATE PUBLICATION {prefix}_pub FOR TABLE {prefix}_a, {prefix}_b, {prefix}_c;"
    )
}

fn settings(url: &str, prefix: &str) -> Settings {
    Settings {
        url: url.to_owned(),
        publication: format!("{prefix}_pub"),
        slot: format!("{prefix}_slot"),
    }
}

/// An ingestion of the Postgres source with one export per table (none of the empty
/// primary output).
fn ingestion(base: u64, settings: &Settings) -> RunIngestionCommand<Timestamp> {
    let tables = postgres::outputs(settings)
        .unwrap()
        .into_iter()
        .filter(|(output, _)| *output != SourceOutput::Primary)
        .collect();
    ingestion_of(
        base,
        SourceConnection::Connector(settings.to_config()),
        tables,
    )
}

/// `SELECT *` of every published table, by output, as the source maps values.
async fn upstream_contents(
    client: &Client,
    settings: &Settings,
) -> BTreeMap<SourceOutput, Vec<(Row, i64)>> {
    let connector = postgres::PostgresConnector::connect(settings.clone()).unwrap();
    let mut contents = BTreeMap::new();
    for table in connector.tables() {
        let rows = postgres::select_all(client, table).await.unwrap();
        let rows: Vec<(Row, i64)> = rows.into_iter().map(|row| (row, 1)).collect();
        contents.insert(table.output(), consolidate_rows(rows));
    }
    contents
}

/// What the data shards hold, by output.
fn ingested(
    shards: &dyn Shards,
    cmd: &RunIngestionCommand<Timestamp>,
) -> BTreeMap<SourceOutput, Vec<(Row, i64)>> {
    let by_id = contents(shards, cmd);
    cmd.description
        .source_exports
        .iter()
        .map(|(id, output)| (output.clone(), by_id[id].clone()))
        .collect()
}

fn config() -> strata_replica::ReplicaConfig {
    let mut config = frozen_config(1, u64::MAX);
    config.offset_limit = None;
    config.clock = strata_replica::system_clock();
    config.max_ticks_per_round = 16;
    config
}

/// A seeded workload of inserts, updates and deletes over the three tables, in
/// transactions of one to eight statements.
async fn workload(client: &Client, prefix: &str, seed: u64, transactions: u64) {
    let mut rng = Rng(seed | 1);
    for t in 0..transactions {
        let mut statements = Vec::new();
        for s in 0..=rng.below(8) {
            let key = 100 + rng.below(40);
            let statement = match rng.below(6) {
                0 | 1 => format!(
                    "INSERT INTO {prefix}_a VALUES ({key}, {t}, 'row {t}.{s}', {})",
                    rng.below(2) == 0
                ),
                2 => format!("UPDATE {prefix}_a SET n = n + 1, s = 'updated {t}' WHERE id = {key}"),
                3 => format!("DELETE FROM {prefix}_a WHERE id = {key}"),
                4 => format!(
                    "INSERT INTO {prefix}_b VALUES ({key}, {t}.25, -{t}.5, 'v{s}', {t}.{s}00)"
                ),
                _ => format!(
                    "UPDATE {prefix}_c SET ts = ts + interval '1 second', raw = '\\x{:02x}' WHERE id = 1",
                    rng.below(256)
                ),
            };
            statements.push(statement);
        }
        client
            .batch_execute(&format!("BEGIN; {}; COMMIT;", statements.join("; ")))
            .await
            .unwrap();
    }
}

/// Waits until the data shards hold what the upstream holds; on a timeout, shows the
/// difference.
fn converge(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    settings: &Settings,
    shards: &dyn Shards,
    cmd: &RunIngestionCommand<Timestamp>,
) {
    let exported: Vec<&SourceOutput> = cmd.description.source_exports.values().collect();
    let mut expected = rt.block_on(upstream_contents(client, settings));
    expected.retain(|output, _| exported.contains(&output));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The contents change only with an upper: after a mismatch, wait for one to move.
    let uppers = || -> Vec<_> {
        data_shards(cmd)
            .into_iter()
            .map(|(_, shard)| shards.upper(shard).ok())
            .collect()
    };
    loop {
        let before = uppers();
        let got = ingested(shards, cmd);
        if got == expected {
            return;
        }
        if std::time::Instant::now() > deadline {
            assert_eq!(got, expected, "the source did not converge");
        }
        wait_for("a data shard's upper to move", || uppers() != before);
    }
}

fn drop_upstream(rt: &tokio::runtime::Runtime, client: &Client, prefix: &str) {
    rt.block_on(async {
        let _ = client
            .batch_execute(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{prefix}_slot' AND NOT active"
            ))
            .await;
    });
}

/// One test's upstream and shards: its tables (named with `prefix`), publication and
/// slot, an ingestion of them with id `User(base)`, and in-memory shards.
struct Env {
    rt: tokio::runtime::Runtime,
    client: Client,
    prefix: &'static str,
    settings: Settings,
    cmd: RunIngestionCommand<Timestamp>,
    shards: MemShards,
}

impl Env {
    /// Sets up the tables of `schema(prefix)`; `None` without a server.
    fn new(prefix: &'static str, base: u64) -> Option<Env> {
        let Some(url) = url() else {
            eprintln!("STRATA_TEST_POSTGRES_URL is unset; cargo xtask test sets it");
            return None;
        };
        let rt = runtime();
        let client = rt.block_on(sql(&url));
        rt.block_on(client.batch_execute(&schema(prefix))).unwrap();
        let settings = settings(&url, prefix);
        let cmd = ingestion(base, &settings);
        Some(Env {
            rt,
            client,
            prefix,
            settings,
            cmd,
            shards: MemShards::new(),
        })
    }

    /// A replica running the ingestion at `epoch`.
    fn replica(&self, epoch: u64) -> (strata_replica::Replica, Responses) {
        let (mut replica, rx) = start(config(), Arc::new(self.shards.clone()));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunIngestion(self.cmd.clone())]),
        );
        (replica, rx)
    }

    fn workload(&self, seed: u64, transactions: u64) {
        self.rt
            .block_on(workload(&self.client, self.prefix, seed, transactions));
    }

    fn converge(&self) {
        converge(
            &self.rt,
            &self.client,
            &self.settings,
            &self.shards,
            &self.cmd,
        );
    }

    /// Drops the slot (when no one streams from it).
    fn finish(self) {
        drop_upstream(&self.rt, &self.client, self.prefix);
    }
}

#[test]
fn snapshot_then_stream_equals_the_upstream() {
    let _server = shared();
    let Some(env) = Env::new("eq", 1000) else {
        return;
    };
    let (replica, _rx) = env.replica(1);
    // The snapshot first, then a stream of changes while the source runs.
    env.converge();
    env.workload(7, 60);
    env.converge();
    // Idle, the source's upper still moves (its heartbeats pass through the stream),
    // so a read at a later time does not wait for the next upstream transaction.
    let shards: &dyn Shards = &env.shards;
    let data = env.cmd.storage_metadata[env.cmd.description.source_exports.keys().next().unwrap()]
        .data_shard;
    let upper = || strata_replica::shard::frontier_time(&shards.upper(data).unwrap());
    let before = upper();
    wait_for("the idle source's upper to move", || upper() > before);
    replica.shutdown();
    env.finish();
}

#[test]
fn two_replicas_on_one_slot_equal_the_upstream() {
    let _server = shared();
    let Some(env) = Env::new("two", 1050) else {
        return;
    };
    // Two replicas race for the slot: one streams, the other retries until it can,
    // and the remap shard's compare-and-append keeps the data exact.
    let replicas: Vec<_> = (0..2).map(|_| env.replica(1)).collect();
    env.workload(11, 40);
    env.converge();
    // Kill whichever streams; the other takes over.
    let mut replicas = replicas.into_iter();
    if let Some((first, _)) = replicas.next() {
        first.shutdown();
    }
    env.workload(13, 40);
    env.converge();
    for (replica, _) in replicas {
        replica.shutdown();
    }
    env.finish();
}

#[test]
fn replica_kills_lose_and_duplicate_nothing_and_the_slot_stays_behind_the_shards() {
    let _server = shared();
    let Some(env) = Env::new("crash", 1100) else {
        return;
    };
    let (rt, client, prefix, cmd) = (&env.rt, &env.client, env.prefix, &env.cmd);
    let watch: Arc<dyn Shards> = Arc::new(env.shards.clone());
    let mut rng = Rng(0xFEED);
    let kills = 20;
    for epoch in 1..=kills {
        let (replica, _rx) = env.replica(epoch);
        env.workload(epoch * 31, 3 + rng.below(5));
        // Kill at once (mid-snapshot or mid-stream), or once the replica has written
        // some of what just happened upstream: points chosen by events, not by time.
        if rng.below(2) == 1 {
            let before = ingested_offset(watch.as_ref(), cmd);
            wait_for("progress before the kill", || {
                ingested_offset(watch.as_ref(), cmd) > before
            });
        }
        replica.shutdown();
        // No slot position ever passes what the data shards hold.
        let durable = ingested_offset(watch.as_ref(), cmd);
        let confirmed = rt.block_on(async {
            let row = client
                .query_one(
                    "SELECT (confirmed_flush_lsn - '0/0')::text FROM pg_replication_slots \
                     WHERE slot_name = $1",
                    &[&format!("{prefix}_slot")],
                )
                .await;
            row.ok()
                .and_then(|r| r.get::<_, String>(0).parse::<u64>().ok())
        });
        eprintln!(
            "kill {epoch}: the shards hold offsets below {durable}; the slot confirmed {confirmed:?}"
        );
        // (With nothing durable the slot is where it was created, and a reader opened
        // at offset 0 re-creates it for a fresh snapshot.)
        if let Some(confirmed) = confirmed.filter(|_| durable > 0) {
            assert!(
                confirmed <= durable,
                "the slot confirmed {confirmed}, the shards hold offsets below {durable}"
            );
        }
    }
    let (replica, _rx) = env.replica(kills + 1);
    env.converge();
    replica.shutdown();
    env.finish();
}

/// `cmd` without the export of `output`.
fn without(
    cmd: &RunIngestionCommand<Timestamp>,
    output: &SourceOutput,
) -> RunIngestionCommand<Timestamp> {
    let mut cmd = cmd.clone();
    let ids: Vec<_> = cmd
        .description
        .source_exports
        .iter()
        .filter(|(_, o)| *o == output)
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        cmd.description.source_exports.remove(&id);
        cmd.storage_metadata.remove(&id);
    }
    cmd
}

#[test]
fn a_table_added_to_a_running_source_is_backfilled_and_a_removed_one_stops() {
    let _server = shared();
    let Some(mut env) = Env::new("alt", 1150) else {
        return;
    };
    let sql = |env: &Env, statement: &str| {
        env.rt
            .block_on(env.client.batch_execute(statement))
            .unwrap();
    };
    let output = |table: &str| SourceOutput::Named(format!("public.alt_{table}"));
    // The source starts with tables a and b; c changes upstream all along.
    sql(&env, "ALTER PUBLICATION alt_pub DROP TABLE alt_c");
    env.cmd = ingestion(1150, &env.settings);
    assert_eq!(env.cmd.description.source_exports.len(), 2);
    let (mut replica, _rx) = env.replica(1);
    env.workload(17, 30);
    env.converge();

    // c joins the publication and the ingestion while the source runs: the new
    // subsource is backfilled with what c holds, and follows it from there.
    sql(&env, "ALTER PUBLICATION alt_pub ADD TABLE alt_c");
    env.workload(19, 10);
    env.cmd = ingestion(1150, &env.settings);
    assert_eq!(env.cmd.description.source_exports.len(), 3);
    send(
        &mut replica,
        &[StorageCommand::RunIngestion(env.cmd.clone())],
    );
    env.workload(23, 30);
    env.converge();
    replica.shutdown();

    // Kills while the next table is backfilled write nothing twice: c leaves the
    // ingestion (its shard keeps what it has) and joins again under a new shard, and
    // each restart backfills it again from wherever the kill left it.
    let full = env.cmd.clone();
    env.cmd = without(&full, &output("c"));
    let (replica, _rx) = env.replica(2);
    env.workload(29, 10);
    env.converge();
    replica.shutdown();
    let c_id = GlobalId::User(1150 + 2 + 2);
    env.cmd = full;
    let fresh = strata_controller_api::ShardId::from_bytes([99; 16]);
    if let Some(meta) = env.cmd.storage_metadata.get_mut(&c_id) {
        meta.data_shard = fresh;
    }
    let watch: Arc<dyn Shards> = Arc::new(env.shards.clone());
    let c_upper = || strata_replica::shard::frontier_time(&watch.upper(fresh).unwrap());
    for epoch in 3..=6 {
        let (replica, _rx) = env.replica(epoch);
        env.workload(epoch * 37, 4);
        // Kill at once (mid-backfill), or once c's shard was written.
        if epoch % 2 == 0 {
            wait_for("the backfill's round", || {
                c_upper().is_some_and(|t| t > Timestamp::new(0))
            });
        }
        replica.shutdown();
    }
    let (mut replica, _rx) = env.replica(7);
    env.workload(41, 20);
    env.converge();

    // a leaves the ingestion: its shard stops where it is, and the others go on.
    let a_id = GlobalId::User(1150 + 2);
    let a_shard = env.cmd.storage_metadata[&a_id].data_shard;
    env.cmd = without(&env.cmd, &output("a"));
    send(
        &mut replica,
        &[StorageCommand::RunIngestion(env.cmd.clone())],
    );
    // Once every round in flight is done, a's upper moves no more.
    let b_id = GlobalId::User(1150 + 3);
    let b_shard = env.cmd.storage_metadata[&b_id].data_shard;
    let upper = |shard| strata_replica::shard::frontier_time(&watch.upper(shard).unwrap());
    // The old dataflow has at most two rounds in flight when it is told to stop: after
    // three more rounds of b, a's shard is where the removal left it.
    for _ in 0..3 {
        let b_before = upper(b_shard);
        wait_for("a round after the removal", || upper(b_shard) > b_before);
    }
    let a_stopped = upper(a_shard);
    env.workload(43, 20);
    env.converge();
    assert_eq!(upper(a_shard), a_stopped, "a removed subsource was written");
    replica.shutdown();
    env.finish();
}

fn statuses(rx: &Responses) -> Vec<(Status, String)> {
    drain(rx)
        .into_iter()
        .filter_map(|r| match r {
            ReplicaResponse::StatusUpdate(u) => Some((u.status, u.error.unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[test]
fn definite_errors_cease_the_source_with_their_reason() {
    let _server = shared();
    let cases: [(&str, &str, &str); 4] = [
        (
            "trunc",
            "TRUNCATE trunc_b",
            "table public.trunc_b was truncated",
        ),
        (
            "alter",
            "ALTER TABLE alter_a ADD COLUMN extra int4; INSERT INTO alter_a VALUES (9, 9, 'x', true, 1)",
            "the schema of public.alter_a changed",
        ),
        (
            "dropslot",
            "SELECT pg_drop_replication_slot('dropslot_slot')",
            "replication slot \"dropslot_slot\" was dropped",
        ),
        (
            // While the source streams: the next change fails the stream, and the
            // source finds the publication gone when it reconnects.
            "droppub",
            "DROP PUBLICATION droppub_pub; INSERT INTO droppub_a VALUES (7, 7, 'x', true)",
            "publication \"droppub_pub\" was dropped",
        ),
    ];
    for (base, (prefix, statement, expected)) in (1200..).step_by(10).zip(cases) {
        let Some(env) = Env::new(prefix, base) else {
            return;
        };
        // A load generator runs beside it, and must go on after it ceases.
        let counter = common::ingestion(base + 5, LoadGenerator::Counter { max_ticks: None }, 0, 1);
        let objects = vec![
            StorageCommand::RunIngestion(env.cmd.clone()),
            StorageCommand::RunIngestion(counter.clone()),
        ];
        let (mut replica, mut rx) = start(config(), Arc::new(env.shards.clone()));
        send(&mut replica, &history(1, objects.clone()));
        env.converge();
        if prefix == "dropslot" {
            // A slot can be dropped only while no one streams from it: stop the
            // replica, drop the slot, start again.
            replica.shutdown();
            env.rt
                .block_on(env.client.batch_execute(statement))
                .unwrap();
            (replica, rx) = start(config(), Arc::new(env.shards.clone()));
            send(&mut replica, &history(2, objects));
        } else {
            env.rt
                .block_on(env.client.batch_execute(statement))
                .unwrap();
        }
        let mut seen = Vec::new();
        wait_for(expected, || {
            seen.extend(statuses(&rx));
            seen.iter()
                .any(|(s, e)| *s == Status::Stalled && e.contains(expected))
        });
        let at = ingested_offset(&env.shards, &counter);
        wait_for("the load generator to go on", || {
            ingested_offset(&env.shards, &counter) > at
        });
        replica.shutdown();
        env.finish();
    }
}

#[test]
fn unsupported_types_and_bad_settings_are_named() {
    let Some(url) = url() else {
        eprintln!("STRATA_TEST_POSTGRES_URL is unset; cargo xtask test sets it");
        return;
    };
    let _server = shared();
    let rt = runtime();
    let client = rt.block_on(sql(&url));
    rt.block_on(client.batch_execute(
        "DROP PUBLICATION IF EXISTS unsupported_pub, noident_pub;
         DROP TABLE IF EXISTS unsupported_t, noident_t;
         CREATE TABLE unsupported_t (id int4, doc json);
         ALTER TABLE unsupported_t REPLICA IDENTITY FULL;
         CREATE PUBLICATION unsupported_pub FOR TABLE unsupported_t;
         CREATE TABLE noident_t (id int4);
         CREATE PUBLICATION noident_pub FOR TABLE noident_t;",
    ))
    .unwrap();
    let cases = [
        (
            "unsupported",
            "column public.unsupported_t.doc has type json",
        ),
        ("noident", "needs REPLICA IDENTITY FULL"),
        ("missing", "publication \"missing_pub\" does not exist"),
    ];
    for (prefix, expected) in cases {
        match postgres::outputs(&settings(&url, prefix)) {
            Err(ConnectorError::InvalidConfig { reason, .. }) => {
                assert!(reason.contains(expected), "{reason}");
            }
            other => panic!("{prefix}: expected an invalid configuration, got {other:?}"),
        }
    }
    let config = strata_controller_api::ConnectorConfig::new(postgres::KIND)
        .with("url", url.as_str())
        .with("publication", "p")
        .with("slot", "Bad-Slot");
    assert!(matches!(
        Settings::from_config(&config),
        Err(ConnectorError::InvalidConfig { .. })
    ));
}

#[test]
fn a_lost_connection_and_a_server_restart_stall_then_converge() {
    // The restart would break other tests' connections: hold the server alone.
    let _server = SERVER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(mut env) = Env::new("lost", 1300) else {
        return;
    };
    let (replica, rx) = env.replica(1);
    env.workload(3, 20);
    env.converge();

    // The walsender is killed: the source says it retries, and carries on.
    env.rt
        .block_on(env.client.batch_execute(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = '{}_slot'",
            env.prefix
        )))
        .unwrap();
    let mut seen = Vec::new();
    wait_for("a retrying status", || {
        seen.extend(statuses(&rx));
        seen.iter()
            .any(|(s, e)| *s == Status::Stalled && e.contains("retrying"))
    });
    env.workload(5, 20);
    env.converge();

    // The whole server restarts mid-stream (when the test command can restart it).
    match std::env::var("STRATA_TEST_POSTGRES_RESTART") {
        Ok(restart) => {
            let status = std::process::Command::new("sh")
                .args(["-c", &restart])
                .status()
                .unwrap();
            assert!(status.success(), "{restart} failed");
            env.client = env.rt.block_on(sql(&env.settings.url));
            env.workload(9, 20);
            env.converge();
        }
        Err(_) => {
            eprintln!("STRATA_TEST_POSTGRES_RESTART is unset: the server restart is not tested");
        }
    }
    replica.shutdown();
    env.finish();
}
