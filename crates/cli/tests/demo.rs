//! `strata demo` end to end: two runs over one directory (the second recovers the
//! first's collections at a higher epoch and continues their frontiers; each run's sink
//! file holds exactly what the source held at the sink's frontier), and a gRPC run
//! whose replica processes are all gone once the demo exits. No run leaves a half
//! written file behind: the demo, its controller and its replicas shut down in order.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use strata_controller_api::{LoadGenerator, SourceConnection, SourceOutput};
use strata_replica::generator::{AUCTIONS, Generator};

/// Runs `strata demo` in `dir` over `dir/data` with a short duration.
fn demo(dir: &Path, extra: &[&str]) -> Run {
    let persist = file_url(&dir.join("data"));
    let out = run(strata()
        .current_dir(dir)
        .args(["demo", "--persist", &persist, "--duration", "2"])
        .args(extra));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    out
}

/// Fails on any file an interrupted write leaves: a put's staging file (`key#N`) or a
/// register's `head.tmp`.
fn assert_nothing_half_written(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            assert_nothing_half_written(&path);
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let staging = name
            .rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            !staging && name != "head.tmp",
            "the demo exited with {} half written",
            path.display()
        );
    }
}

/// The demo writes Parquet parts, says how many, and prints a pyarrow command that
/// opens one; that command works as printed (with the interpreter `cargo xtask test`
/// provides in `STRATA_PYTHON`, which has pyarrow).
fn check_parts(dir: &Path, stdout: &str) {
    let parts = number_after(stdout, "parts       ");
    assert!(
        parts >= 2,
        "the bulk load gives each table a part: {stdout}"
    );
    let command = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("python3 -c \"import pyarrow.parquet"))
        .unwrap_or_else(|| panic!("no command to read a part: {stdout}"));
    let script = command
        .strip_prefix("python3 -c \"")
        .and_then(|c| c.strip_suffix('"'))
        .unwrap();
    let Ok(python) = std::env::var("STRATA_PYTHON") else {
        eprintln!("check_parts: STRATA_PYTHON is unset; not running {command}");
        return;
    };
    let out = std::process::Command::new(python)
        .current_dir(dir)
        .args(["-c", script])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("order_id: int64"), "{printed}");
    assert!(printed.contains("diff: int64"), "{printed}");
}

/// The number after `prefix` in the output.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split(prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in:\n{text}"))
}

/// The summary row of `name`: (upper at start, or `None` if created; upper at the end).
fn summary_row(text: &str, name: &str) -> (Option<u64>, u64) {
    let summary = text.split("\nsummary\n").nth(1).expect("a summary");
    let line = summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{summary}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    // name, kind, since, (start upper | new), ->, upper[, status]
    assert_eq!(cells[4], "->", "{line}");
    (cells[3].parse().ok(), cells[5].parse().unwrap())
}

