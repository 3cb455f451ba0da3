//! Table-driven tests of the frontier rules for registration, upper reports, read
//! policies and dependencies: each case is a short script of inputs, the effects (or
//! error) of its last input, and the sinces afterwards.

mod frontiers_support;

use frontiers_support::*;
use std::collections::BTreeMap;

use strata_controller_api::{ChangeBatch, GlobalId, ReadPolicy, StorageError, Timestamp};
use strata_controller_core::frontiers::{
    CollectionConfig, CollectionFrontiers, Effect, FrontierState,
};

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
    // Reports in one batch derive the since once, from the last open upper: one that
    // closes after advancing still leaves the since its advance allowed.
    check(
        vec![
            Register(1, lagging()),
            Uppers(vec![(1, &[4]), (1, &[10]), (1, &[])]),
        ],
        ok(vec![downgrade(1, &[9]), record(1, &[9], &[])]),
        &[(1, Some(&[9]))],
    );
    // But a sink (shard-less) whose upper closes is complete: it releases its input,
    // and its instance is told to stop it.
    let sink = coll(5, 5)
        .with_dependencies(vec![id(1)])
        .with_read_policy(step_back())
        .with_hold_policy(step_back())
        .without_shard()
        .on_instance(I);
    check(
        vec![
            Register(1, lagging()),
            Register(2, sink),
            Upper(1, &[10]),
            Upper(2, &[]),
        ],
        ok(vec![
            downgrade(1, &[9]),
            record(1, &[9], &[10]),
            compact(2, &[]),
            record(2, &[], &[]),
        ]),
        &[(1, Some(&[9])), (2, Some(&[]))],
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

/// A dropped collection is readable only under the holds it already had: new holds and
/// live-only checks refuse it, snapshots under a hold do not, and once the last hold is
/// released it is finalized and unknown to both.
#[test]
fn a_dropped_collection_is_readable_only_under_existing_holds() {
    let mut state = FrontierState::<Timestamp>::new();
    state
        .register(id(1), coll(3, 10).with_read_policy(step_back()))
        .unwrap();
    let held = state.acquire_read_holds(&[id(1)]).unwrap();
    assert_eq!(held, vec![(id(1), f(&[9]))]);
    state.drop_collections(&[id(1)]).unwrap();
    let table: [(u64, bool, bool); 3] = [
        // (as_of, check_readable ok, check_held_readable ok)
        (9, false, true),
        (12, false, true),
        (8, false, false),
    ];
    for (as_of, live, held_ok) in table {
        assert_eq!(
            state.check_readable(id(1), &f(&[as_of])).is_ok(),
            live,
            "{as_of}"
        );
        assert_eq!(
            state.check_held_readable(id(1), &f(&[as_of])).is_ok(),
            held_ok,
            "{as_of}"
        );
    }
    assert!(state.acquire_read_holds(&[id(1)]).is_err(), "no new holds");
    let release = BTreeMap::from([(id(1), ChangeBatch::new_from(Timestamp::new(9), -1))]);
    let effects = state.update_read_capabilities(release).unwrap();
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Finalize { id: i } if *i == id(1))),
        "{effects:?}"
    );
    assert!(matches!(
        state.check_held_readable(id(1), &f(&[9])),
        Err(StorageError::IdentifierMissing(_))
    ));
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
