//! Persist's concurrency, checked for linearizability: tasks race compare-and-set on a
//! shard's consensus log and compare-and-append on a shard, on memory and on files,
//! with and without a `FaultyObjectStore` that makes writes fail and land anyway
//! (indeterminate). Each run records a history and the Wing–Gong checker must find a
//! legal order; a history with a forged extra winner must be rejected.

#![cfg(test)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::ObjectStore;
use strata_controller_api::{
    Antichain, Certainty, Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp,
};
use strata_persist_backend::consensus::{self, CasOutcome, Consensus};
use strata_persist_backend::{Location, PersistClient, PersistConfig, conformance};
use strata_testkit::faults::FaultyObjectStore;
use strata_testkit::linearizability::{CasOp, CasRegister, CasResult, Operation, check};

const TASKS: u64 = 4;
const OPS: u64 = 12;

type History = Vec<Operation<CasOp, CasResult>>;

/// A logical clock: every call and return takes the next tick, so real-time order
/// between operations is exactly the order of their ticks.
#[derive(Default)]
struct Clock(AtomicU64);

impl Clock {
    fn tick(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

/// Where the shards live, optionally behind a faulty store.
async fn location(backend: &str, faulty: bool, dir: &tempfile::TempDir) -> Location {
    let url = match backend {
        "memory" => format!("mem://lin-{}", uuid::Uuid::new_v4().simple()),
        _ => format!("file://{}", dir.path().display()),
    };
    let opened = Location::open(&url).await.unwrap();
    if !faulty {
        return opened;
    }
    let store = FaultyObjectStore::new(opened.store, 99);
    let faults = store.handle();
    faults.set_error_rate_all(0.05);
    faults.set_indeterminate_rate(0.1);
    Location::from_store(Arc::new(store) as Arc<dyn ObjectStore>, "", &url)
}

fn register_seqno(consensus_seqno: u64) -> u64 {
    // Consensus numbers versions from 1; the register numbers its head from 0.
    consensus_seqno - 1
}

fn decode(data: &Bytes) -> u64 {
    u64::from_le_bytes(data.as_ref().try_into().unwrap())
}

/// One task: reads the head, then tries to append after it; values are unique.
async fn cas_task(
    consensus: Arc<dyn Consensus>,
    shard: ShardId,
    task: u64,
    clock: Arc<Clock>,
) -> History {
    let mut history = History::new();
    let mut expected: Option<u64> = None;
    for i in 0..OPS {
        if i % 3 == 0 {
            let call = clock.tick();
            let Ok(head) = consensus.head(shard, 0).await else {
                continue; // a failed read changes nothing
            };
            let ret = clock.tick();
            let seen = head
                .as_ref()
                .map(|v| (register_seqno(v.seqno), decode(&v.data)));
            expected = head.map(|v| v.seqno);
            history.push(Operation {
                call,
                ret: Some(ret),
                op: CasOp::Head,
                result: CasResult::Head(seen),
            });
            continue;
        }
        let value = task * 1_000 + i;
        let op = CasOp::Cas {
            expected: expected.map(register_seqno),
            value,
        };
        let token = format!("t{task}-{i}");
        let data = Bytes::copy_from_slice(&value.to_le_bytes());
        let call = clock.tick();
        let outcome = consensus
            .compare_and_set(shard, expected, data, &token)
            .await;
        let ret = clock.tick();
        match outcome {
            Ok(CasOutcome::Committed) => {
                expected = Some(expected.map_or(1, |e| e + 1));
                history.push(Operation {
                    call,
                    ret: Some(ret),
                    op,
                    result: CasResult::Committed,
                });
            }
            Ok(CasOutcome::Mismatch) => {
                history.push(Operation {
                    call,
                    ret: Some(ret),
                    op,
                    result: CasResult::Rejected,
                });
            }
            Err(e) if e.certainty() == Certainty::Indeterminate => {
                history.push(Operation {
                    call,
                    ret: None,
                    op,
                    result: CasResult::Committed,
                });
            }
            Err(_) => {} // determinate: it never happened
        }
    }
    history
}

/// Adds a forged winner: a write that claims to have committed after every operation,
/// against a head that had moved on. No legal order can contain it.
fn forge(history: &History) -> Option<History> {
    let first = history
        .iter()
        .find(|o| o.result == CasResult::Committed && o.ret.is_some())?
        .clone();
    let end = history.iter().filter_map(|o| o.ret).max()?;
    let mut forged = history.clone();
    let mut extra = first;
    extra.call = end + 1;
    extra.ret = Some(end + 2);
    if let CasOp::Cas { value, .. } = &mut extra.op {
        *value += 1_000_000;
    }
    forged.push(extra);
    Some(forged)
}

fn check_history(what: &str, history: &History) {
    let committed = history
        .iter()
        .filter(|o| o.result == CasResult::Committed && o.ret.is_some())
        .count();
    assert!(committed > 0, "{what}: nothing committed: {history:?}");
    if let Err(e) = check(&CasRegister, history) {
        panic!("{what}: {e}\n{history:#?}");
    }
    let forged = forge(history).unwrap();
    assert!(
        check(&CasRegister, &forged).is_err(),
        "{what}: the checker accepted a forged second winner"
    );
}

async fn consensus_race(backend: &str, faulty: bool) {
    let dir = tempfile::tempdir().unwrap();
    let consensus = consensus::open(&location(backend, faulty, &dir).await);
    let shard = conformance::new_shard();
    let clock = Arc::new(Clock::default());
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            tokio::spawn(cas_task(
                Arc::clone(&consensus),
                shard,
                t,
                Arc::clone(&clock),
            ))
        })
        .collect();
    let mut history = History::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    check_history(
        &format!("consensus on {backend} (faulty: {faulty})"),
        &history,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_cas_on_memory_is_linearizable() {
    consensus_race("memory", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_cas_on_files_is_linearizable() {
    consensus_race("file", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consensus_cas_on_a_faulty_store_is_linearizable() {
    consensus_race("memory", true).await;
}

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("value", ScalarType::Int64.nullable(false))
        .finish()
}

/// One writer: appends a unique value at the upper it believes in, one tick of time
/// at a time. A shard's upper is a compare-and-set register: upper `u` is head
/// `u - 1`, and a successful append moves it to `u + 1`.
async fn append_task(
    client: PersistClient,
    shard: ShardId,
    task: u64,
    clock: Arc<Clock>,
) -> History {
    let mut history = History::new();
    let mut handle = loop {
        if let Ok(handle) = client.open_writer::<Timestamp>(shard, desc()).await {
            break handle;
        }
    };
    for i in 0..OPS {
        let Some(upper) = handle.upper().as_option().map(|t| t.as_millis()) else {
            panic!("the shard closed");
        };
        let value = task * 1_000 + i;
        let op = CasOp::Cas {
            expected: upper.checked_sub(1),
            value,
        };
        let updates = vec![(
            Ok(Row::pack(&[Datum::Int64(value as i64)])),
            Timestamp::new(upper),
            1,
        )];
        let call = clock.tick();
        let outcome = handle
            .compare_and_append(
                &updates,
                Antichain::from_elem(Timestamp::new(upper)),
                Antichain::from_elem(Timestamp::new(upper + 1)),
            )
            .await;
        let ret = clock.tick();
        match outcome {
            Ok(Ok(())) => {
                history.push(Operation {
                    call,
                    ret: Some(ret),
                    op,
                    result: CasResult::Committed,
                });
            }
            Ok(Err(mismatch)) => {
                let current = mismatch
                    .current
                    .as_option()
                    .and_then(|t| t.as_millis().checked_sub(1));
                history.push(Operation {
                    call,
                    ret: Some(ret),
                    op,
                    result: CasResult::Mismatch { current },
                });
            }
            Err(e) if e.certainty() == Certainty::Indeterminate => {
                history.push(Operation {
                    call,
                    ret: None,
                    op,
                    result: CasResult::Committed,
                });
                let _ = handle.fetch_recent_upper().await;
            }
            Err(_) => {
                let _ = handle.fetch_recent_upper().await;
            }
        }
    }
    history
}

async fn append_race(backend: &str, faulty: bool) {
    let dir = tempfile::tempdir().unwrap();
    let client = PersistClient::from_location(
        location(backend, faulty, &dir).await,
        PersistConfig::for_tests(),
    );
    let shard = conformance::new_shard();
    let clock = Arc::new(Clock::default());
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| tokio::spawn(append_task(client.clone(), shard, t, Arc::clone(&clock))))
        .collect();
    let mut history = History::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    check_history(
        &format!("compare_and_append on {backend} (faulty: {faulty})"),
        &history,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_append_on_memory_is_linearizable() {
    append_race("memory", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_append_on_files_is_linearizable() {
    append_race("file", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_append_on_a_faulty_store_is_linearizable() {
    append_race("file", true).await;
}
