//! A Postgres source through the real controller and one or two in-process replicas
//! (`cargo xtask test` starts a server and sets `STRATA_TEST_POSTGRES_URL`; without it
//! this test returns early): `create_collections` with a Postgres ingestion, changes
//! upstream, a controller restart mid-stream, and every subsource equal to its table at
//! the real-time recent time the controller answers (bound to `pg_current_wal_lsn()`),
//! also when it is asked while no replica runs the source; a table added to the
//! running source (a new subsource, backfilled), a seeded workload over the three
//! tables, and a subsource dropped from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use strata_controller_api::{
    CollectionDescription, Collections, DataSource, GlobalId, IngestionDescription, ReadHold,
    Reads, Row, SourceConnection, SourceOutput, Timestamp,
};
use strata_replica::connector::postgres::{self, Settings};
use strata_testkit::harness::{Harness, consolidate};
use tokio_postgres::Client;

async fn sql(url: &str) -> Client {
    postgres::sql_client(url).await.unwrap()
}

/// `SELECT *` of every table of the source, by subsource id.
async fn upstream(
    client: &Client,
    settings: &Settings,
    ids: &BTreeMap<String, GlobalId>,
) -> BTreeMap<GlobalId, BTreeMap<Row, i64>> {
    let connector = postgres::PostgresConnector::connect(settings.clone()).unwrap();
    let mut out = BTreeMap::new();
    for table in connector.tables() {
        let rows = postgres::select_all(client, table).await.unwrap();
        let rows = rows.into_iter().map(|row| (row, 1));
        let SourceOutput::Named(name) = table.output() else {
            unreachable!()
        };
        if let Some(id) = ids.get(&name) {
            out.insert(*id, consolidate(rows));
        }
    }
    out
}

/// Asks the controller for a real-time recent time of the source (its probe asks the
/// server for `pg_current_wal_lsn()`), and checks that at that time every subsource
/// holds exactly what its table holds: nothing changes upstream meanwhile, so the time
/// bound to the server's position when asked must show every committed transaction.
/// The table is read after the answer, so that the question comes right after the last
/// commit, with no time for the source to catch up first.
async fn recent_equals_upstream(
    harness: &mut Harness,
    ingestion: GlobalId,
    client: &Client,
    settings: &Settings,
    ids: &BTreeMap<String, GlobalId>,
) {
    // Asked right after the last commit, before anything else gives the source time.
    let rtr = harness
        .controller_mut()
        .real_time_recency_timestamp(BTreeSet::from([ingestion]), Duration::from_secs(60))
        .await
        .unwrap();
    let (at, _holds) = read_at(harness, rtr.await.unwrap(), ids);
    let expected = upstream(client, settings, ids).await;
    let mut got = BTreeMap::new();
    for id in ids.values() {
        got.insert(*id, harness.snapshot_multiset(*id, at).await.unwrap());
    }
    assert_eq!(got, expected, "at the real-time recent time {at:?}");
}

