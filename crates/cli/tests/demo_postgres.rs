//! `strata demo --postgres URL` against a real server (`cargo xtask test` starts one and
//! sets `STRATA_TEST_POSTGRES_URL`; without it these tests return early): the demo
//! ingests every table of the publication and reports exactly the rows the database
//! holds; a missing publication is one clear error line.

#![cfg(test)]

mod common;

use common::*;
use tokio_postgres::NoTls;

fn url() -> Option<String> {
    std::env::var("STRATA_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

fn setup(url: &str, sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    });
}

/// The rows the demo reported for subsource `name`.
fn reported_rows(stdout: &str, name: &str) -> Option<i64> {
    let prefix = format!("  {name}: ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[test]
fn the_demo_ingests_a_live_database() {
    let Some(url) = url() else {
        eprintln!("STRATA_TEST_POSTGRES_URL is unset; cargo xtask test sets it");
        return;
    };
    setup(
        &url,
        "DROP PUBLICATION IF EXISTS demo_cli_pub;
         DROP TABLE IF EXISTS demo_items, demo_people;
         CREATE TABLE demo_items (id int8 PRIMARY KEY, name text, price numeric);
         CREATE TABLE demo_people (id int4, born date);
         ALTER TABLE demo_items REPLICA IDENTITY FULL;
         ALTER TABLE demo_people REPLICA IDENTITY FULL;
         INSERT INTO demo_items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 250) g;
         INSERT INTO demo_people VALUES (1, '1970-01-01'), (2, NULL), (3, '1955-03-04');
         CREATE PUBLICATION demo_cli_pub FOR TABLE demo_items, demo_people;",
    );
    // In a directory of its own: a mem:// demo writes its sink files under ./strata-data.
    let dir = tempfile::tempdir().unwrap();
    let out = run(strata().current_dir(dir.path()).args([
        "demo",
        "--persist",
        &format!("mem://demo-postgres-{}", std::process::id()),
        "--duration",
        "3",
        "--postgres",
        &url,
        "--postgres-publication",
        "demo_cli_pub",
    ]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout
            .contains("publication demo_cli_pub, slot strata_demo, 2 tables: public.demo_items, public.demo_people"),
        "{}",
        out.stdout
    );
    assert_eq!(
        reported_rows(&out.stdout, "pg_public.demo_items"),
        Some(250),
        "{}",
        out.stdout
    );
    assert_eq!(
        reported_rows(&out.stdout, "pg_public.demo_people"),
        Some(3),
        "{}",
        out.stdout
    );
    setup(
        &url,
        "SELECT pg_drop_replication_slot('strata_demo') FROM pg_replication_slots \
         WHERE slot_name = 'strata_demo' AND NOT active;",
    );
}

#[test]
fn a_missing_publication_is_one_clear_error() {
    let Some(url) = url() else {
        eprintln!("STRATA_TEST_POSTGRES_URL is unset; cargo xtask test sets it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = run(strata().current_dir(dir.path()).args([
        "demo",
        "--persist",
        &format!("mem://demo-postgres-missing-{}", std::process::id()),
        "--duration",
        "1",
        "--postgres",
        &url,
        "--postgres-publication",
        "no_such_publication",
    ]));
    assert_one_line_error(&out, &["no_such_publication", "does not exist"]);
}
