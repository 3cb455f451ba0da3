//! `/metrics` of a running demo serves every metric that `docs/OPERATIONS.md` documents,
//! and each one moves while the demo runs (all but the contention counter, which moves
//! only when two writers meet). The list of metrics is read from the document itself,
//! so the document and the registry cannot drift apart.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The metrics table of OPERATIONS.md: (name, type).
fn documented() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md"),
    )
    .unwrap();
    let metrics: Vec<(String, String)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`strata_")?.strip_suffix('`')?;
            Some((format!("strata_{name}"), (*cells.get(2)?).to_owned()))
        })
        .collect();
    assert!(metrics.len() >= 10, "no metrics table in OPERATIONS.md");
    metrics
}

/// GET /metrics over plain HTTP/1.1.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The sum of the samples of `name` (its `_count` for a histogram), if it is served.
fn total(body: &str, name: &str, kind: &str) -> Option<f64> {
    let series = if kind == "histogram" {
        format!("{name}_count")
    } else {
        name.to_owned()
    };
    let values: Vec<f64> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{series}{{")) || l.starts_with(&format!("{series} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn a_running_demo_serves_every_documented_metric_and_each_moves() {
    let metrics = documented();
    let dir = tempfile::tempdir().unwrap();
    let mut child = strata()
        .current_dir(dir.path())
        .args([
            "demo",
            "--persist",
            &file_url(&dir.path().join("data")),
            "--duration",
            "8",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo printed no metrics address");
        if let Some(rest) = line.strip_prefix("metrics at http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };

    // The first value each metric was served with, and whether it has moved since.
    let mut first: BTreeMap<&str, f64> = BTreeMap::new();
    let mut moved: BTreeMap<&str, bool> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let must_move = |name: &str| name != "strata_cas_retries_total";
    loop {
        if let Some(body) = scrape(&addr) {
            for (name, kind) in &metrics {
                let Some(value) = total(&body, name, kind) else {
                    continue;
                };
                let was = *first.entry(name).or_insert(value);
                if value != was {
                    moved.insert(name, true);
                }
            }
        }
        let done = metrics.iter().all(|(name, _)| {
            first.contains_key(name.as_str())
                && (!must_move(name) || moved.contains_key(name.as_str()))
        });
        if done {
            break;
        }
        let exited = child.try_wait().unwrap().is_some();
        if exited || Instant::now() > deadline {
            let missing: Vec<&str> = metrics
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !first.contains_key(n))
                .collect();
            let still: Vec<&str> = metrics
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| must_move(n) && first.contains_key(n) && !moved.contains_key(n))
                .collect();
            panic!("never served: {missing:?}; served but never moved: {still:?}");
        }
        // Scrape again once the demo reports progress (a live line or a step).
        let _ = lines.recv_timeout(Duration::from_secs(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}
