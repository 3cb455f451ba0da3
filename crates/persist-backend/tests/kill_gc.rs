//! Nothing is left behind by crashes. A child process writes to two shards of a local
//! file location and runs compaction and GC in a loop; it is killed with SIGKILL at a
//! random point (after a random one of its progress events, in the write or the
//! maintenance that follows), 20 times over. Afterwards, once the dead processes' leases are over,
//! one GC pass per shard leaves no object that no state references: no orphan part,
//! no unreferenced garbage, no staging file of an interrupted put.

#![cfg(test)]
#![cfg(all(unix, feature = "file"))]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::{Antichain, ShardId, Timestamp};
use strata_persist_backend::conformance::{test_desc, test_row};
use strata_persist_backend::{GcReport, PersistClient, PersistConfig};

/// Set in the child: the location URL it writes to.
const CHILD_ENV: &str = "STRATA_KILL_GC_CHILD_URL";
const KILLS: u64 = 20;
const TEST_NAME: &str = "sigkill_during_writes_and_maintenance_leaves_nothing_after_gc";

fn shards() -> [ShardId; 2] {
    [ShardId::from_bytes([7; 16]), ShardId::from_bytes([8; 16])]
}

/// The child: appends batches big enough to be parts, compacts and collects garbage,
/// until it is killed.
async fn write_until_killed(url: &str) {
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        compaction_trigger_batches: 2,
        ..PersistConfig::default()
    };
    let client = PersistClient::open_with_config(url, cfg).await.unwrap();
    let mut writers = Vec::new();
    for shard in shards() {
        let mut w = client
            .open_writer::<Timestamp>(shard, test_desc())
            .await
            .unwrap();
        w.fetch_recent_upper().await.unwrap();
        writers.push(w);
    }
    // A reader whose lease the kill leaves behind, pinning a version.
    let _reader = client
        .open_leased_reader::<Timestamp>(shards()[0], test_desc())
        .await
        .unwrap();
    for round in 0u64.. {
        for w in &mut writers {
            let Some(lower) = w.upper().as_option().copied() else {
                return;
            };
            let t = lower.as_millis();
            let updates: Vec<_> = (0..64)
                .map(|k| (Ok(test_row(k + (t as i64) * 64)), lower, 1))
                .collect();
            let upper = Antichain::from_elem(Timestamp::new(t + 1));
            w.append(&updates, upper).await.unwrap().unwrap();
        }
        // Each line is an event the parent may kill on: the kill then lands in the
        // next step, a write or maintenance.
        eprintln!("{EVENT} appended {round}");
        if round % 3 == 0 {
            for shard in shards() {
                client.compact(shard, 2).await.unwrap();
                client.gc(shard).await.unwrap();
            }
            eprintln!("{EVENT} maintained {round}");
        }
    }
}

/// The prefix of the child's progress lines.
const EVENT: &str = "kill_gc event:";

/// Every file under `dir`, relative to it.
fn files(dir: &Path, under: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files(&path, under, out);
        } else {
            let rel = path.strip_prefix(under).unwrap();
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn sigkill_during_writes_and_maintenance_leaves_nothing_after_gc() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(url) = std::env::var(CHILD_ENV) {
        runtime.block_on(write_until_killed(&url));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = strata_controller_api::rng::SplitMix64::new(seed);
    let mut kill_points = Vec::new();
    for _ in 0..KILLS {
        // Kill on a random one of the child's first 12 progress events, so the kill
        // lands in a write or in maintenance that follows it.
        let kill_on = 1 + rng.below(12);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, &url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                if lines_tx.send(line.unwrap_or_default()).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        let mut events = 0;
        while events < kill_on {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("the child stopped reporting progress:\n{}", seen.join("\n"))
                });
            if line.starts_with(EVENT) {
                events += 1;
            }
            seen.push(line);
        }
        // `kill` sends SIGKILL.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the child ended by itself ({status}) before it was killed:\n{}",
            seen.join("\n")
        );
        kill_points.push(seen.last().cloned().unwrap_or_default());
    }

    let mut before = BTreeSet::new();
    files(dir.path(), dir.path(), &mut before);

    // An hour later: every dead process's lease is over.
    let later: strata_persist_backend::config::NowFn = Arc::new(|| {
        let now = std::time::SystemTime::now() + Duration::from_secs(3600);
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    });
    let cfg = PersistConfig {
        now: later,
        ..PersistConfig::for_tests()
    };
    let (report, referenced) = runtime.block_on(async {
        let client = PersistClient::open_with_config(&url, cfg).await.unwrap();
        let mut total = GcReport::default();
        let mut referenced = BTreeSet::new();
        for shard in shards() {
            // Any write prunes expired leases: registering and expiring a writer is one.
            let w = client
                .open_writer::<Timestamp>(shard, test_desc())
                .await
                .unwrap();
            w.expire().await.unwrap();
            for _ in 0..2 {
                let r = client.gc(shard).await.unwrap();
                total.deleted_parts += r.deleted_parts;
                total.deleted_orphans += r.deleted_orphans;
                total.deleted_staging += r.deleted_staging;
            }
            referenced.extend(client.referenced_part_keys(shard).await.unwrap());
        }
        (total, referenced)
    });

    let mut after = BTreeSet::new();
    files(dir.path(), dir.path(), &mut after);
    let unreferenced: Vec<&String> = after
        .iter()
        .filter(|f| {
            let bookkeeping =
                f.as_str() == "strata-format" || f.ends_with("/head") || f.ends_with("/head.lock");
            !bookkeeping && !referenced.contains(f.as_str())
        })
        .collect();
    eprintln!(
        "kills {KILLS} after {kill_points:?}; files before GC {}, after {}; \
         deleted garbage parts {}, orphan parts {}, staging files {}; \
         referenced parts {}; unreferenced left {}",
        before.len(),
        after.len(),
        report.deleted_parts,
        report.deleted_orphans,
        report.deleted_staging,
        referenced.len(),
        unreferenced.len(),
    );
    assert!(unreferenced.is_empty(), "left behind: {unreferenced:?}");
    assert!(!referenced.is_empty(), "the children wrote no part");
}
