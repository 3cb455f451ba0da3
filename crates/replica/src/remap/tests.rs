use proptest::prelude::*;

use super::*;

fn b(time: u64, offset_upper: u64) -> Binding {
    Binding {
        time: Timestamp::new(time),
        offset_upper,
    }
}

fn r(lower: u64, time: u64, offsets: Range<u64>) -> Round {
    Round {
        lower: Timestamp::new(lower),
        time: Timestamp::new(time),
        offsets,
    }
}

fn check(prior: Option<Binding>, pending: &[Binding], expected: Vec<Round>) {
    let plan = plan_resume(prior, pending).unwrap();
    assert_eq!(
        plan.rounds, expected,
        "prior {prior:?}, pending {pending:?}"
    );
}

#[test]
fn plan_resume_table() {
    check(None, &[], vec![]);
    check(None, &[b(0, 5)], vec![r(0, 0, 0..5)]);
    check(Some(b(3, 5)), &[], vec![]);
    check(
        Some(b(3, 5)),
        &[b(4, 9), b(9, 10)],
        vec![r(4, 4, 5..9), r(5, 9, 9..10)],
    );
    check(
        None,
        &[b(7, 2), b(8, 2)],
        vec![r(0, 7, 0..2), r(8, 8, 2..2)],
    );
}

#[test]
fn plan_resume_rejects_bindings_that_go_backwards() {
    assert!(matches!(
        plan_resume(Some(b(5, 5)), &[b(5, 6)]),
        Err(RemapError::OutOfOrder { .. })
    ));
    assert!(matches!(
        plan_resume(Some(b(5, 5)), &[b(6, 4)]),
        Err(RemapError::OutOfOrder { .. })
    ));
}

#[test]
fn mint_table() {
    assert_eq!(
        mint(None, Timestamp::new(0), Timestamp::new(0), 3, None),
        Some((b(0, 3), r(0, 0, 0..3)))
    );
    assert_eq!(
        mint(
            Some(&b(4, 3)),
            Timestamp::new(5),
            Timestamp::new(2),
            3,
            None
        ),
        Some((b(5, 6), r(5, 5, 3..6)))
    );
    assert_eq!(
        mint(
            Some(&b(4, 3)),
            Timestamp::new(5),
            Timestamp::new(9),
            3,
            Some(4)
        ),
        Some((b(9, 4), r(5, 9, 3..4)))
    );
    assert_eq!(
        mint(
            Some(&b(4, 4)),
            Timestamp::new(5),
            Timestamp::new(9),
            3,
            Some(4)
        ),
        None
    );
    // A remap upper behind the last binding never yields a time at or before it.
    assert_eq!(
        mint(
            Some(&b(4, 3)),
            Timestamp::new(0),
            Timestamp::new(0),
            1,
            None
        )
        .map(|(b, _)| b),
        Some(b(5, 4))
    );
}

#[test]
fn decode_round_trips_and_rejects_garbage() {
    let bindings = [b(0, 2), b(3, 4), b(4, 9)];
    let mut updates = Vec::new();
    let mut previous = None;
    for next in &bindings {
        updates.extend(binding_updates(previous, next));
        previous = Some(next);
    }
    updates.reverse();
    assert_eq!(decode_bindings(&updates).unwrap(), bindings.to_vec());
    let garbage = vec![(
        Row::pack(&[Datum::String("x".into())]),
        Timestamp::new(1),
        1,
    )];
    assert!(matches!(
        decode_bindings(&garbage),
        Err(RemapError::BadRow { .. })
    ));
    let two = vec![
        (offset_row(1), Timestamp::new(1), 1),
        (offset_row(2), Timestamp::new(1), 1),
    ];
    assert!(matches!(
        decode_bindings(&two),
        Err(RemapError::Ambiguous { .. })
    ));
}

/// Model: a run mints bindings, writes the data of a prefix of them (a crash cuts the
/// rest), and restarts from the remap collection and the data upper. Every offset must
/// be written exactly once, at the time its binding says.
fn run_with_crash(steps: &[(u64, u64)], written: usize) -> Vec<(u64, Timestamp)> {
    let mut bindings = Vec::new();
    let mut last: Option<Binding> = None;
    let mut remap_upper = Timestamp::new(0);
    for (now, step) in steps {
        let (next, _) = mint(
            last.as_ref(),
            remap_upper,
            Timestamp::new(*now),
            *step,
            None,
        )
        .unwrap();
        remap_upper = Timestamp::new(next.time.as_millis() + 1);
        bindings.push(next);
        last = Some(next);
    }
    let written = written.min(bindings.len());
    let data_upper = written
        .checked_sub(1)
        .map_or(0, |i| bindings[i].time.as_millis() + 1);
    let mut out: Vec<(u64, Timestamp)> = Vec::new();
    let mut previous = 0;
    for binding in &bindings[..written] {
        out.extend((previous..binding.offset_upper).map(|o| (o, binding.time)));
        previous = binding.offset_upper;
    }
    // Restart: prior is the binding in effect at data_upper - 1, pending the rest.
    let prior = bindings
        .iter()
        .rfind(|b| b.time.as_millis() < data_upper)
        .copied();
    let pending: Vec<Binding> = bindings
        .iter()
        .filter(|b| b.time.as_millis() >= data_upper)
        .copied()
        .collect();
    let plan = plan_resume(prior, &pending).unwrap();
    for round in plan.rounds {
        assert!(round.lower.as_millis() <= data_upper.max(round.lower.as_millis()));
        out.extend(round.offsets.map(|o| (o, round.time)));
    }
    out
}

proptest! {
    #[test]
    fn resume_writes_every_offset_exactly_once(
        steps in proptest::collection::vec((0u64..50, 0u64..5), 0..20),
        written in 0usize..25,
    ) {
        let clean = run_with_crash(&steps, usize::MAX);
        let crashed = run_with_crash(&steps, written);
        prop_assert_eq!(&crashed, &clean);
        let offsets: Vec<u64> = clean.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (0..offsets.len() as u64).collect();
        prop_assert_eq!(offsets, expected);
    }
}
