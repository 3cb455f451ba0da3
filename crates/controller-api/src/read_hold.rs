//! [`ReadHold`]: a RAII claim that keeps a collection's since at or before a frontier.
//!
//! A hold is issued by whoever tracks the collection's read capabilities (the controller),
//! which records the hold's since in a `MutableAntichain` when it hands the hold out. From
//! then on, every change to the hold travels back to the issuer as a [`ChangeBatch`]
//! through a [`ChangeTx`]: `+1` at each element of a new since, `-1` at each element of
//! an old one. The channel is a plain function, so the issuer may back it with any
//! channel or runtime; this crate has none.
//!
//! # Invariant
//!
//! The sum of all change batches the issuer receives for a collection, plus the `+since`
//! it recorded when it issued the holds, always equals the sum over the live holds of
//! `+since`. In particular it nets to zero once every hold is gone.

use std::fmt;
use std::sync::Arc;

use timely::PartialOrder;
use timely::progress::{Antichain, ChangeBatch};

use crate::error::StorageError;
use crate::ids::GlobalId;
use crate::timestamp::{StorageTimestamp, Timestamp};

/// The issuer of the hold has gone away, so changes to the hold can no longer be
/// delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, thiserror::Error)]
#[error("the read hold issuer is gone")]
pub struct IssuerGone;

/// How a [`ReadHold`] reports changes of its since to its issuer.
///
/// # Contract
///
/// The function delivers the batch to the issuer, which adds it to the read capabilities
/// of collection `id`. It returns [`IssuerGone`] when the issuer no longer listens. It
/// must not block for long and must not call back into the hold. An issuer gives every
/// hold it issues a clone of one `ChangeTx`: [`ReadHold::merge_assign`] tells issuers
/// apart by the channel's identity.
pub type ChangeTx<T = Timestamp> =
    Arc<dyn Fn(GlobalId, ChangeBatch<T>) -> Result<(), IssuerGone> + Send + Sync>;

/// Why an operation on read holds failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadHoldError<T = Timestamp> {
    /// No collection with this id exists, so no hold can be acquired on it.
    #[error("collection {id} does not exist")]
    CollectionMissing {
        /// The collection.
        id: GlobalId,
    },
    /// A hold would move before the collection's or the hold's since.
    #[error("read hold on {id} cannot move from since {since:?} to {requested:?}")]
    SinceViolation {
        /// The collection.
        id: GlobalId,
        /// The since the hold or collection has now.
        since: Antichain<T>,
        /// The frontier that was asked for.
        requested: Antichain<T>,
    },
    /// Two holds on different collections cannot be merged.
    #[error("cannot merge a read hold on {other} into one on {held}")]
    IdMismatch {
        /// The collection of the hold merged into.
        held: GlobalId,
        /// The collection of the hold that was passed in.
        other: GlobalId,
    },
    /// Two holds issued by different issuers (for example two controllers) cannot be
    /// merged: the merged hold could report its changes to only one of them.
    #[error("cannot merge read holds on {id} issued by different issuers")]
    IssuerMismatch {
        /// The collection.
        id: GlobalId,
    },
    /// The issuer has gone away, so the hold cannot be cloned.
    #[error("the read hold issuer for {id} is gone")]
    IssuerGone {
        /// The collection.
        id: GlobalId,
    },
}

impl<T> From<ReadHoldError<T>> for StorageError<T> {
    fn from(err: ReadHoldError<T>) -> Self {
        match err {
            ReadHoldError::CollectionMissing { id } => StorageError::IdentifierMissing(id),
            ReadHoldError::SinceViolation { id, since, .. } => {
                StorageError::ReadBeforeSince { id, since }
            }
            ReadHoldError::IdMismatch { held, other } => StorageError::InvalidUsage(format!(
                "cannot merge a read hold on {other} into one on {held}"
            )),
            ReadHoldError::IssuerMismatch { id } => StorageError::InvalidUsage(format!(
                "cannot merge read holds on {id} issued by different issuers"
            )),
            ReadHoldError::IssuerGone { .. } => StorageError::ShuttingDown,
        }
    }
}

