use proptest::prelude::*;

use super::*;

fn op(call: u64, ret: Option<u64>, op: CasOp, result: CasResult) -> Operation<CasOp, CasResult> {
    Operation {
        call,
        ret,
        op,
        result,
    }
}

fn cas(expected: Option<u64>, value: u64) -> CasOp {
    CasOp::Cas { expected, value }
}

fn check_case(name: &str, history: Vec<Operation<CasOp, CasResult>>, linearizable: bool) {
    let got = check(&CasRegister, &history);
    assert_eq!(got.is_ok(), linearizable, "{name}: {got:?}");
}

#[test]
fn known_histories() {
    use CasResult::*;
    check_case("empty", vec![], true);
    check_case(
        "one write",
        vec![op(0, Some(1), cas(None, 7), Committed)],
        true,
    );
    check_case(
        "sequential chain",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), cas(Some(0), 2), Committed),
            op(4, Some(5), CasOp::Head, Head(Some((1, 2)))),
        ],
        true,
    );
    check_case(
        "two winners for one seqno",
        vec![
            op(0, Some(5), cas(None, 1), Committed),
            op(1, Some(6), cas(None, 2), Committed),
        ],
        false,
    );
    check_case(
        "concurrent read may see either side of a write",
        vec![
            op(0, Some(10), cas(None, 1), Committed),
            op(1, Some(2), CasOp::Head, Head(None)),
        ],
        true,
    );
    check_case(
        "stale read after the write returned",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), CasOp::Head, Head(None)),
        ],
        false,
    );
    check_case(
        "mismatch must report the real head",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), cas(None, 2), Mismatch { current: Some(5) }),
        ],
        false,
    );
    check_case(
        "a rejection while the head was something else",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), cas(None, 2), Rejected),
        ],
        true,
    );
    check_case(
        "a rejection of the expected head",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), cas(Some(0), 2), Rejected),
        ],
        false,
    );
    check_case(
        "a concurrent rejection may come after the write it lost to",
        vec![
            op(0, Some(4), cas(None, 1), Committed),
            op(1, Some(3), cas(None, 2), Rejected),
        ],
        true,
    );
    check_case(
        "unknown outcome that took effect",
        vec![
            op(0, None, cas(None, 1), Committed),
            op(5, Some(6), CasOp::Head, Head(Some((0, 1)))),
        ],
        true,
    );
    check_case(
        "unknown outcome that never took effect",
        vec![
            op(0, None, cas(None, 1), Committed),
            op(5, Some(6), CasOp::Head, Head(None)),
        ],
        true,
    );
    check_case(
        "unknown outcome cannot take effect before its call",
        vec![
            op(0, Some(1), CasOp::Head, Head(Some((0, 1)))),
            op(5, None, cas(None, 1), Committed),
        ],
        false,
    );
    check_case(
        "a lost acknowledged write",
        vec![
            op(0, Some(1), cas(None, 1), Committed),
            op(2, Some(3), cas(Some(0), 2), Committed),
            op(4, Some(5), CasOp::Head, Head(Some((0, 1)))),
        ],
        false,
    );
}

#[test]
fn malformed_operations_are_rejected() {
    let history = vec![op(5, Some(1), CasOp::Head, CasResult::Head(None))];
    assert!(matches!(
        check(&CasRegister, &history),
        Err(CheckError::MalformedOperation { index: 0, .. })
    ));
}

#[test]
fn witness_orders_completed_operations_legally() {
    let history = vec![
        op(0, Some(4), cas(None, 1), CasResult::Committed),
        op(1, Some(3), cas(Some(0), 2), CasResult::Committed),
    ];
    // Both overlap; the only legal order is 0 then 1.
    assert_eq!(check(&CasRegister, &history).unwrap(), vec![0, 1]);
}

/// Simulates `writers` clients racing on an atomic log, each op taking effect at a
/// random instant inside its [call, ret] window: such histories are linearizable by
/// construction.
fn simulate(seed_ops: &[(u8, u8, bool)]) -> Vec<Operation<CasOp, CasResult>> {
    let mut head: Option<(u64, u64)> = None;
    let mut history = Vec::new();
    let mut clock = 0u64;
    for (k, (delay, len, is_read)) in seed_ops.iter().enumerate() {
        let call = clock + u64::from(*delay);
        let effect = call + u64::from(*len) / 2;
        let ret = call + u64::from(*len);
        clock = effect + 1;
        let (o, r) = if *is_read {
            (CasOp::Head, CasResult::Head(head))
        } else {
            let expected = head.map(|(s, _)| s);
            // Half the writers expect a stale head and must see a mismatch.
            if k % 2 == 0 || expected.is_none() {
                head = Some((expected.map_or(0, |e| e + 1), k as u64));
                (cas(expected, k as u64), CasResult::Committed)
            } else {
                (
                    cas(expected.and_then(|e| e.checked_sub(1)), k as u64),
                    CasResult::Mismatch { current: expected },
                )
            }
        };
        history.push(op(call, Some(ret.max(clock)), o, r));
    }
    history
}

proptest! {
    #[test]
    fn simulated_atomic_histories_are_linearizable(ops in proptest::collection::vec((0u8..3, 0u8..6, any::<bool>()), 0..40)) {
        let history = simulate(&ops);
        prop_assert!(check(&CasRegister, &history).is_ok());
    }

    #[test]
    fn duplicating_a_committed_write_is_caught(ops in proptest::collection::vec((0u8..3, 0u8..6, Just(false)), 1..20)) {
        let mut history = simulate(&ops);
        if let Some(first) = history.iter().position(|o| o.result == CasResult::Committed) {
            let mut dup = history[first].clone();
            let end = history.iter().filter_map(|o| o.ret).max().unwrap_or(0);
            dup.call = end + 1;
            dup.ret = Some(end + 2);
            if let CasOp::Cas { value, .. } = &mut dup.op { *value += 1_000_000; }
            history.push(dup);
            prop_assert!(check(&CasRegister, &history).is_err());
        }
    }
}
