//! Table-driven tests of the frontier rules: each case is a short script of inputs, the
//! effects (or error) of its last input, and the sinces afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, ReadPolicy, StorageError, Timestamp,
};
use strata_controller_core::frontiers::{
    CollectionConfig, CollectionFrontiers, Effect, FrontierState,
};

type E = Effect<Timestamp>;
type Config = CollectionConfig<Timestamp>;

fn f(times: &[u64]) -> Antichain<Timestamp> {
    times.iter().copied().map(Timestamp::new).collect()
}

fn id(n: u64) -> GlobalId {
    GlobalId::User(n)
}

const I: InstanceId = InstanceId(1);

/// One input to the state.
#[derive(Clone)]
enum Op {
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
use Op::*;

/// A table at since 0, upper 0, with no policy.
fn table() -> Config {
    CollectionConfig::new(f(&[0]), f(&[0]))
}

fn coll(since: u64, upper: u64) -> Config {
    CollectionConfig::new(f(&[since]), f(&[upper]))
}

fn step_back() -> ReadPolicy<Timestamp> {
    ReadPolicy::step_back()
}

/// An ingestion on instance `I`: both policies step back, holding `deps`.
fn ingestion(deps: &[u64]) -> Config {
    table()
        .with_dependencies(deps.iter().copied().map(id).collect())
        .with_read_policy(step_back())
        .with_hold_policy(step_back())
        .on_instance(I)
}

fn apply(state: &mut FrontierState<Timestamp>, op: Op) -> Result<Vec<E>, StorageError<Timestamp>> {
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
enum Last {
    Effects(Vec<E>),
    Error(&'static str),
}

/// Runs `ops`; every input but the last must succeed. Checks the last input's result,
/// then each `(id, since)` (`None`: the id is forgotten).
fn check(ops: Vec<Op>, last: Last, sinces: &[(u64, Option<&[u64]>)]) {
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

fn downgrade(n: u64, since: &[u64]) -> E {
    E::DowngradeSince {
        id: id(n),
        since: f(since),
    }
}

fn record(n: u64, since: &[u64], upper: &[u64]) -> E {
    E::RecordFrontiers {
        id: id(n),
        since: f(since),
        upper: f(upper),
    }
}

fn compact(n: u64, frontier: &[u64]) -> E {
    E::AllowCompaction {
        instance: I,
        id: id(n),
        frontier: f(frontier),
    }
}

fn finalize(n: u64) -> E {
    E::Finalize { id: id(n) }
}

fn ok(effects: Vec<E>) -> Last {
    Last::Effects(effects)
}

#[test]
fn registration() {
    check(
        vec![Register(1, table())],
        ok(vec![record(1, &[0], &[0])]),
        &[(1, Some(&[0]))],
    );
    // The policy applies at once.
    let lagging = coll(0, 10).with_read_policy(step_back());
    check(
        vec![Register(1, lagging)],
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // The since joins the dependencies' sinces.
    let dependent = coll(2, 2).with_dependencies(vec![id(1)]);
    check(
        vec![Register(1, coll(5, 5)), Register(2, dependent.clone())],
        ok(vec![downgrade(2, &[5]), record(2, &[5], &[2])]),
        &[(1, Some(&[5])), (2, Some(&[5]))],
    );
    // A since beyond the dependency's stays.
    check(
        vec![Register(1, coll(1, 5)), Register(2, dependent)],
        ok(vec![record(2, &[2], &[2])]),
        &[(1, Some(&[1])), (2, Some(&[2]))],
    );
    // A shard-less entry gets no DowngradeSince.
    let export = coll(0, 10).with_read_policy(step_back()).without_shard();
    check(
        vec![Register(1, export)],
        ok(vec![record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // An empty since is allowed.
    check(
        vec![Register(1, CollectionConfig::new(f(&[]), f(&[3])))],
        ok(vec![record(1, &[], &[3])]),
        &[(1, Some(&[]))],
    );
}

#[test]
fn registration_errors_change_nothing() {
    let on = |deps: Vec<GlobalId>| table().with_dependencies(deps);
    check(
        vec![Register(1, table()), Register(1, table())],
        Last::Error("collection identifier reused"),
        &[(1, Some(&[0]))],
    );
    check(
        vec![Register(2, on(vec![id(1)]))],
        Last::Error("collection identifier is not present: u1"),
        &[(2, None)],
    );
    check(
        vec![Register(1, table()), Drop(1), Register(2, on(vec![id(1)]))],
        Last::Error("collection identifier is not present: u1"),
        &[(2, None)],
    );
    // A dropped but held id cannot be registered again.
    check(
        vec![
            Register(1, table()),
            Acquire(1),
            Drop(1),
            Register(1, table()),
        ],
        Last::Error("collection identifier reused"),
        &[(1, Some(&[0]))],
    );
    // A finalized id can.
    check(
        vec![Register(1, table()), Drop(1), Register(1, coll(4, 4))],
        ok(vec![record(1, &[4], &[4])]),
        &[(1, Some(&[4]))],
    );
}

#[test]
fn upper_reports() {
    let lagging = || table().with_read_policy(step_back());
    check(
        vec![Register(1, lagging()), Upper(1, &[10])],
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // Regressions and repeats are ignored.
    check(
        vec![Register(1, lagging()), Upper(1, &[10]), Upper(1, &[5])],
        ok(vec![]),
        &[(1, Some(&[9]))],
    );
    check(
        vec![Register(1, lagging()), Upper(1, &[10]), Upper(1, &[10])],
        ok(vec![]),
        &[(1, Some(&[9]))],
    );
    // Unknown and dropped ids are ignored quietly.
    check(vec![Upper(7, &[10])], ok(vec![]), &[(7, None)]);
    check(
        vec![Register(1, lagging()), Acquire(1), Drop(1), Upper(1, &[10])],
        ok(vec![]),
        &[(1, Some(&[0]))],
    );
    // Without a policy only the upper moves.
    check(
        vec![Register(1, table()), Upper(1, &[10])],
        ok(vec![record(1, &[0], &[10])]),
        &[(1, Some(&[0]))],
    );
    // A lag policy, rounded to its granularity.
    let lag = table().with_read_policy(ReadPolicy::lag_writes_by(
        Timestamp::new(10),
        Timestamp::new(5),
    ));
    check(
        vec![Register(1, lag), Upper(1, &[37])],
        ok(vec![downgrade(1, &[25]), record(1, &[25], &[37])]),
        &[(1, Some(&[25]))],
    );
    // A closed upper gives no advice: the since stays.
    check(
        vec![Register(1, lagging()), Upper(1, &[10]), Upper(1, &[])],
        ok(vec![record(1, &[9], &[])]),
        &[(1, Some(&[9]))],
    );
}

#[test]
fn read_policies() {
    check(
        vec![Register(1, coll(0, 10)), Policy(1, step_back())],
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // Advice behind the implied capability changes nothing, until the upper catches up.
    let valid_from = |t| ReadPolicy::ValidFrom(f(&[t]));
    check(
        vec![
            Register(1, coll(0, 5)),
            Policy(1, valid_from(8)),
            Policy(1, step_back()),
        ],
        ok(vec![]),
        &[(1, Some(&[8]))],
    );
    check(
        vec![
            Register(1, coll(0, 5)),
            Policy(1, valid_from(8)),
            Policy(1, step_back()),
            Upper(1, &[20]),
        ],
        ok(vec![downgrade(1, &[19]), record(1, &[19], &[20])]),
        &[(1, Some(&[19]))],
    );
    // ValidFrom([]) closes reads without dropping.
    check(
        vec![
            Register(1, table()),
            Policy(1, ReadPolicy::ValidFrom(f(&[]))),
        ],
        ok(vec![downgrade(1, &[]), record(1, &[], &[0])]),
        &[(1, Some(&[]))],
    );
    check(
        vec![Policy(1, step_back())],
        Last::Error("collection identifier is not present: u1"),
        &[],
    );
    check(
        vec![
            Register(1, table()),
            Acquire(1),
            Drop(1),
            Policy(1, step_back()),
        ],
        Last::Error("collection identifier is not present: u1"),
        &[(1, Some(&[0]))],
    );
}

#[test]
fn read_holds() {
    let lagging = || table().with_read_policy(step_back());
    // A hold keeps the since; releasing it lets the since catch up.
    check(
        vec![Register(1, lagging()), Acquire(1), Upper(1, &[10])],
        ok(vec![record(1, &[0], &[10])]),
        &[(1, Some(&[0]))],
    );
    check(
        vec![
            Register(1, lagging()),
            Acquire(1),
            Upper(1, &[10]),
            Changes(vec![(1, vec![(0, -1)])]),
        ],
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // Downgrading a hold moves the since only as far as the hold.
    check(
        vec![
            Register(1, lagging()),
            Acquire(1),
            Upper(1, &[10]),
            Changes(vec![(1, vec![(4, 1), (0, -1)])]),
        ],
        ok(vec![downgrade(1, &[4]), record(1, &[4], &[10])]),
        &[(1, Some(&[4]))],
    );
    // Two holds at the same time need two releases.
    check(
        vec![
            Register(1, lagging()),
            Acquire(1),
            Acquire(1),
            Upper(1, &[10]),
            Changes(vec![(1, vec![(0, -1)])]),
        ],
        ok(vec![]),
        &[(1, Some(&[0]))],
    );
    // A hold at a later time.
    check(
        vec![Register(1, lagging()), AcquireAt(1, 5), Upper(1, &[10])],
        ok(vec![downgrade(1, &[5]), record(1, &[5], &[10])]),
        &[(1, Some(&[5]))],
    );
}

#[test]
fn read_hold_errors_change_nothing() {
    let at_5 = || coll(5, 10);
    check(
        vec![Register(1, at_5()), AcquireAt(1, 4)],
        Last::Error("read of u1 before its since"),
        &[(1, Some(&[5]))],
    );
    check(
        vec![Acquire(1)],
        Last::Error("collection identifier is not present: u1"),
        &[],
    );
    check(
        vec![Register(1, at_5()), Acquire(1), Drop(1), Acquire(1)],
        Last::Error("collection identifier is not present: u1"),
        &[(1, Some(&[5]))],
    );
    // A release without a hold, even one that matches the implied capability.
    check(
        vec![Register(1, at_5()), Changes(vec![(1, vec![(5, -1)])])],
        Last::Error("invalid usage"),
        &[(1, Some(&[5]))],
    );
    // A new hold before the since.
    check(
        vec![Register(1, at_5()), Changes(vec![(1, vec![(3, 1)])])],
        Last::Error("read of u1 before its since"),
        &[(1, Some(&[5]))],
    );
    // One bad batch refuses the whole call.
    check(
        vec![
            Register(1, at_5()),
            Register(2, at_5()),
            Acquire(1),
            Changes(vec![(1, vec![(5, -1)]), (2, vec![(5, -1)])]),
        ],
        Last::Error("invalid usage"),
        &[(1, Some(&[5]))],
    );
    check(
        vec![Changes(vec![(9, vec![(0, -1)])])],
        Last::Error("collection identifier is not present: u9"),
        &[],
    );
    // Counts that could overflow are refused.
    check(
        vec![Register(1, at_5()), Changes(vec![(1, vec![(6, i64::MAX)])])],
        Last::Error("invalid usage"),
        &[(1, Some(&[5]))],
    );
    check(
        vec![
            Register(1, at_5()),
            Changes(vec![(1, vec![(6, i64::MAX / 4)])]),
            Changes(vec![(1, vec![(6, 1)])]),
        ],
        Last::Error("invalid usage"),
        &[(1, Some(&[5]))],
    );
    // An empty batch for an unknown id is fine.
    check(
        vec![Changes(vec![(9, vec![(0, 1), (0, -1)])])],
        ok(vec![]),
        &[],
    );
}

#[test]
fn holds_propagate_to_dependencies() {
    let lagging = |deps: &[u64]| {
        table()
            .with_read_policy(step_back())
            .with_dependencies(deps.iter().copied().map(id).collect())
    };
    // 1 <- 2 <- 3: a hold on 3 holds 2 and 1.
    let chain = || {
        vec![
            Register(1, lagging(&[])),
            Register(2, lagging(&[1])),
            Register(3, lagging(&[2])),
            Acquire(3),
        ]
    };
    let mut ops = chain();
    ops.extend([Upper(1, &[10]), Upper(2, &[10]), Upper(3, &[10])]);
    check(
        ops.clone(),
        ok(vec![record(3, &[0], &[10])]),
        &[(1, Some(&[0])), (2, Some(&[0])), (3, Some(&[0]))],
    );
    // Releasing it moves all three, each reported once, ascending.
    ops.push(Changes(vec![(3, vec![(0, -1)])]));
    check(
        ops,
        ok(vec![
            downgrade(1, &[9]),
            record(1, &[9], &[10]),
            downgrade(2, &[9]),
            record(2, &[9], &[10]),
            downgrade(3, &[9]),
            record(3, &[9], &[10]),
        ]),
        &[(1, Some(&[9])), (2, Some(&[9])), (3, Some(&[9]))],
    );
    // A dependency does not hold its dependent.
    let mut ops = chain();
    ops.extend([
        Upper(3, &[10]),
        Changes(vec![(3, vec![(0, -1)])]),
        Acquire(1),
        Upper(1, &[20]),
        Upper(2, &[20]),
        Upper(3, &[20]),
    ]);
    check(
        ops,
        ok(vec![
            downgrade(2, &[19]),
            record(2, &[19], &[20]),
            downgrade(3, &[19]),
            record(3, &[19], &[20]),
        ]),
        &[(1, Some(&[0])), (2, Some(&[19])), (3, Some(&[19]))],
    );
    // A dependency with a smaller since keeps it; only the dependent's hold moves.
    let held = || {
        vec![
            Register(1, lagging(&[])),
            Register(2, lagging(&[1])),
            Upper(2, &[10]),
            Upper(1, &[5]),
        ]
    };
    check(
        held(),
        ok(vec![downgrade(1, &[4]), record(1, &[4], &[5])]),
        &[(1, Some(&[4])), (2, Some(&[9]))],
    );
}

#[test]
fn drops_and_finalization() {
    check(
        vec![Register(1, table()), Drop(1)],
        ok(vec![downgrade(1, &[]), record(1, &[], &[0]), finalize(1)]),
        &[(1, None)],
    );
    // An outstanding hold delays finalization until it is released.
    check(
        vec![Register(1, table()), Acquire(1), Drop(1)],
        ok(vec![]),
        &[(1, Some(&[0]))],
    );
    check(
        vec![
            Register(1, table()),
            Acquire(1),
            Drop(1),
            Changes(vec![(1, vec![(0, -1)])]),
        ],
        ok(vec![downgrade(1, &[]), record(1, &[], &[0]), finalize(1)]),
        &[(1, None)],
    );
    // A dropped dependency lives while a dependent holds it.
    let dependent = || table().with_dependencies(vec![id(1)]);
    check(
        vec![Register(1, table()), Register(2, dependent()), Drop(1)],
        ok(vec![]),
        &[(1, Some(&[0]))],
    );
    check(
        vec![
            Register(1, table()),
            Register(2, dependent()),
            Drop(1),
            Drop(2),
        ],
        ok(vec![
            downgrade(1, &[]),
            record(1, &[], &[0]),
            finalize(1),
            downgrade(2, &[]),
            record(2, &[], &[0]),
            finalize(2),
        ]),
        &[(1, None), (2, None)],
    );
    // Dropping twice: the validated call refuses, the unvalidated one ignores it.
    check(
        vec![Register(1, table()), Acquire(1), Drop(1), Drop(1)],
        Last::Error("collection identifier is not present: u1"),
        &[(1, Some(&[0]))],
    );
    check(
        vec![
            Register(1, table()),
            Acquire(1),
            Drop(1),
            DropUnvalidated(1),
        ],
        ok(vec![]),
        &[(1, Some(&[0]))],
    );
    check(vec![DropUnvalidated(1)], ok(vec![]), &[]);
    // A shard-less entry is finalized without DowngradeSince.
    check(
        vec![Register(1, table().without_shard()), Drop(1)],
        ok(vec![record(1, &[], &[0]), finalize(1)]),
        &[(1, None)],
    );
}

#[test]
fn objects_on_instances() {
    // Since changes reach the instance as AllowCompaction.
    check(
        vec![
            Register(1, table()),
            Register(2, ingestion(&[1])),
            Upper(2, &[10]),
        ],
        ok(vec![
            downgrade(2, &[9]),
            compact(2, &[9]),
            record(2, &[9], &[10]),
        ]),
        &[(1, Some(&[0])), (2, Some(&[9]))],
    );
    // The hold policy keeps the since a step behind, whatever the read policy says.
    let lag_zero = ReadPolicy::lag_writes_by(Timestamp::new(0), Timestamp::new(0));
    check(
        vec![
            Register(1, table()),
            Register(2, ingestion(&[1])),
            Upper(2, &[10]),
            Policy(2, lag_zero),
        ],
        ok(vec![]),
        &[(2, Some(&[9]))],
    );
    // A drop sends AllowCompaction([]) at once, but finalization waits for the replicas.
    let dropped = || {
        vec![
            Register(1, table()),
            Register(2, ingestion(&[1])),
            Upper(2, &[10]),
            Acquire(2),
            Drop(2),
        ]
    };
    check(
        dropped(),
        ok(vec![compact(2, &[])]),
        &[(1, Some(&[0])), (2, Some(&[9]))],
    );
    let mut ops = dropped();
    ops.push(Changes(vec![(2, vec![(9, -1)])]));
    check(
        ops.clone(),
        ok(vec![downgrade(2, &[]), record(2, &[], &[10])]),
        &[(1, Some(&[0])), (2, Some(&[]))],
    );
    ops.push(Confirm(2));
    check(ops, ok(vec![finalize(2)]), &[(2, None)]);
    // A confirmation may come before the last hold goes.
    let mut ops = dropped();
    ops.extend([Confirm(2), Changes(vec![(2, vec![(9, -1)])])]);
    check(
        ops,
        ok(vec![downgrade(2, &[]), record(2, &[], &[10]), finalize(2)]),
        &[(1, Some(&[0])), (2, None)],
    );
    // Confirmations for unknown or live ids are ignored.
    check(
        vec![Register(2, ingestion(&[])), Confirm(2), Confirm(5)],
        ok(vec![]),
        &[(2, Some(&[0]))],
    );
}

#[test]
fn queries() {
    let mut state = FrontierState::<Timestamp>::new();
    state
        .register(id(1), coll(3, 10).with_read_policy(step_back()))
        .unwrap();
    state
        .register(id(2), table().on_instance(I).with_dependencies(vec![id(1)]))
        .unwrap();
    assert_eq!(
        state.frontiers(id(1)).unwrap(),
        CollectionFrontiers {
            id: id(1),
            since: f(&[9]),
            implied_capability: f(&[9]),
            upper: f(&[10])
        }
    );
    assert!(state.collections_frontiers(&[id(1), id(9)]).is_err());
    assert_eq!(
        state.collections_frontiers(&[id(2), id(1)]).unwrap().len(),
        2
    );
    assert!(state.check_readable(id(1), &f(&[9])).is_ok());
    assert!(matches!(
        state.check_readable(id(1), &f(&[8])),
        Err(StorageError::ReadBeforeSince { .. })
    ));
    assert_eq!(state.dependencies(id(2)), Some(&[id(1)][..]));
    assert_eq!(state.instance(id(2)), Some(I));
    assert_eq!(state.ids(), vec![id(1), id(2)]);
    assert_eq!(state.read_policy(id(1)), Some(&step_back()));
    state.acquire_read_holds(&[id(1), id(1)]).unwrap();
    assert_eq!(state.read_holds(id(1)), Some(vec![(Timestamp::new(9), 2)]));
    state.drop_collections(&[id(2)]).unwrap();
    assert!(state.is_dropped(id(2)) && state.contains(id(2)) && state.len() == 2);
}

#[test]
fn propagation_does_not_rely_on_id_order() {
    let lagging = |deps: &[u64]| {
        table()
            .with_read_policy(step_back())
            .with_dependencies(deps.iter().copied().map(id).collect())
    };
    // 9 <- 2 <- 5: the dependent 2 has a smaller id than its dependency 9, so 9 is
    // applied before the change from 2 reaches it, and again after; each id is still
    // reported once, with its final since.
    let ops = || {
        vec![
            Register(9, lagging(&[])),
            Register(2, lagging(&[9])),
            Register(5, lagging(&[2])),
        ]
    };
    let mut all = ops();
    all.push(Uppers(vec![(9, &[10]), (2, &[10]), (5, &[10])]));
    check(
        all,
        ok(vec![
            downgrade(2, &[9]),
            record(2, &[9], &[10]),
            downgrade(5, &[9]),
            record(5, &[9], &[10]),
            downgrade(9, &[9]),
            record(9, &[9], &[10]),
        ]),
        &[(2, Some(&[9])), (5, Some(&[9])), (9, Some(&[9]))],
    );
    // The dependency follows only as far as its slowest dependent.
    let mut some = ops();
    some.push(Uppers(vec![(9, &[10]), (2, &[10]), (5, &[4])]));
    check(
        some,
        ok(vec![
            downgrade(2, &[3]),
            record(2, &[3], &[10]),
            downgrade(5, &[3]),
            record(5, &[3], &[4]),
            downgrade(9, &[3]),
            record(9, &[3], &[10]),
        ]),
        &[(2, Some(&[3])), (5, Some(&[3])), (9, Some(&[3]))],
    );
}

#[test]
fn changing_dependencies() {
    let lagging = || table().with_read_policy(step_back());
    // 3 holds 1 at 0; moving it to 2 (held at 0 by a reader) releases 1 and holds 2.
    let setup = || {
        vec![
            Register(1, lagging()),
            Register(2, lagging()),
            Acquire(2),
            Register(3, table().with_dependencies(vec![id(1)])),
            Upper(1, &[10]),
            Upper(2, &[10]),
        ]
    };
    let mut ops = setup();
    ops.push(Depend(3, &[2]));
    check(
        ops,
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9])), (2, Some(&[0]))],
    );
    // Unchanged dependencies change nothing; none at all releases every hold.
    let mut ops = setup();
    ops.push(Depend(3, &[1]));
    check(ops, ok(vec![]), &[(1, Some(&[0]))]);
    let mut ops = setup();
    ops.push(Depend(3, &[]));
    check(
        ops,
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[10])]),
        &[(1, Some(&[9]))],
    );
    // A dependency whose since is beyond ours cannot be held.
    let mut ops = setup();
    ops.extend([Depend(3, &[]), Depend(3, &[1])]);
    check(
        ops,
        Last::Error("read of u1 before its since"),
        &[(1, Some(&[9])), (3, Some(&[0]))],
    );
    // Cycles, unknown and dropped ids are refused.
    let mut ops = setup();
    ops.push(Depend(1, &[3]));
    check(ops, Last::Error("invalid usage"), &[(1, Some(&[0]))]);
    let mut ops = setup();
    ops.push(Depend(3, &[3]));
    check(ops, Last::Error("invalid usage"), &[(3, Some(&[0]))]);
    let mut ops = setup();
    ops.push(Depend(3, &[7]));
    check(
        ops,
        Last::Error("collection identifier is not present: u7"),
        &[(1, Some(&[0]))],
    );
    let mut ops = setup();
    ops.extend([Drop(2), Depend(3, &[2])]);
    check(
        ops,
        Last::Error("collection identifier is not present: u2"),
        &[(1, Some(&[0]))],
    );
}