/// Where a coordinator reads after real-time recency answered `recent`: at that time,
/// or later if a collection's since is beyond it (a subsource created after the
/// binding `recent` comes from starts there), with read holds that keep the sinces
/// from passing it until they are dropped.
fn read_at(
    harness: &mut Harness,
    recent: Timestamp,
    ids: &BTreeMap<String, GlobalId>,
) -> (Timestamp, Vec<ReadHold<Timestamp>>) {
    let holds = harness
        .controller_mut()
        .acquire_read_holds(ids.values().copied().collect())
        .unwrap();
    let at = holds
        .iter()
        .filter_map(|hold| hold.since().as_option().copied())
        .fold(recent, Timestamp::max);
    (at, holds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_source_through_the_controller_on_one_replica() {
    scenario(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_source_through_the_controller_on_two_replicas() {
    scenario(2).await;
}

/// Runs `sql` with the scenario's names: `ctl_` becomes `prefix`, so the two
/// scenarios use tables, publications and slots of their own and run side by side.
async fn run(client: &Client, prefix: &str, sql: &str) {
    client
        .batch_execute(&sql.replace("ctl_", prefix))
        .await
        .unwrap();
}

/// The whole scenario with `replicas` replicas running the source.
async fn scenario(replicas: usize) {
    strata_testkit::init_test_tracing();
    let Some(url) = std::env::var("STRATA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!("STRATA_TEST_POSTGRES_URL is unset; cargo xtask test sets it");
        return;
    };
    let client = sql(&url).await;
    let p = format!("ctl{replicas}_");
    // A slot left by an earlier run of this scenario (no one streams from it now).
    run(
        &client,
        &p,
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
           WHERE slot_name = 'ctl_slot' AND NOT active;",
    )
    .await;
    run(
        &client,
        &p,
        "DROP PUBLICATION IF EXISTS ctl_pub;
             DROP TABLE IF EXISTS ctl_orders, ctl_users, ctl_items;
             CREATE TABLE ctl_orders (id int8 NOT NULL, item text, qty int4, total numeric);
             CREATE TABLE ctl_users (id int4 NOT NULL, name varchar(40), active bool);
             ALTER TABLE ctl_orders REPLICA IDENTITY FULL;
             ALTER TABLE ctl_users REPLICA IDENTITY FULL;
             INSERT INTO ctl_users VALUES (1, 'ada', true), (2, 'bob', false);
             CREATE PUBLICATION ctl_pub FOR TABLE ctl_orders, ctl_users;",
    )
    .await;
    let settings = Settings {
        url: url.clone(),
        publication: format!("{p}pub"),
        slot: format!("{p}slot"),
    };
    let mut harness = Harness::builder()
        .replicas(replicas)
        .timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let (ingestion, remap) = (GlobalId::User(1), GlobalId::User(2));
    let mut collections = vec![(
        remap,
        CollectionDescription::for_source(
            strata_replica::remap::remap_desc(),
            DataSource::Progress,
        ),
    )];
    let mut ids = BTreeMap::new();
    for (i, (output, desc)) in postgres::outputs(&settings)
        .unwrap()
        .into_iter()
        .enumerate()
    {
        match output {
            SourceOutput::Primary => collections.push((
                ingestion,
                CollectionDescription::for_source(
                    desc,
                    DataSource::Ingestion(IngestionDescription {
                        connection: SourceConnection::Connector(settings.to_config()),
                        instance_id: harness.instance(),
                        remap_collection_id: remap,
                        source_exports: BTreeMap::new(),
                        as_of: None,
                    }),
                ),
            )),
            SourceOutput::Named(name) => {
                let id = GlobalId::User(10 + i as u64);
                ids.insert(name.clone(), id);
                collections.push((
                    id,
                    CollectionDescription::for_source(
                        desc,
                        DataSource::IngestionExport {
                            ingestion_id: ingestion,
                            output: SourceOutput::Named(name),
                        },
                    ),
                ));
            }
        }
    }
    harness.create_collections(None, collections).await.unwrap();
    recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;

    for t in 0..30 {
        run(
            &client,
            &p,
            &format!(
                "BEGIN;
                 INSERT INTO ctl_orders VALUES ({t}, 'item {t}', {t} % 7, {t}.50);
                 UPDATE ctl_users SET active = NOT active WHERE id = {};
                 DELETE FROM ctl_orders WHERE id = {} AND {t} % 3 = 0;
                 COMMIT;",
                1 + t % 2,
                t / 2
            ),
        )
        .await;
    }
    recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;

    // The controller restarts while the source keeps streaming.
    for t in 30..45 {
        run(
            &client,
            &p,
            &format!("INSERT INTO ctl_orders VALUES ({t}, 'late {t}', 1, 1)"),
        )
        .await;
        if t == 37 {
            harness.restart_controller().await.unwrap();
        }
    }
    recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;

    // Asked while no replica runs the source, the answer waits for the source to
    // ingest what the server had committed: it cannot come from what is bound already.
    harness.kill_replica(0).await.unwrap();
    run(
        &client,
        &p,
        "UPDATE ctl_orders SET qty = qty + 1; DELETE FROM ctl_users WHERE id = 2;",
    )
    .await;
    let rtr = harness
        .controller_mut()
        .real_time_recency_timestamp(BTreeSet::from([ingestion]), Duration::from_secs(60))
        .await
        .unwrap();
    let rtr = tokio::spawn(rtr);
    harness.restart_replica(0).await.unwrap();
    let (at, holds) = read_at(&mut harness, rtr.await.unwrap().unwrap(), &ids);
    let expected = upstream(&client, &settings, &ids).await;
    for id in ids.values() {
        let got = harness.snapshot_multiset(*id, at).await.unwrap();
        assert_eq!(&got, &expected[id], "{id} at {at:?}");
    }
    drop(holds);

    // A table joins the publication, and the running source gets a subsource for it:
    // the subsource is backfilled with the table's contents and follows it.
    run(
        &client,
        &p,
        "CREATE TABLE ctl_items (id int4 NOT NULL, label text);
             ALTER TABLE ctl_items REPLICA IDENTITY FULL;
             INSERT INTO ctl_items VALUES (1, 'a'), (2, 'b');
             ALTER PUBLICATION ctl_pub ADD TABLE ctl_items;
             UPDATE ctl_items SET label = 'c' WHERE id = 2;",
    )
    .await;
    let items_output = SourceOutput::Named(format!("public.{p}items"));
    let (_, items_desc) = postgres::outputs(&settings)
        .unwrap()
        .into_iter()
        .find(|(output, _)| *output == items_output)
        .unwrap();
    let items = GlobalId::User(40);
    harness
        .create_collections(
            None,
            vec![(
                items,
                CollectionDescription::for_source(
                    items_desc,
                    DataSource::IngestionExport {
                        ingestion_id: ingestion,
                        output: items_output,
                    },
                ),
            )],
        )
        .await
        .unwrap();
    ids.insert(format!("public.{p}items"), items);
    run(
        &client,
        &p,
        "INSERT INTO ctl_items VALUES (3, 'd'); INSERT INTO ctl_orders VALUES (100, 'x', 1, 1);",
    )
    .await;
    recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;

    // A seeded workload of inserts, updates and deletes over the three tables, in
    // transactions of one to eight statements, checked at the real-time recent time
    // after every ten.
    let mut rng = 0x5EED_u64 ^ replicas as u64;
    let mut below = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for t in 0..40 {
        let mut statements = Vec::new();
        for s in 0..=below(8) {
            let key = below(30);
            statements.push(match below(7) {
                0 => format!("INSERT INTO ctl_orders VALUES ({key}, 'w{t}.{s}', {s}, {t}.{s})"),
                1 => format!("UPDATE ctl_orders SET qty = qty + 1 WHERE id = {key}"),
                2 => format!("DELETE FROM ctl_orders WHERE id = {key}"),
                3 => format!(
                    "INSERT INTO ctl_users VALUES ({key}, 'u{t}', {})",
                    key % 2 == 0
                ),
                4 => format!("UPDATE ctl_users SET active = NOT active WHERE id = {key}"),
                5 => format!("INSERT INTO ctl_items VALUES ({key}, 'i{t}.{s}')"),
                _ => format!("DELETE FROM ctl_items WHERE id = {key}"),
            });
        }
        run(
            &client,
            &p,
            &format!("BEGIN; {}; COMMIT;", statements.join("; ")),
        )
        .await;
        if t % 10 == 9 {
            recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;
        }
    }

    // The orders subsource is dropped: the source goes on without it.
    let orders = ids.remove(&format!("public.{p}orders")).unwrap();
    harness
        .controller_mut()
        .drop_sources(vec![orders])
        .await
        .unwrap();
    run(
        &client,
        &p,
        "INSERT INTO ctl_items VALUES (4, 'e'); DELETE FROM ctl_users WHERE id = 1;",
    )
    .await;
    recent_equals_upstream(&mut harness, ingestion, &client, &settings, &ids).await;
}
