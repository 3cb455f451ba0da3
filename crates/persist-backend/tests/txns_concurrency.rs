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
