//! Table-driven tests of the frontier rules for read holds, propagation, drops,
//! finalization and objects on instances: each case is a short script of inputs, the
//! effects (or error) of its last input, and the sinces afterwards.

mod frontiers_support;

use frontiers_support::*;
use strata_controller_api::{ReadPolicy, Timestamp};

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
