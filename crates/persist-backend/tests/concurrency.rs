//! A history check: 8 writers race `compare_and_append` on one shard while the store
//! injects determinate and indeterminate faults, on memory and on local files, with
//! each consensus implementation those can run. The recorded history is checked: every
//! acknowledged update is present exactly once, an in-doubt one at most once, nothing
//! unknown appears, and the upper never regresses.
//!
//! Each writer makes 500 appends on memory. On files every commit is fsynced, so the
//! normal suite runs 100 per writer there and the soak run (`STRATA_SOAK=1`) 500.

#![cfg(test)]

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use strata_controller_api::{
    Antichain, Certainty, Datum, RelationDesc, Row, ScalarType, Timestamp,
};
use strata_persist_backend::consensus::ConsensusKind;
use strata_persist_backend::testing::{Faults, FaultyStore};
use strata_persist_backend::{Location, PersistClient, PersistConfig, conformance};

const WRITERS: i64 = 8;

fn soak() -> bool {
    std::env::var("STRATA_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("writer", ScalarType::Int64.nullable(false))
        .with_column("seq", ScalarType::Int64.nullable(false))
        .finish()
}

fn row(w: i64, j: i64) -> Row {
    Row::pack(&[Datum::Int64(w), Datum::Int64(j)])
}

#[derive(Debug, Default)]
struct History {
    /// (writer, seq) -> time of an acknowledged append.
    acked: BTreeMap<(i64, i64), u64>,
    /// Appends that failed indeterminately: they may or may not be there.
    maybe: Vec<(i64, i64)>,
    /// Every upper a writer observed, in order.
    uppers: Vec<u64>,
}

async fn writer(
    client: PersistClient,
    shard: strata_controller_api::ShardId,
    w: i64,
    appends: i64,
) -> History {
    let mut h = History::default();
    if std::env::var("RACE_DEBUG").is_ok() {
        eprintln!("writer {w} opening");
    }
    // Registering a writer is idempotent: an in-doubt registration is simply retried.
    let mut handle = loop {
        if let Ok(handle) = client.open_writer::<Timestamp>(shard, desc()).await {
            break handle;
        }
    };
    let mut j = 0;
    while j < appends {
        let Some(t) = handle.upper().as_option().copied() else {
            panic!("upper closed")
        };
        h.uppers.push(t.as_millis());
        let updates = vec![(Ok(row(w, j)), t, 1)];
        let new_upper = Antichain::from_elem(Timestamp::new(t.as_millis() + 1));
        match handle
            .compare_and_append(&updates, Antichain::from_elem(t), new_upper)
            .await
        {
            Ok(Ok(())) => {
                h.acked.insert((w, j), t.as_millis());
                j += 1;
            }
            Ok(Err(mismatch)) => {
                if std::env::var("RACE_DEBUG").is_ok() {
                    eprintln!("writer {w} j {j}: mismatch at {t}: {mismatch}");
                }
            }
            Err(e) if e.certainty() == Certainty::Indeterminate => {
                h.maybe.push((w, j));
                j += 1;
                let _ = handle.fetch_recent_upper().await;
            }
            Err(e) => {
                eprintln!("writer {w}: determinate error {e}");
                let _ = handle.fetch_recent_upper().await;
            }
        }
    }
    h.uppers.push(
        handle
            .upper()
            .as_option()
            .map_or(u64::MAX, |t| t.as_millis()),
    );
    eprintln!(
        "writer {w} done: {} acked, {} maybe",
        h.acked.len(),
        h.maybe.len()
    );
    h
}

async fn race(inner: Arc<dyn ObjectStore>, url: &str, kind: ConsensusKind, appends: i64) {
    let faults = Faults::new(40, 40);
    let store: Arc<dyn ObjectStore> =
        Arc::new(FaultyStore::new(Arc::clone(&inner), Arc::clone(&faults)));
    let shard = conformance::new_shard();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        // Each writer has its own client (own cache), half of them write parts.
        let cfg = PersistConfig {
            inline_threshold_bytes: if w % 2 == 0 { 0 } else { 4096 },
            heartbeat_in_background: false,
            ..PersistConfig::default()
        };
        let loc = Location::from_store(Arc::clone(&store), "", url).with_consensus(kind.clone());
        let client = PersistClient::from_location(loc, cfg);
        tasks.push(tokio::spawn(writer(client, shard, w, appends)));
    }
    let mut histories = Vec::new();
    for t in tasks {
        histories.push(t.await.unwrap());
    }
    faults.disable();
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "faults were injected"
    );

    let mut acked = BTreeMap::new();
    let mut maybe = Vec::new();
    for h in &histories {
        assert!(
            h.uppers.windows(2).all(|p| p[0] <= p[1]),
            "a writer saw the upper regress: {:?}",
            h.uppers
        );
        acked.extend(h.acked.iter().map(|(k, v)| (*k, *v)));
        maybe.extend(h.maybe.iter().copied());
    }
    assert!(!acked.is_empty());

    let client = PersistClient::from_location(
        Location::from_store(inner, "", url).with_consensus(kind.clone()),
        PersistConfig::for_tests(),
    );
    let upper = client.fetch_recent_upper::<Timestamp>(shard).await.unwrap();
    let last = upper.as_option().unwrap().as_millis() - 1;
    let mut reader = client
        .open_leased_reader::<Timestamp>(shard, desc())
        .await
        .unwrap();
    // Read every update at its own time: the snapshot at 0 plus a listen from 0.
    let mut seen: Vec<(Row, u64, i64)> = Vec::new();
    for (data, t, d) in reader.snapshot(&Timestamp::new(0)).await.unwrap() {
        seen.push((data.unwrap(), t.as_millis(), d));
    }
    eprintln!("history checked up to {last}, reading");
    let mut listen = reader.listen(&Timestamp::new(0)).await.unwrap();
    while listen.frontier().less_equal(&Timestamp::new(last)) {
        for event in listen.next().await.unwrap() {
            if let strata_persist_backend::ListenEvent::Updates(ups) = event {
                seen.extend(
                    ups.into_iter()
                        .map(|(data, t, d)| (data.unwrap(), t.as_millis(), d)),
                );
            }
        }
    }
    let mut count: BTreeMap<Row, Vec<(u64, i64)>> = BTreeMap::new();
    for (r, t, d) in seen {
        count.entry(r).or_default().push((t, d));
    }
    for ((w, j), t) in &acked {
        let got = count.remove(&row(*w, *j));
        assert_eq!(
            got,
            Some(vec![(*t, 1)]),
            "acknowledged ({w}, {j}) at {t} must appear exactly once"
        );
    }
    for (w, j) in maybe {
        if let Some(got) = count.remove(&row(w, j)) {
            assert_eq!(got.len(), 1, "({w}, {j}) appears at most once");
            assert_eq!(got[0].1, 1);
        }
    }
    assert!(count.is_empty(), "updates nobody wrote: {count:?}");
    let times: std::collections::BTreeSet<u64> = acked.values().copied().collect();
    assert_eq!(
        times.len(),
        acked.len(),
        "two acknowledged appends at one time"
    );
}

async fn memory_race(kind: ConsensusKind) {
    let name = format!("race-{}", uuid::Uuid::new_v4().simple());
    let inner: Arc<dyn ObjectStore> = strata_persist_backend::location::memory_store(&name);
    race(inner, &format!("mem://{name}"), kind, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_memory_register() {
    memory_race(ConsensusKind::Register).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_memory_log() {
    memory_race(ConsensusKind::Log).await;
}

#[cfg(feature = "file")]
async fn file_race(log: bool) {
    let dir = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .unwrap()
        .with_fsync(true);
    let kind = match log {
        true => ConsensusKind::Log,
        false => ConsensusKind::FileRegister {
            root: dir.path().to_owned(),
        },
    };
    let appends = if soak() { 500 } else { 100 };
    race(
        Arc::new(fs),
        &format!("file://{}", dir.path().display()),
        kind,
        appends,
    )
    .await;
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_file_register() {
    file_race(false).await;
}

#[cfg(feature = "file")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_file_log() {
    file_race(true).await;
}
