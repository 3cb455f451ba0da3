//! Shared helpers for the frontier rule tests: a script of inputs, and a `check` that
//! runs it against a fresh `FrontierState`.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, ReadPolicy, StorageError, Timestamp,
};
use strata_controller_core::frontiers::{CollectionConfig, Effect, FrontierState};

pub type E = Effect<Timestamp>;
pub type Config = CollectionConfig<Timestamp>;

pub fn f(times: &[u64]) -> Antichain<Timestamp> {
    times.iter().copied().map(Timestamp::new).collect()
}

pub fn id(n: u64) -> GlobalId {
    GlobalId::User(n)
}

pub const I: InstanceId = InstanceId(1);

/// One input to the state.
#[derive(Clone)]
pub enum Op {
    Register(u64, Config),
    Upper(u64, &'static [u64]),
    Uppers(Vec<(u64, &'static [u64])>),
    Policy(u64, ReadPolicy<Timestamp>),
    Acquire(u64),
    AcquireAt(u64, u64),
    Changes(Vec<(u64, Vec<(u64, i64)>)>),
    Drop(u64),
    DropUnvalidated(u64),
    Confirm(u64),
    Depend(u64, &'static [u64]),
}
pub use Op::*;

/// A table at since 0, upper 0, with no policy.
pub fn table() -> Config {
    CollectionConfig::new(f(&[0]), f(&[0]))
}

pub fn coll(since: u64, upper: u64) -> Config {
    CollectionConfig::new(f(&[since]), f(&[upper]))
}

pub fn step_back() -> ReadPolicy<Timestamp> {
    ReadPolicy::step_back()
}

/// An ingestion on instance `I`: both policies step back, holding `deps`.
pub fn ingestion(deps: &[u64]) -> Config {
    table()
        .with_dependencies(deps.iter().copied().map(id).collect())
        .with_read_policy(step_back())
        .with_hold_policy(step_back())
        .on_instance(I)
}

pub fn apply(
    state: &mut FrontierState<Timestamp>,
    op: Op,
) -> Result<Vec<E>, StorageError<Timestamp>> {
    match op {
        Register(n, config) => state.register(id(n), config),
        Upper(n, upper) => Ok(state.update_write_frontiers(&[(id(n), f(upper))])),
        Uppers(reports) => {
            let reports: Vec<_> = reports.into_iter().map(|(n, u)| (id(n), f(u))).collect();
            Ok(state.update_write_frontiers(&reports))
        }
        Policy(n, policy) => state.set_read_policies(vec![(id(n), policy)]),
        Acquire(n) => state.acquire_read_holds(&[id(n)]).map(|_| vec![]),
        AcquireAt(n, t) => state.acquire_read_hold_at(id(n), &f(&[t])).map(|()| vec![]),
        Changes(changes) => {
            let mut updates = BTreeMap::new();
            for (n, diffs) in changes {
                let batch: &mut ChangeBatch<Timestamp> = updates.entry(id(n)).or_default();
                batch.extend(diffs.into_iter().map(|(t, d)| (Timestamp::new(t), d)));
            }
            state.update_read_capabilities(updates)
        }
        Drop(n) => state.drop_collections(&[id(n)]),
        DropUnvalidated(n) => Ok(state.drop_collections_unvalidated(&[id(n)])),
        Confirm(n) => Ok(state.confirm_dropped(&[id(n)])),
        Depend(n, deps) => state.set_dependencies(id(n), deps.iter().copied().map(id).collect()),
    }
}

/// What the last input returns: its effects, or the start of its error message.
pub enum Last {
    Effects(Vec<E>),
    Error(&'static str),
}

/// Runs `ops`; every input but the last must succeed. Checks the last input's result,
/// then each `(id, since)` (`None`: the id is forgotten).
pub fn check(ops: Vec<Op>, last: Last, sinces: &[(u64, Option<&[u64]>)]) {
    let mut state = FrontierState::new();
    let n = ops.len();
    let mut result = Ok(vec![]);
    for (i, op) in ops.into_iter().enumerate() {
        result = apply(&mut state, op);
        if i + 1 < n {
            assert!(result.is_ok(), "setup step {i} failed: {result:?}");
        }
    }
    match (last, result) {
        (Last::Effects(expected), Ok(got)) => assert_eq!(got, expected),
        (Last::Error(expected), Err(got)) => {
            assert!(
                got.to_string().starts_with(expected),
                "{got} does not start with {expected}"
            )
        }
        (Last::Effects(expected), Err(got)) => panic!("expected {expected:?}, got error {got}"),
        (Last::Error(expected), Ok(got)) => panic!("expected error {expected}, got {got:?}"),
    }
    for (n, since) in sinces {
        let got = state.since(id(*n)).map(|s| s.to_owned());
        assert_eq!(got, since.map(f), "since of {}", id(*n));
    }
}

pub fn downgrade(n: u64, since: &[u64]) -> E {
    E::DowngradeSince {
        id: id(n),
        since: f(since),
    }
}

pub fn record(n: u64, since: &[u64], upper: &[u64]) -> E {
    E::RecordFrontiers {
        id: id(n),
        since: f(since),
        upper: f(upper),
    }
}

pub fn compact(n: u64, frontier: &[u64]) -> E {
    E::AllowCompaction {
        instance: I,
        id: id(n),
        frontier: f(frontier),
    }
}

pub fn finalize(n: u64) -> E {
    E::Finalize { id: id(n) }
}

pub fn ok(effects: Vec<E>) -> Last {
    Last::Effects(effects)
}
