//! Random sequences of register / forget / commit / advance / apply / compact / read /
//! restart against a simple in-memory model of the txns shard.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_controller_api::{Antichain, Datum, ShardId, Timestamp};
use strata_persist_backend::conformance::{test_desc, test_row};
use strata_persist_backend::txns::{Txn, TxnsError, TxnsHandle};
use strata_persist_backend::{PersistClient, PersistConfig, Update, UpperMismatch};

const SHARDS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Register(usize),
    Forget(usize),
    Commit {
        writes: Vec<(usize, i64, i64)>,
        gap: u64,
    },
    StaleCommit(usize),
    Advance(u64),
    Apply,
    Compact,
    Read {
        shard: usize,
        back: u64,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SHARDS).prop_map(Op::Register),
        1 => (0..SHARDS).prop_map(Op::Forget),
        4 => (proptest::collection::vec((0..SHARDS, 0..4i64, prop_oneof![Just(1i64), Just(-1), Just(2)]), 0..5), 0..3u64)
            .prop_map(|(writes, gap)| Op::Commit { writes, gap }),
        1 => (0..SHARDS).prop_map(Op::StaleCommit),
        1 => (1..4u64).prop_map(Op::Advance),
        1 => Just(Op::Apply),
        1 => Just(Op::Compact),
        4 => ((0..SHARDS), 0..6u64).prop_map(|(shard, back)| Op::Read { shard, back }),
        1 => Just(Op::Restart),
    ]
}

/// What the txns shard should hold.
#[derive(Debug, Default)]
struct Model {
    upper: u64,
    registered: BTreeSet<usize>,
    forgotten: BTreeSet<usize>,
    /// (shard, key, time, diff) of every committed update.
    updates: Vec<(usize, i64, u64, i64)>,
}

impl Model {
    fn contents(&self, shard: usize, as_of: u64) -> BTreeMap<i64, i64> {
        let mut out = BTreeMap::new();
        for (s, k, t, d) in &self.updates {
            if *s == shard && *t <= as_of {
                *out.entry(*k).or_insert(0) += d;
            }
        }
        out.retain(|_, d| *d != 0);
        out
    }
}

fn contents(snapshot: &[Update<Timestamp>]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for (data, _, diff) in snapshot {
        let Some(Datum::Int64(k)) = data.as_ref().unwrap().unpack().first().cloned() else {
            panic!("bad row")
        };
        *out.entry(k).or_insert(0) += diff;
    }
    out
}

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

async fn run(ops: Vec<Op>) {
    let url = format!("mem://txns-prop-{}", uuid::Uuid::new_v4().simple());
    let open_client = || async {
        PersistClient::open_with_config(&url, PersistConfig::for_tests())
            .await
            .unwrap()
    };
    let txns = ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes());
    let shards: Vec<ShardId> = (0..SHARDS)
        .map(|_| ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes()))
        .collect();
    let mut h = TxnsHandle::<Timestamp>::open(open_client().await, txns)
        .await
        .unwrap();
    let mut m = Model::default();
    for op in ops {
        let at = Timestamp::new(m.upper);
        match op {
            Op::Register(i) => {
                h.register(at, [(shards[i], test_desc())])
                    .await
                    .unwrap()
                    .unwrap();
                if m.registered.insert(i) {
                    m.upper += 1;
                }
                m.forgotten.remove(&i);
            }
            Op::Forget(i) => {
                let r = h.forget(at, [shards[i]]).await;
                if m.registered.remove(&i) {
                    r.unwrap().unwrap();
                    m.forgotten.insert(i);
                    m.upper += 1;
                } else {
                    assert!(
                        matches!(r, Err(TxnsError::NotRegistered { op: "forget", .. })),
                        "{r:?}"
                    );
                }
            }
            Op::Commit { writes, gap } => {
                let ts = m.upper + gap;
                let mut txn = Txn::new();
                for (i, k, d) in &writes {
                    txn.write(shards[*i], [(Ok(test_row(*k)), *d)]);
                }
                let r = txn.commit_at(&mut h, Timestamp::new(ts)).await;
                if writes.iter().all(|(i, _, _)| m.registered.contains(i)) {
                    let apply = r.unwrap().unwrap();
                    assert_eq!(apply.commit_ts(), Timestamp::new(ts));
                    m.updates
                        .extend(writes.iter().map(|(i, k, d)| (*i, *k, ts, *d)));
                    m.upper = ts + 1;
                } else {
                    assert!(
                        matches!(r, Err(TxnsError::NotRegistered { op: "write", .. })),
                        "{r:?}"
                    );
                }
            }
            Op::StaleCommit(i) => {
                if m.upper > 0 && m.registered.contains(&i) {
                    let mut txn = Txn::new();
                    txn.write(shards[i], [(Ok(test_row(9)), 1)]);
                    let r = txn
                        .commit_at(&mut h, Timestamp::new(m.upper - 1))
                        .await
                        .unwrap();
                    assert_eq!(
                        r.unwrap_err(),
                        UpperMismatch {
                            current: fr(m.upper)
                        }
                    );
                }
            }
            Op::Advance(gap) => {
                m.upper += gap;
                assert_eq!(
                    h.advance_to(Timestamp::new(m.upper)).await.unwrap(),
                    fr(m.upper)
                );
            }
            Op::Apply => {
                if m.upper > 0 {
                    h.apply_le(Timestamp::new(m.upper - 1)).await.unwrap();
                }
            }
            Op::Compact => h.compact_to(at).await.unwrap(),
            Op::Read { shard, back } => {
                if m.upper == 0 || m.forgotten.contains(&shard) {
                    continue;
                }
                let as_of = (m.upper - 1).saturating_sub(back);
                let r = h
                    .read_at_no_wait(shards[shard], Timestamp::new(as_of))
                    .await;
                if m.registered.contains(&shard) {
                    assert_eq!(
                        contents(&r.unwrap()),
                        m.contents(shard, as_of),
                        "shard {shard} at {as_of}"
                    );
                } else {
                    assert!(
                        matches!(r, Err(TxnsError::NotRegistered { op: "read", .. })),
                        "{r:?}"
                    );
                }
            }
            Op::Restart => {
                drop(h);
                h = TxnsHandle::<Timestamp>::open(open_client().await, txns)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(h.txns_upper(), fr(m.upper), "txns upper after an op");
    }
    for (i, shard) in shards.iter().enumerate() {
        if m.registered.contains(&i) && m.upper > 0 {
            let got = contents(
                &h.read_at(*shard, Timestamp::new(m.upper - 1))
                    .await
                    .unwrap(),
            );
            assert_eq!(
                got,
                m.contents(i, m.upper - 1),
                "final contents of shard {i}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn txns_matches_model(ops in proptest::collection::vec(op(), 1..28)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops));
    }
}
