//! Property test: the durable catalog behaves exactly like the in-memory reference
//! (`MemoryCatalog`) for random sequences of mutations, commits, new transactions,
//! take-overs and commits of fenced transactions.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use strata_controller_api::{
    GlobalId, MemoryCatalog, MemoryStorageTxn, ShardId, StorageError, StorageTxn, Timestamp,
};
use strata_controller_core::{DurableCatalog, DurableStorageTxn};
use strata_persist_backend::PersistClient;

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<(u64, u8)>),
    Delete(Vec<u64>),
    AddUnfinalized(Vec<u8>),
    Finalize(Vec<u8>),
    WriteTxns(u8),
    Commit,
    Begin,
    TakeOver,
    /// Commit the transaction that was current before the last take-over.
    CommitStale,
}

fn op() -> impl Strategy<Value = Op> {
    let ids = || proptest::collection::vec(0u64..6, 0..3);
    let shards = || proptest::collection::vec(0u8..8, 0..3);
    prop_oneof![
        3 => proptest::collection::vec((0u64..6, 0u8..8), 0..3).prop_map(Op::Insert),
        2 => ids().prop_map(Op::Delete),
        1 => shards().prop_map(Op::AddUnfinalized),
        1 => shards().prop_map(Op::Finalize),
        1 => (0u8..3).prop_map(Op::WriteTxns),
        3 => Just(Op::Commit),
        1 => Just(Op::Begin),
        1 => Just(Op::TakeOver),
        1 => Just(Op::CommitStale),
    ]
}

fn s(n: u8) -> ShardId {
    ShardId::from_bytes([n; 16])
}

/// An outcome with the error reduced to its kind (messages may differ).
fn outcome(r: Result<(), StorageError>) -> Result<(), String> {
    r.map_err(|e| match e {
        StorageError::Fenced { ours, current } => format!("fenced {ours} {current}"),
        StorageError::CollectionIdReused(id) => format!("reused {id}"),
        StorageError::InvalidUsage(_) => "invalid".to_owned(),
        other => format!("unexpected {other}"),
    })
}

fn done(r: Result<(), StorageError>) -> Result<String, String> {
    outcome(r).map(|()| String::new())
}

fn view(
    txn: &dyn StorageTxn<Timestamp>,
) -> (
    BTreeMap<GlobalId, ShardId>,
    BTreeSet<ShardId>,
    Option<ShardId>,
    u64,
) {
    (
        txn.get_collection_metadata(),
        txn.get_unfinalized_shards(),
        txn.get_txn_wal_shard(),
        txn.epoch(),
    )
}

/// Applies a synchronous mutation to a transaction; `Ok` carries what it returned.
fn mutate(txn: &mut dyn StorageTxn<Timestamp>, op: &Op) -> Result<String, String> {
    match op {
        Op::Insert(pairs) => {
            let map = pairs
                .iter()
                .map(|(i, sh)| (GlobalId::User(*i), s(*sh)))
                .collect();
            outcome(txn.insert_collection_metadata(map)).map(|()| String::new())
        }
        Op::Delete(ids) => {
            let removed =
                txn.delete_collection_metadata(ids.iter().map(|i| GlobalId::User(*i)).collect());
            Ok(format!("removed {removed:?}"))
        }
        Op::AddUnfinalized(shards) => {
            outcome(txn.insert_unfinalized_shards(shards.iter().copied().map(s).collect()))
                .map(|()| String::new())
        }
        Op::Finalize(shards) => {
            txn.mark_shards_as_finalized(shards.iter().copied().map(s).collect());
            Ok(String::new())
        }
        Op::WriteTxns(n) => outcome(txn.write_txn_wal_shard(s(100 + n))).map(|()| String::new()),
        _ => Ok(String::new()),
    }
}

static CASE: AtomicU64 = AtomicU64::new(0);

async fn run(ops: Vec<Op>) {
    let url = format!(
        "mem://catalog-model-{}",
        CASE.fetch_add(1, Ordering::Relaxed)
    );
    let client = PersistClient::open(&url).await.unwrap();
    let memory = MemoryCatalog::new();
    let mut durable = DurableCatalog::open(&client).await.unwrap();
    let mut m: MemoryStorageTxn<Timestamp> = memory.begin();
    let mut d: DurableStorageTxn<Timestamp> = durable.begin();
    let mut stale: Option<(MemoryStorageTxn<Timestamp>, DurableStorageTxn<Timestamp>)> = None;
    for (step, op) in ops.iter().enumerate() {
        let (rm, rd) = match op {
            Op::Commit => (done(m.commit().await), done(d.commit().await)),
            Op::Begin => {
                (m, d) = (memory.begin(), durable.begin());
                (Ok(String::new()), Ok(String::new()))
            }
            Op::TakeOver => {
                memory.bump_epoch();
                durable = DurableCatalog::open(&client).await.unwrap();
                let old = (
                    std::mem::replace(&mut m, memory.begin()),
                    std::mem::replace(&mut d, durable.begin()),
                );
                stale = Some(old);
                (Ok(String::new()), Ok(String::new()))
            }
            Op::CommitStale => match stale.as_mut() {
                Some((sm, sd)) => (done(sm.commit().await), done(sd.commit().await)),
                None => (Ok(String::new()), Ok(String::new())),
            },
            _ => (mutate(&mut m, op), mutate(&mut d, op)),
        };
        assert_eq!(rm, rd, "step {step}: {op:?}");
        assert_eq!(view(&m), view(&d), "step {step}: {op:?}");
        // Committed state agrees too.
        assert_eq!(
            view(&memory.begin::<Timestamp>()),
            view(&durable.begin::<Timestamp>()),
            "step {step}: {op:?}"
        );
    }
    // And it is durable: a new controller reads it back from storage.
    let fresh = PersistClient::open(&url).await.unwrap();
    let reopened = DurableCatalog::open(&fresh).await.unwrap();
    memory.bump_epoch();
    assert_eq!(
        view(&memory.begin::<Timestamp>()),
        view(&reopened.begin::<Timestamp>())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn durable_catalog_matches_memory_catalog(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
