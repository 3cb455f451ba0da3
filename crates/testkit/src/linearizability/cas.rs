//! The sequential specification of a compare-and-set log, as persist's consensus offers
//! it: each successful compare-and-set appends the next sequence number.

use super::SequentialSpec;

/// An operation on a compare-and-set log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CasOp {
    /// Append `value` if the head's sequence number is `expected` (`None`: the log is
    /// empty). The new head has sequence number `expected + 1` (or 0).
    Cas {
        /// The head the caller expects.
        expected: Option<u64>,
        /// The value to append; tests make values unique to tell writes apart.
        value: u64,
    },
    /// Read the head.
    Head,
}

/// What an operation on a compare-and-set log returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CasResult {
    /// The append happened.
    Committed,
    /// The head was not `expected`; it was `current`.
    Mismatch {
        /// The head's sequence number the caller was told about.
        current: Option<u64>,
    },
    /// The head was not `expected`, and the caller was not told what it was (as with
    /// persist's consensus, which answers only "mismatch").
    Rejected,
    /// The head: its sequence number and value, or `None` for an empty log.
    Head(Option<(u64, u64)>),
}

/// The specification: the state is the head (sequence number and value).
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

impl SequentialSpec for CasRegister {
    type State = Option<(u64, u64)>;
    type Op = CasOp;
    type Ret = CasResult;

    fn init(&self) -> Self::State {
        None
    }

    fn apply(&self, state: &Self::State, op: &CasOp, ret: &CasResult) -> Option<Self::State> {
        let head = state.map(|(seqno, _)| seqno);
        match (op, ret) {
            (CasOp::Cas { expected, value }, CasResult::Committed) if *expected == head => {
                Some(Some((expected.map_or(0, |e| e + 1), *value)))
            }
            (CasOp::Cas { expected, .. }, CasResult::Mismatch { current })
                if *expected != head && *current == head =>
            {
                Some(*state)
            }
            (CasOp::Cas { expected, .. }, CasResult::Rejected) if *expected != head => Some(*state),
            (CasOp::Head, CasResult::Head(seen)) if seen == state => Some(*state),
            _ => None,
        }
    }
}
