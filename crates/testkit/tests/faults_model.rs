//! `FaultyObjectStore` against a model: for random configs and operation sequences,
//! a determinate fault never changes the inner store, an indeterminate one always
//! does, and everything else is exactly what a plain key-value map predicts.

#![cfg(test)]

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode};
use proptest::prelude::*;
use strata_testkit::faults::{FaultConfig, FaultyObjectStore, InjectedFault, OpClass};

const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Put(usize, u8),
    Create(usize, u8),
    Delete(usize),
    Copy(usize, usize),
    Rename(usize, usize),
    Get(usize),
    List,
}

/// What an operation returned, with injected faults set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Value(String),
    Listing(Vec<String>),
    NotFound,
    AlreadyExists,
}

fn arb_op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    // Two distinct keys: renaming a key onto itself is not something the model covers.
    let pair = (0..KEYS.len(), 1..KEYS.len()).prop_map(|(a, d)| (a, (a + d) % KEYS.len()));
    prop_oneof![
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        (key.clone(), any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
        key.clone().prop_map(Op::Delete),
        pair.clone().prop_map(|(a, b)| Op::Copy(a, b)),
        pair.prop_map(|(a, b)| Op::Rename(a, b)),
        key.prop_map(Op::Get),
        Just(Op::List),
    ]
}

fn arb_rate() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), 0.0..1.0]
}

fn arb_config() -> impl Strategy<Value = FaultConfig> {
    (proptest::collection::vec(arb_rate(), 4), arb_rate()).prop_map(|(rates, indeterminate)| {
        let mut config = FaultConfig::default().with_indeterminate_rate(indeterminate);
        for (class, rate) in OpClass::ALL.into_iter().zip(rates) {
            config = config.with_error_rate(class, rate);
        }
        config
    })
}

/// Applies `op` to the model and says what a fault-free store returns.
fn model_step(model: &mut BTreeMap<String, String>, op: &Op) -> Outcome {
    let key = |i: usize| KEYS[i].to_owned();
    match op {
        Op::Put(k, v) => {
            model.insert(key(*k), v.to_string());
            Outcome::Done
        }
        Op::Create(k, v) => {
            if model.contains_key(&key(*k)) {
                return Outcome::AlreadyExists;
            }
            model.insert(key(*k), v.to_string());
            Outcome::Done
        }
        Op::Delete(k) => {
            model.remove(&key(*k));
            Outcome::Done
        }
        Op::Copy(from, to) | Op::Rename(from, to) => {
            let Some(value) = model.get(&key(*from)).cloned() else {
                return Outcome::NotFound;
            };
            model.insert(key(*to), value);
            if matches!(op, Op::Rename(..)) {
                model.remove(&key(*from));
            }
            Outcome::Done
        }
        Op::Get(k) => model
            .get(&key(*k))
            .map_or(Outcome::NotFound, |v| Outcome::Value(v.clone())),
        Op::List => Outcome::Listing(model.keys().cloned().collect()),
    }
}

fn done<T>(result: object_store::Result<T>) -> object_store::Result<Outcome> {
    result.map(|_| Outcome::Done)
}

async fn store_step(store: &FaultyObjectStore, op: &Op) -> object_store::Result<Outcome> {
    let path = |i: usize| Path::from(KEYS[i]);
    match op {
        Op::Put(k, v) => done(store.put(&path(*k), v.to_string().into()).await),
        Op::Create(k, v) => {
            let payload = v.to_string().into();
            done(
                store
                    .put_opts(&path(*k), payload, PutMode::Create.into())
                    .await,
            )
        }
        Op::Delete(k) => done(store.delete(&path(*k)).await),
        Op::Copy(a, b) => done(store.copy(&path(*a), &path(*b)).await),
        Op::Rename(a, b) => done(store.rename(&path(*a), &path(*b)).await),
        Op::Get(k) => {
            let bytes = store.get(&path(*k)).await?.bytes().await?;
            Ok(Outcome::Value(String::from_utf8(bytes.to_vec()).unwrap()))
        }
        Op::List => {
            let metas: Vec<_> = store.list(None).try_collect().await?;
            let mut keys: Vec<String> = metas.iter().map(|m| m.location.to_string()).collect();
            keys.sort();
            Ok(Outcome::Listing(keys))
        }
    }
}

async fn contents(store: &dyn ObjectStore) -> BTreeMap<String, String> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        out.insert(meta.location.to_string(), text);
    }
    out
}

async fn run(seed: u64, config: FaultConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let inner = Arc::new(InMemory::new());
    let store = FaultyObjectStore::with_config(Arc::clone(&inner) as _, seed, config);
    let mut model = BTreeMap::new();
    for op in &ops {
        let result = store_step(&store, op).await;
        let fault = result.as_ref().err().and_then(InjectedFault::of).cloned();
        match fault {
            Some(InjectedFault::Indeterminate { .. }) => {
                // Reported as failed, but it happened: the model takes it.
                prop_assert_eq!(model_step(&mut model, op), Outcome::Done, "{:?}", op);
            }
            Some(fault) => prop_assert!(fault.is_determinate(), "{:?}: {}", op, fault),
            None => {
                let got = match result {
                    Ok(outcome) => outcome,
                    Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
                    Err(object_store::Error::AlreadyExists { .. }) => Outcome::AlreadyExists,
                    Err(other) => return Err(TestCaseError::fail(format!("{op:?}: {other}"))),
                };
                prop_assert_eq!(got, model_step(&mut model, op), "{:?}", op);
            }
        }
        prop_assert_eq!(&contents(inner.as_ref()).await, &model, "after {:?}", op);
    }
    let counters = store.handle().counters();
    prop_assert_eq!(counters.calls.total(), ops.len() as u64);
    Ok(())
}

proptest! {
    #[test]
    fn faults_agree_with_a_key_value_model(
        seed in any::<u64>(),
        config in arb_config(),
        ops in proptest::collection::vec(arb_op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(seed, config, ops))?;
    }
}
