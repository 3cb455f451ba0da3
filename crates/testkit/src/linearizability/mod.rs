//! A linearizability checker: the Wing–Gong search with Lowe's memoisation.
//!
//! A history is a set of operations, each with the time it was called, the time it
//! returned (or `None` if its outcome is unknown, as after an indeterminate error), the
//! operation and the result the caller saw. The history is linearizable if there is a
//! total order of the operations that
//! - respects real time: an operation that returned before another was called comes
//!   first;
//! - is legal for the sequential specification, with every operation producing the
//!   result its caller saw;
//! - contains every operation that returned; one that never returned may be left out
//!   (it never took effect) or placed anywhere after its call.
//!
//! The search explores candidate orders depth first and prunes any configuration
//! (the set of operations linearized so far, and the resulting state) it has seen
//! before, which keeps it fast on the histories tests produce.

mod cas;

use std::collections::HashSet;
use std::hash::Hash;

pub use cas::{CasOp, CasRegister, CasResult};

/// A sequential specification: the single-threaded behaviour a history must match.
pub trait SequentialSpec {
    /// The specification's state.
    type State: Clone + Eq + Hash;
    /// An operation.
    type Op;
    /// What an operation returned.
    type Ret;

    /// The initial state.
    fn init(&self) -> Self::State;

    /// The state after `op` ran in `state` and returned `ret`, or `None` if `op` cannot
    /// return `ret` in `state`.
    fn apply(&self, state: &Self::State, op: &Self::Op, ret: &Self::Ret) -> Option<Self::State>;
}

/// One operation of a concurrent history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<Op, Ret> {
    /// When the operation was called.
    pub call: u64,
    /// When it returned, or `None` if its outcome is unknown.
    pub ret: Option<u64>,
    /// The operation.
    pub op: Op,
    /// What it returned (for an unknown outcome: what it would return had it happened).
    pub result: Ret,
}

/// Why a history was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No legal order exists.
    #[error(
        "history is not linearizable: {linearized_at_most} of {required} completed operations could be ordered"
    )]
    NotLinearizable {
        /// The most completed operations any explored order managed to include.
        linearized_at_most: usize,
        /// The number of completed operations.
        required: usize,
    },
    /// An operation returned before it was called.
    #[error("operation {index} returns at {ret} before its call at {call}")]
    MalformedOperation {
        /// The operation's index in the history.
        index: usize,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
}

/// Checks `history` against `spec`. On success returns a witness: the indices of the
/// operations in a legal order (operations with unknown outcomes appear only if they
/// had to take effect).
///
/// # Examples
///
/// ```
/// use strata_testkit::linearizability::{check, CasOp, CasRegister, CasResult, Operation};
/// // Two writers race to create seqno 1; exactly one wins.
/// let history = vec![
///     Operation { call: 0, ret: Some(3), op: CasOp::Cas { expected: None, value: 1 }, result: CasResult::Committed },
///     Operation { call: 1, ret: Some(2), op: CasOp::Cas { expected: None, value: 2 }, result: CasResult::Mismatch { current: Some(0) } },
/// ];
/// assert!(check(&CasRegister, &history).is_ok());
/// // Both winning is impossible.
/// let mut bad = history.clone();
/// bad[1].result = CasResult::Committed;
/// assert!(check(&CasRegister, &bad).is_err());
/// ```
pub fn check<S: SequentialSpec>(
    spec: &S,
    history: &[Operation<S::Op, S::Ret>],
) -> Result<Vec<usize>, CheckError> {
    for (index, op) in history.iter().enumerate() {
        if let Some(ret) = op.ret.filter(|ret| *ret < op.call) {
            return Err(CheckError::MalformedOperation {
                index,
                call: op.call,
                ret,
            });
        }
    }
    Search::new(spec, history).run()
}

/// A fixed-size set of operation indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Self {
        let mut next = self.clone();
        next.0[i / 64] |= 1 << (i % 64);
        next
    }
}

struct Search<'a, S: SequentialSpec> {
    spec: &'a S,
    history: &'a [Operation<S::Op, S::Ret>],
    /// Operation indices by call time.
    by_call: Vec<usize>,
    required: usize,
    seen: HashSet<(Bits, S::State)>,
}

/// One level of the depth-first search.
struct Frame<St> {
    linearized: Bits,
    state: St,
    done: usize,
    candidates: Vec<usize>,
    next: usize,
}

impl<'a, S: SequentialSpec> Search<'a, S> {
    fn new(spec: &'a S, history: &'a [Operation<S::Op, S::Ret>]) -> Self {
        let mut by_call: Vec<usize> = (0..history.len()).collect();
        by_call.sort_by_key(|i| history[*i].call);
        let required = history.iter().filter(|op| op.ret.is_some()).count();
        Search {
            spec,
            history,
            by_call,
            required,
            seen: HashSet::new(),
        }
    }

    /// The operations that may come next: not yet linearized, and called before every
    /// pending completed operation returned.
    fn candidates(&self, linearized: &Bits) -> Vec<usize> {
        let horizon = (0..self.history.len())
            .filter(|i| !linearized.contains(*i))
            .filter_map(|i| self.history[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        self.by_call
            .iter()
            .copied()
            .filter(|i| !linearized.contains(*i) && self.history[*i].call <= horizon)
            .collect()
    }

    fn run(mut self) -> Result<Vec<usize>, CheckError> {
        let n = self.history.len();
        let root = Bits::new(n);
        let mut stack = vec![Frame {
            candidates: self.candidates(&root),
            linearized: root,
            state: self.spec.init(),
            done: 0,
            next: 0,
        }];
        let mut order: Vec<usize> = Vec::new();
        let mut best = 0;
        while let Some(frame) = stack.last_mut() {
            best = best.max(frame.done);
            if frame.done == self.required {
                return Ok(order);
            }
            let Some(&i) = frame.candidates.get(frame.next) else {
                stack.pop();
                order.pop();
                continue;
            };
            frame.next += 1;
            let op = &self.history[i];
            let Some(state) = self.spec.apply(&frame.state, &op.op, &op.result) else {
                continue;
            };
            let linearized = frame.linearized.with(i);
            if !self.seen.insert((linearized.clone(), state.clone())) {
                continue;
            }
            let done = frame.done + usize::from(op.ret.is_some());
            let candidates = self.candidates(&linearized);
            order.push(i);
            stack.push(Frame {
                linearized,
                state,
                done,
                candidates,
                next: 0,
            });
        }
        Err(CheckError::NotLinearizable {
            linearized_at_most: best,
            required: self.required,
        })
    }
}

#[cfg(test)]
mod tests;