/// A file's NDJSON lines, as `(row, time, diff)`, up to `len` bytes.
fn ndjson(path: &Path, len: Option<usize>) -> Vec<(String, u64, i64)> {
    let bytes = std::fs::read(path).unwrap();
    let bytes = &bytes[..len.unwrap_or(bytes.len())];
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (
                v["row"].to_string(),
                v["time"].as_u64().unwrap(),
                v["diff"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn consolidate(updates: &[(String, u64, i64)]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (row, _, diff) in updates {
        *out.entry(row.clone()).or_insert(0) += diff;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// Checks run `epoch`'s sink file: its committed prefix consolidates to the snapshot of
/// `auctions` the demo read at the sink's frontier minus one, and that is exactly the
/// generator's first auctions, with no gap and no duplicate.
fn check_sink(data: &Path, epoch: u64) {
    let sink = data.join("sinks").join(format!("auctions-e{epoch}.ndjson"));
    let marker: Value =
        serde_json::from_slice(&std::fs::read(format!("{}.progress", sink.display())).unwrap())
            .unwrap();
    let frontier = marker["frontier"].as_u64().unwrap();
    let len = usize::try_from(marker["len"].as_u64().unwrap()).unwrap();
    let written = ndjson(&sink, Some(len));
    assert!(written.iter().all(|(_, t, _)| *t < frontier));
    let from_sink = consolidate(&written);
    assert!(!from_sink.is_empty(), "the sink wrote nothing");

    let snapshot = ndjson(&sink.with_extension("snapshot.ndjson"), None);
    assert!(snapshot.iter().all(|(_, t, _)| *t == frontier - 1));
    assert_eq!(
        from_sink,
        consolidate(&snapshot),
        "sink vs snapshot of auctions"
    );

    let connection = SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 100,
        offsets_per_tick: 10,
        seed: 7,
    };
    let offsets = from_sink.len() as u64;
    let model: Vec<(String, u64, i64)> = Generator::new(&connection)
        .unwrap()
        .updates_in(0..offsets)
        .into_iter()
        .filter(|(output, _, _)| *output == SourceOutput::Named(AUCTIONS.into()))
        .map(|(_, row, diff)| {
            (
                serde_json::to_value(row.unpack()).unwrap().to_string(),
                0,
                diff,
            )
        })
        .collect();
    assert_eq!(
        from_sink,
        consolidate(&model),
        "sink vs the generator's first {offsets} auctions"
    );
}

#[test]
fn a_second_run_recovers_the_first_and_each_sink_matches_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let first = demo(dir.path(), &[]);
    assert!(
        first.stdout.contains("fresh location, no previous run"),
        "{first:?}"
    );
    let epoch1 = number_after(&first.stdout, "catalog epoch ");
    let (start, orders1) = summary_row(&first.stdout, "orders");
    assert_eq!(start, None, "created in the first run");
    assert!(
        first.stdout.contains("bids' shard finalized and collected"),
        "{}",
        first.stdout
    );
    check_sink(&data, epoch1);
    assert_nothing_half_written(&data);
    check_parts(dir.path(), &first.stdout);
    // The live line shows throughput while the source runs.
    assert!(
        first.stdout.contains(" rows/s") && first.stdout.contains(" commits/s"),
        "{}",
        first.stdout
    );
    // inspect shows the collections by the names the demo gave them, in 80 columns.
    let inspect = run(strata().args(["inspect", "collections", "--persist", &file_url(&data)]));
    assert_eq!(inspect.code, Some(0), "{inspect:?}");
    for name in ["orders", "order_lines", "auction", "auctions", "frontiers"] {
        assert!(
            inspect
                .stdout
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(name)),
            "{name}: {}",
            inspect.stdout
        );
    }
    assert!(
        inspect.stdout.lines().all(|l| l.chars().count() <= 80),
        "{}",
        inspect.stdout
    );

    let second = demo(dir.path(), &[]);
    let epoch2 = number_after(&second.stdout, "catalog epoch ");
    assert!(epoch2 > epoch1, "epoch {epoch2} after {epoch1}");
    let recovered = number_after(&second.stdout, "recovered ");
    assert!(
        second.stdout.contains(&format!(
            "recovered {recovered} collections from a previous run"
        )),
        "{}",
        second.stdout
    );
    // Two tables, the source, its remap collection, auctions, and introspection.
    assert!(recovered >= 5, "{}", second.stdout);
    assert!(
        second.stdout.contains("bids: dropped by an earlier run"),
        "{}",
        second.stdout
    );
    for name in [
        "orders",
        "order_lines",
        "auction",
        "auctions",
        "auction_progress",
    ] {
        let (start, end) = summary_row(&second.stdout, name);
        let start = start.unwrap_or_else(|| panic!("{name} was not recovered"));
        assert!(end > start, "{name}: {start} -> {end}");
        if name == "orders" {
            assert!(
                start >= orders1,
                "orders went back from {orders1} to {start}"
            );
        }
    }
    check_sink(&data, epoch2);
    assert_nothing_half_written(&data);
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn a_grpc_run_leaves_no_replica_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), &["--transport", "grpc", "--replicas", "2"]);
    assert_eq!(
        out.stdout.matches("strata replica process ").count(),
        2,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("2 of 2 stopped cleanly"),
        "{}",
        out.stdout
    );
    let needle = dir.path().to_str().unwrap();
    let left = processes_mentioning(needle);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    check_sink(
        &dir.path().join("data"),
        number_after(&out.stdout, "catalog epoch "),
    );
    assert_nothing_half_written(&dir.path().join("data"));
}