/// A claim that keeps collection `id` readable at every time beyond [`ReadHold::since`].
///
/// While the hold lives, the collection's since does not advance past the hold's since.
/// The hold can be cloned ([`ReadHold::try_clone`]), moved forward
/// ([`ReadHold::try_downgrade`]), combined with another hold on the same collection
/// ([`ReadHold::merge_assign`]), and given up ([`ReadHold::release`] or drop). Each of these
/// sends the net change of the held frontier to the issuer; see the module docs for the
/// invariant. A hold with an empty since holds nothing and sends nothing.
///
/// Holds are deliberately not `Clone`: cloning must reach the issuer, and that can fail.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use strata_controller_api::{Antichain, ChangeBatch, ChangeTx, GlobalId, ReadHold, Timestamp};
///
/// // An issuer that accumulates every change it receives.
/// let received = Arc::new(Mutex::new(ChangeBatch::<Timestamp>::new()));
/// let sink = Arc::clone(&received);
/// let tx: ChangeTx = Arc::new(move |_id, mut changes: ChangeBatch<Timestamp>| {
///     sink.lock().unwrap().extend(changes.drain());
///     Ok(())
/// });
///
/// // The issuer records +1 at the since when it hands out the hold.
/// let t = Timestamp::new;
/// received.lock().unwrap().update(t(5), 1);
/// let mut hold = ReadHold::new(GlobalId::User(1), Antichain::from_elem(t(5)), tx);
///
/// let copy = hold.try_clone().unwrap();
/// hold.try_downgrade(Antichain::from_elem(t(9))).unwrap();
/// assert!(hold.try_downgrade(Antichain::from_elem(t(7))).is_err());
/// assert_eq!(copy.since(), &Antichain::from_elem(t(5)));
///
/// drop(copy);
/// hold.release();
/// assert!(received.lock().unwrap().is_empty());
/// ```
pub struct ReadHold<T: StorageTimestamp = Timestamp> {
    id: GlobalId,
    since: Antichain<T>,
    tx: ChangeTx<T>,
}

impl<T: StorageTimestamp> ReadHold<T> {
    /// A hold on `id` at `since` that reports changes through `tx`.
    ///
    /// This does not announce the hold: the issuer records `+since` itself when it
    /// creates the hold.
    pub fn new(id: GlobalId, since: Antichain<T>, tx: ChangeTx<T>) -> Self {
        ReadHold { id, since, tx }
    }

    /// The collection this hold is on.
    pub fn id(&self) -> GlobalId {
        self.id
    }

    /// The frontier the hold keeps readable: reads at times beyond it stay valid.
    pub fn since(&self) -> &Antichain<T> {
        &self.since
    }

    /// A second hold on the same collection at the same since.
    ///
    /// Sends `+since` to the issuer. Cloning a hold whose issuer is gone is an error; a
    /// hold with an empty since clones without contacting the issuer.
    pub fn try_clone(&self) -> Result<ReadHold<T>, ReadHoldError<T>> {
        if !self.since.is_empty() {
            let changes = batch([(&self.since, 1)]);
            (self.tx)(self.id, changes)
                .map_err(|IssuerGone| ReadHoldError::IssuerGone { id: self.id })?;
        }
        Ok(ReadHold {
            id: self.id,
            since: self.since.clone(),
            tx: Arc::clone(&self.tx),
        })
    }

    /// Moves the hold forward to `frontier`, letting the collection compact up to it.
    ///
    /// `frontier` must be beyond or equal to the current since, otherwise this returns
    /// [`ReadHoldError::SinceViolation`] and the hold is unchanged. Sends
    /// `+frontier -since`. If the issuer is gone the hold still moves: holding less of
    /// a collection nobody tracks is harmless.
    pub fn try_downgrade(&mut self, frontier: Antichain<T>) -> Result<(), ReadHoldError<T>> {
        if !PartialOrder::less_equal(&self.since, &frontier) {
            return Err(ReadHoldError::SinceViolation {
                id: self.id,
                since: self.since.clone(),
                requested: frontier,
            });
        }
        let changes = batch([(&frontier, 1), (&self.since, -1)]);
        self.since = frontier;
        self.send(changes);
        Ok(())
    }

    /// Absorbs `other`, a hold on the same collection, into `self`.
    ///
    /// Afterwards `self` holds the meet of both sinces, which keeps everything either
    /// hold kept readable, and `other` is consumed. The issuer receives
    /// `+meet -self.since -other.since`.
    ///
    /// If the ids differ this returns [`ReadHoldError::IdMismatch`]; if the holds come
    /// from different issuers, [`ReadHoldError::IssuerMismatch`]. Either way `self` is
    /// unchanged, and `other` is released to its own issuer as if dropped.
    pub fn merge_assign(&mut self, mut other: ReadHold<T>) -> Result<(), ReadHoldError<T>> {
        if self.id != other.id {
            return Err(ReadHoldError::IdMismatch {
                held: self.id,
                other: other.id,
            });
        }
        // An issuer hands every hold it issues a clone of one channel, so the channel's
        // identity is the issuer's.
        if !Arc::ptr_eq(&self.tx, &other.tx) {
            return Err(ReadHoldError::IssuerMismatch { id: self.id });
        }
        // Taking `other`'s since leaves it empty, so dropping it sends nothing.
        let other_since = std::mem::take(&mut other.since);
        let mut meet = self.since.clone();
        meet.extend(other_since.iter().copied());
        let changes = batch([(&meet, 1), (&self.since, -1), (&other_since, -1)]);
        self.since = meet;
        self.send(changes);
        Ok(())
    }

