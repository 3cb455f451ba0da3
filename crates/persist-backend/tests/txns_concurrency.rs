//! Several txns handles (think: a controller and its restarted successor) commit to
//! the same txns shard at once, over a store that injects Determinate and
//! Indeterminate failures. Afterwards a fresh handle must see every acknowledged
//! commit exactly once, in both tables of each two-table commit or in neither.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use strata_controller_api::{Datum, ShardId, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::testing::{Faults, FaultyStore};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{Location, PersistClient, PersistConfig, Update};

fn client(store: &Arc<dyn ObjectStore>) -> PersistClient {
    PersistClient::from_location(
        Location::from_store(Arc::clone(store), "", "mem://txns-faults"),
        PersistConfig::for_tests(),
    )
}

fn keys(snapshot: &[Update<Timestamp>]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for (data, _, diff) in snapshot {
        let Some(Datum::Int64(k)) = data.as_ref().unwrap().unpack().first().cloned() else {
            panic!("bad row")
        };
        *out.entry(k).or_insert(0) += diff;
    }
    out
}

struct Outcome {
    acked: Vec<i64>,
    attempted: Vec<i64>,
}

async fn committer(
    store: Arc<dyn ObjectStore>,
    txns: ShardId,
    a: ShardId,
    b: ShardId,
    id: i64,
) -> Outcome {
    let mut out = Outcome {
        acked: Vec::new(),
        attempted: Vec::new(),
    };
    let mut h = loop {
        if let Ok(h) = TxnsHandle::<Timestamp>::open(client(&store), txns).await {
            break h;
        }
    };
    for i in 0..20i64 {
        let key = id * 1000 + i;
        let mut txn = Txn::new();
        txn.write(a, [(Ok(test_row(key)), 1)]);
        txn.write(b, [(Ok(test_row(key)), 1)]);
        let at = h.txns_upper().elements()[0].as_millis() + (i as u64 % 3);
        out.attempted.push(key);
        match txn.commit_at(&mut h, Timestamp::new(at)).await {
            Ok(Ok(apply)) => {
                out.acked.push(key);
                if i % 4 == 0 {
                    let _ = apply.apply(&mut h).await;
                }
            }
            Ok(Err(_mismatch)) => {}
            Err(_failed) => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_committers_with_faults_lose_and_duplicate_nothing() {
    let faults = Faults::new(0, 0);
    let store: Arc<dyn ObjectStore> = Arc::new(FaultyStore::new(
        Arc::new(InMemory::new()),
        Arc::clone(&faults),
    ));
    let (txns, a, b) = (new_shard(), new_shard(), new_shard());
    let mut setup = TxnsHandle::<Timestamp>::open(client(&store), txns)
        .await
        .unwrap();
    setup
        .register(Timestamp::new(0), [(a, test_desc()), (b, test_desc())])
        .await
        .unwrap()
        .unwrap();

    faults
        .determinate_permille
        .store(80, std::sync::atomic::Ordering::SeqCst);
    faults
        .indeterminate_permille
        .store(80, std::sync::atomic::Ordering::SeqCst);
    let tasks: Vec<_> = (1..=4)
        .map(|id| tokio::spawn(committer(Arc::clone(&store), txns, a, b, id)))
        .collect();
    let mut acked = BTreeSet::new();
    let mut attempted = BTreeSet::new();
    for t in tasks {
        let out = t.await.unwrap();
        acked.extend(out.acked);
        attempted.extend(out.attempted);
    }
    faults.disable();
    assert!(
        faults.injected.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "faults were injected"
    );
    assert!(acked.len() >= 10, "most commits succeed: {}", acked.len());

    let mut fresh = TxnsHandle::<Timestamp>::open(client(&store), txns)
        .await
        .unwrap();
    let upper = fresh.txns_upper().elements()[0].as_millis();
    let as_of = Timestamp::new(upper - 1);
    let got_a = keys(&fresh.read_at(a, as_of).await.unwrap());
    let got_b = keys(&fresh.read_at(b, as_of).await.unwrap());
    assert_eq!(got_a, got_b, "every commit is in both tables or in neither");
    for k in &acked {
        assert_eq!(
            got_a.get(k),
            Some(&1),
            "acknowledged commit {k} appears exactly once"
        );
    }
    for (k, d) in &got_a {
        assert!(
            attempted.contains(k) && *d == 1,
            "key {k} with diff {d} was never committed once"
        );
    }
}

/// A handle that catches up with another handle's commits (reading only the rows
/// they added and retracted) ends where a handle that reads the whole shard ends:
/// registrations, commits, applies that tidy, forgets and re-registrations, caught up
/// after every step and after several at once.
#[tokio::test]
async fn a_handle_that_catches_up_sees_what_a_fresh_one_sees() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let txns = new_shard();
    let shards: Vec<ShardId> = (0..6).map(|_| new_shard()).collect();
    let mut writer = TxnsHandle::<Timestamp>::open(client(&store), txns)
        .await
        .unwrap();
    let mut follower = TxnsHandle::<Timestamp>::open(client(&store), txns)
        .await
        .unwrap();
    for step in 0..60u64 {
        // Every step at the txns upper (some steps commit nothing).
        let ts = writer.txns_upper().as_option().unwrap().as_millis();
        let shard = shards[(step % 6) as usize];
        match step % 10 {
            0 => {
                let _ = writer
                    .register(Timestamp::new(ts), [(shard, test_desc())])
                    .await
                    .unwrap();
            }
            7 if step > 20 => {
                if writer.logical_upper(shard).is_ok() {
                    writer
                        .forget(Timestamp::new(ts), [shard])
                        .await
                        .unwrap()
                        .unwrap();
                }
            }
            8 => {
                writer.apply_le(Timestamp::new(ts - 1)).await.unwrap();
                writer.tidy_now().await.unwrap();
            }
            _ => {
                let mut txn = Txn::new();
                for s in &shards {
                    if writer.logical_upper(*s).is_ok() {
                        txn.write(*s, [(Ok(test_row(step as i64)), 1)]);
                    }
                }
                let _left_for_apply = txn
                    .commit_at(&mut writer, Timestamp::new(ts))
                    .await
                    .unwrap()
                    .unwrap();
            }
        }
        // Catch up after some steps, after several others at once.
        if step % 3 != 1 {
            continue;
        }
        follower.fetch_txns_upper().await.unwrap();
        let mut fresh = TxnsHandle::<Timestamp>::open(client(&store), txns)
            .await
            .unwrap();
        fresh.fetch_txns_upper().await.unwrap();
        assert_eq!(follower.txns_upper(), fresh.txns_upper(), "step {step}");
        assert_eq!(follower.registered(), fresh.registered(), "step {step}");
        assert_eq!(follower.live_rows(), fresh.live_rows(), "step {step}");
        let as_of = Timestamp::new(fresh.txns_upper().as_option().unwrap().as_millis() - 1);
        for s in &shards {
            if fresh.logical_upper(*s).is_ok() {
                assert_eq!(
                    keys(&follower.read_at(*s, as_of).await.unwrap()),
                    keys(&fresh.read_at(*s, as_of).await.unwrap()),
                    "step {step}: {s}"
                );
            }
        }
    }
}