    /// Gives up the hold. Sends `-since`; the same as dropping it.
    pub fn release(self) {
        drop(self);
    }

    fn send(&self, mut changes: ChangeBatch<T>) {
        if !changes.is_empty() {
            // A hung-up issuer no longer tracks this collection, so there is nothing to
            // tell it.
            let _ = (self.tx)(self.id, changes);
        }
    }
}

/// A consolidated change batch of `diff` at every element of each frontier.
fn batch<T: StorageTimestamp, const N: usize>(parts: [(&Antichain<T>, i64); N]) -> ChangeBatch<T> {
    let mut changes = ChangeBatch::new();
    for (frontier, diff) in parts {
        changes.extend(frontier.iter().map(|t| (*t, diff)));
    }
    changes
}

impl<T: StorageTimestamp> Drop for ReadHold<T> {
    fn drop(&mut self) {
        let since = std::mem::take(&mut self.since);
        self.send(batch([(&since, -1)]));
    }
}

impl<T: StorageTimestamp> fmt::Debug for ReadHold<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadHold")
            .field("id", &self.id)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use proptest::prelude::*;

    type Log = Arc<Mutex<Vec<(GlobalId, Vec<(u64, i64)>)>>>;

    /// An issuer that records every batch it receives and can hang up.
    struct Issuer {
        log: Log,
        gone: Arc<AtomicBool>,
        tx: ChangeTx,
    }

    impl Issuer {
        fn new() -> Self {
            let log: Log = Arc::default();
            let gone = Arc::new(AtomicBool::new(false));
            let (l, g) = (Arc::clone(&log), Arc::clone(&gone));
            let tx: ChangeTx = Arc::new(move |id, mut changes: ChangeBatch<Timestamp>| {
                if g.load(Ordering::SeqCst) {
                    return Err(IssuerGone);
                }
                let mut updates: Vec<_> =
                    changes.drain().map(|(t, d)| (t.as_millis(), d)).collect();
                updates.sort();
                l.lock().unwrap().push((id, updates));
                Ok(())
            });
            Issuer { log, gone, tx }
        }

        /// Issues a hold, recording `+since` as a real issuer does.
        fn issue(&self, id: GlobalId, since: &[u64]) -> ReadHold {
            let since = f(since);
            self.log
                .lock()
                .unwrap()
                .push((id, since.iter().map(|t| (t.as_millis(), 1)).collect()));
            ReadHold::new(id, since, Arc::clone(&self.tx))
        }

        /// Everything received since the last call.
        fn take(&self) -> Vec<(GlobalId, Vec<(u64, i64)>)> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }

        /// The net accumulation of everything ever received for `id`.
        fn net(&self, all: &[(GlobalId, Vec<(u64, i64)>)], id: GlobalId) -> Vec<(u64, i64)> {
            let mut acc: ChangeBatch<u64> = ChangeBatch::new();
            for (i, updates) in all {
                if *i == id {
                    acc.extend(updates.iter().copied());
                }
            }
            let mut out: Vec<_> = acc.drain().collect();
            out.sort();
            out
        }
    }

    fn f(elems: &[u64]) -> Antichain<Timestamp> {
        elems.iter().copied().map(Timestamp::new).collect()
    }

    const A: GlobalId = GlobalId::User(1);
    const B: GlobalId = GlobalId::User(2);

    #[test]
    fn holds_can_move_between_threads() {
        let issuer = Issuer::new();
        let hold = issuer.issue(A, &[4]);
        issuer.take();
        std::thread::spawn(move || hold.release()).join().unwrap();
        assert_eq!(issuer.take(), vec![(A, vec![(4, -1)])]);
    }

    #[test]
    fn clone_sends_plus_since() {
        let issuer = Issuer::new();
        let hold = issuer.issue(A, &[5]);
        issuer.take();
        let copy = hold.try_clone().unwrap();
        assert_eq!(copy.since(), &f(&[5]));
        assert_eq!(copy.id(), A);
        assert_eq!(issuer.take(), vec![(A, vec![(5, 1)])]);
    }

    #[test]
    fn clone_after_issuer_hung_up_is_an_error() {
        let issuer = Issuer::new();
        let hold = issuer.issue(A, &[5]);
        issuer.gone.store(true, Ordering::SeqCst);
        assert_eq!(
            hold.try_clone().unwrap_err(),
            ReadHoldError::IssuerGone { id: A }
        );
        // Dropping after the issuer is gone does not panic either.
        drop(hold);
    }

    #[test]
    fn clone_of_an_empty_hold_sends_nothing() {
        let issuer = Issuer::new();
        let hold = issuer.issue(A, &[]);
        issuer.gone.store(true, Ordering::SeqCst);
        let copy = hold.try_clone().unwrap();
        assert!(copy.since().is_empty());
    }

    fn check_downgrade(from: &[u64], to: &[u64], expected: Result<Vec<(u64, i64)>, ()>) {
        let issuer = Issuer::new();
        let mut hold = issuer.issue(A, from);
        issuer.take();
        let result = hold.try_downgrade(f(to));
        match expected {
            Ok(changes) => {
                result.unwrap();
                assert_eq!(hold.since(), &f(to));
                let sent: Vec<_> = issuer.take().into_iter().map(|(_, c)| c).collect();
                let want: Vec<_> = if changes.is_empty() {
                    vec![]
                } else {
                    vec![changes]
                };
                assert_eq!(sent, want, "{from:?} -> {to:?}");
            }
            Err(()) => {
                assert_eq!(
                    result.unwrap_err(),
                    ReadHoldError::SinceViolation {
                        id: A,
                        since: f(from),
                        requested: f(to)
                    }
                );
                assert_eq!(hold.since(), &f(from));
                assert!(issuer.take().is_empty());
            }
        }
    }

    #[test]
    fn downgrade() {
        check_downgrade(&[5], &[9], Ok(vec![(5, -1), (9, 1)]));
        check_downgrade(&[5], &[5], Ok(vec![]));
        check_downgrade(&[0], &[u64::MAX], Ok(vec![(0, -1), (u64::MAX, 1)]));
        check_downgrade(&[5], &[], Ok(vec![(5, -1)]));
        check_downgrade(&[], &[], Ok(vec![]));
        check_downgrade(&[5], &[4], Err(()));
        check_downgrade(&[], &[4], Err(()));
    }

    #[test]
    fn downgrade_after_issuer_hung_up_still_moves() {
        let issuer = Issuer::new();
        let mut hold = issuer.issue(A, &[5]);
        issuer.gone.store(true, Ordering::SeqCst);
        hold.try_downgrade(f(&[8])).unwrap();
        assert_eq!(hold.since(), &f(&[8]));
    }

    fn check_merge(a: &[u64], b: &[u64], meet: &[u64], sent: Vec<(u64, i64)>) {
        let issuer = Issuer::new();
        let mut x = issuer.issue(A, a);
        let y = issuer.issue(A, b);
        issuer.take();
        x.merge_assign(y).unwrap();
        assert_eq!(x.since(), &f(meet));
        let got: Vec<_> = issuer.take().into_iter().map(|(_, c)| c).collect();
        let want: Vec<_> = if sent.is_empty() { vec![] } else { vec![sent] };
        assert_eq!(got, want, "{a:?} + {b:?}");
    }

    #[test]
    fn merge() {
        check_merge(&[5], &[9], &[5], vec![(9, -1)]);
        check_merge(&[9], &[5], &[5], vec![(9, -1)]);
        check_merge(&[5], &[5], &[5], vec![(5, -1)]);
        check_merge(&[5], &[], &[5], vec![]);
        check_merge(&[], &[5], &[5], vec![]);
        check_merge(&[], &[], &[], vec![]);
    }

    #[test]
    fn merge_of_different_ids_is_an_error_and_releases_other() {
        let issuer = Issuer::new();
        let mut x = issuer.issue(A, &[5]);
        let y = issuer.issue(B, &[7]);
        issuer.take();
        assert_eq!(
            x.merge_assign(y).unwrap_err(),
            ReadHoldError::IdMismatch { held: A, other: B }
        );
        assert_eq!(x.since(), &f(&[5]));
        assert_eq!(issuer.take(), vec![(B, vec![(7, -1)])]);
    }

    #[test]
    fn merge_of_holds_from_different_issuers_is_an_error_and_releases_other() {
        let (first, second) = (Issuer::new(), Issuer::new());
        let mut x = first.issue(A, &[5]);
        let y = second.issue(A, &[3]);
        first.take();
        second.take();
        assert_eq!(
            x.merge_assign(y).unwrap_err(),
            ReadHoldError::IssuerMismatch { id: A }
        );
        // Each issuer hears only about its own hold: `x` is unchanged, `y` is released
        // to the issuer that handed it out.
        assert_eq!(x.since(), &f(&[5]));
        assert_eq!(first.take(), vec![]);
        assert_eq!(second.take(), vec![(A, vec![(3, -1)])]);
    }

    #[test]
    fn release_and_drop_send_minus_since() {
        let issuer = Issuer::new();
        let x = issuer.issue(A, &[5]);
        let y = issuer.issue(B, &[7]);
        issuer.take();
        x.release();
        assert_eq!(issuer.take(), vec![(A, vec![(5, -1)])]);
        drop(y);
        assert_eq!(issuer.take(), vec![(B, vec![(7, -1)])]);
        let empty = issuer.issue(A, &[]);
        issuer.take();
        drop(empty);
        assert!(issuer.take().is_empty());
    }

    #[test]
    fn net_accumulation_is_zero_after_all_holds_are_gone() {
        let issuer = Issuer::new();
        let mut a = issuer.issue(A, &[3]);
        let b = a.try_clone().unwrap();
        let mut c = b.try_clone().unwrap();
        a.try_downgrade(f(&[10])).unwrap();
        c.try_downgrade(f(&[6])).unwrap();
        a.merge_assign(c).unwrap();
        let d = issuer.issue(B, &[1]);
        let e = d.try_clone().unwrap();
        drop(b);
        a.release();
        drop(d);
        e.release();
        let all = issuer.take();
        assert!(all.len() > 5);
        assert_eq!(issuer.net(&all, A), vec![]);
        assert_eq!(issuer.net(&all, B), vec![]);
    }

    #[test]
    fn debug_does_not_need_a_debug_channel() {
        let issuer = Issuer::new();
        let hold = issuer.issue(A, &[5]);
        let text = format!("{hold:?}");
        assert!(
            text.contains("ReadHold") && text.contains("User(1)"),
            "{text}"
        );
    }

    #[test]
    fn converts_into_storage_error() {
        let e: StorageError = ReadHoldError::CollectionMissing { id: A }.into();
        assert!(matches!(e, StorageError::IdentifierMissing(id) if id == A));
        let e: StorageError = ReadHoldError::SinceViolation {
            id: A,
            since: f(&[4]),
            requested: f(&[2]),
        }
        .into();
        assert!(matches!(e, StorageError::ReadBeforeSince { id, .. } if id == A));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Clone(usize),
        Downgrade(usize, u64),
        Merge(usize, usize),
        Drop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..8).prop_map(Op::Clone),
            (0usize..8, 0u64..20).prop_map(|(i, by)| Op::Downgrade(i, by)),
            (0usize..8, 0usize..8).prop_map(|(i, j)| Op::Merge(i, j)),
            (0usize..8).prop_map(Op::Drop),
        ]
    }

    proptest! {
        /// The issuer's accumulated read capabilities always equal the live holds' sinces,
        /// and net to zero at the end.
        #[test]
        fn issuer_view_matches_live_holds(start in 0u64..10, ops in prop::collection::vec(op(), 0..40)) {
            let issuer = Issuer::new();
            let mut holds = vec![issuer.issue(A, &[start])];
            for op in ops {
                let n = holds.len();
                if n == 0 {
                    break;
                }
                match op {
                    Op::Clone(i) => {
                        let c = holds[i % n].try_clone().unwrap();
                        holds.push(c);
                    }
                    Op::Downgrade(i, by) => {
                        let h = &mut holds[i % n];
                        let to = h.since().as_option().map_or(f(&[]), |t| f(&[t.as_millis() + by]));
                        h.try_downgrade(to).unwrap();
                    }
                    Op::Merge(i, j) if i % n != j % n => {
                        let (i, j) = (i % n, j % n);
                        let other = holds.remove(j);
                        let i = if j < i { i - 1 } else { i };
                        holds[i].merge_assign(other).unwrap();
                    }
                    Op::Merge(..) => {}
                    Op::Drop(i) => {
                        holds.remove(i % n);
                    }
                }
                let all = issuer.log.lock().unwrap().clone();
                let mut model: ChangeBatch<u64> = ChangeBatch::new();
                model.extend(holds.iter().flat_map(|h| h.since().iter().map(|t| (t.as_millis(), 1))));
                let mut model: Vec<_> = model.drain().collect();
                model.sort();
                prop_assert_eq!(issuer.net(&all, A), model);
            }
            drop(holds);
            let all = issuer.take();
            prop_assert_eq!(issuer.net(&all, A), vec![]);
        }
    }
}
