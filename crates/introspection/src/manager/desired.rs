//! The desired state of a differential collection and the difference still to write.
//!
//! Pure: the task applies [`StorageWriteOp`]s here, and after an upper mismatch replaces the
//! pending difference with `desired - actual`, where `actual` is what the shard holds.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use strata_controller_api::{Row, StorageWriteOp};
use strata_persist_backend::SourceData;

/// A multiset of rows and the difference between it and what was last written.
///
/// # Invariant
///
/// Unless `needs_reconcile`, the shard's contents plus `pending` equal `desired`. No
/// map holds a zero multiplicity.
#[derive(Debug, Default, Clone)]
pub(crate) struct DesiredState {
    desired: BTreeMap<Row, i64>,
    pending: BTreeMap<SourceData, i64>,
    /// Whether the shard's contents are unknown (at start-up, after a mismatch or an
    /// indeterminate failure): then `pending` is recomputed from a snapshot.
    pub(crate) needs_reconcile: bool,
    /// Whether `desired` is still to be seeded from the shard's contents.
    pub(crate) needs_seed: bool,
}

fn add<K: Ord>(map: &mut BTreeMap<K, i64>, key: K, diff: i64) {
    if diff == 0 {
        return;
    }
    match map.entry(key) {
        Entry::Occupied(mut e) => {
            let sum = e.get().saturating_add(diff);
            if sum == 0 {
                e.remove();
            } else {
                *e.get_mut() = sum;
            }
        }
        Entry::Vacant(e) => {
            e.insert(diff);
        }
    }
}

impl DesiredState {
    /// A state whose shard contents are not known yet.
    pub(crate) fn new() -> Self {
        DesiredState {
            needs_reconcile: true,
            ..DesiredState::default()
        }
    }

    /// A state whose desired contents start as the shard's.
    pub(crate) fn new_seeded() -> Self {
        DesiredState {
            needs_seed: true,
            ..DesiredState::new()
        }
    }

    /// Makes the shard's contents the desired state; updates applied before are
    /// applied on top.
    pub(crate) fn seed(&mut self, actual: impl IntoIterator<Item = (SourceData, i64)>) {
        let earlier = self.desired();
        self.desired.clear();
        let mut actual: Vec<(SourceData, i64)> = actual.into_iter().collect();
        for (data, diff) in &actual {
            if let Ok(row) = data {
                add(&mut self.desired, row.clone(), *diff);
            }
        }
        self.needs_seed = false;
        self.reconcile(actual.drain(..));
        self.apply(StorageWriteOp::Append(earlier));
    }

    pub(crate) fn apply(&mut self, op: StorageWriteOp) {
        for (row, diff) in op.apply_to(&mut self.desired) {
            add(&mut self.pending, Ok(row), diff);
        }
    }

    /// Replaces the pending difference with `desired - actual`.
    pub(crate) fn reconcile(&mut self, actual: impl IntoIterator<Item = (SourceData, i64)>) {
        let mut pending: BTreeMap<SourceData, i64> = BTreeMap::new();
        for (row, diff) in &self.desired {
            add(&mut pending, Ok(row.clone()), *diff);
        }
        for (data, diff) in actual {
            add(&mut pending, data, -diff);
        }
        self.pending = pending;
        self.needs_reconcile = false;
    }

    /// The difference to write next.
    pub(crate) fn pending(&self) -> Vec<(SourceData, i64)> {
        self.pending.iter().map(|(d, r)| (d.clone(), *r)).collect()
    }

    /// Marks the pending difference as written.
    pub(crate) fn written(&mut self) {
        self.pending.clear();
    }

    /// The desired contents, consolidated.
    pub(crate) fn desired(&self) -> Vec<(Row, i64)> {
        self.desired.iter().map(|(r, d)| (r.clone(), *d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;
    use strata_controller_api::Datum;

    use super::*;

    fn row(n: i64) -> Row {
        Row::pack(&[Datum::Int64(n)])
    }

    type Case = (Vec<StorageWriteOp>, Option<Vec<(SourceData, i64)>>);

    /// Applies `ops`, reconciles against `actual` if given, and compares the pending
    /// difference.
    fn check((ops, actual): Case, expected: Vec<(SourceData, i64)>) {
        let mut state = DesiredState::default();
        for op in ops {
            state.apply(op);
        }
        if let Some(actual) = actual {
            state.reconcile(actual);
        }
        assert_eq!(state.pending(), expected);
    }

    #[test]
    fn ops_and_reconciliation() {
        let a = || StorageWriteOp::Append(vec![(row(1), 1), (row(2), 2)]);
        check((vec![a()], None), vec![(Ok(row(1)), 1), (Ok(row(2)), 2)]);
        check(
            (vec![a(), StorageWriteOp::Append(vec![(row(1), -1)])], None),
            vec![(Ok(row(2)), 2)],
        );
        check(
            (
                vec![a(), StorageWriteOp::Set(vec![(row(2), 2), (row(3), 1)])],
                None,
            ),
            vec![(Ok(row(2)), 2), (Ok(row(3)), 1)],
        );
        let del: StorageWriteOp = StorageWriteOp::DeleteWhere(Arc::new(|r: &Row| r == &row(2)));
        check((vec![a(), del], None), vec![(Ok(row(1)), 1)]);
        // A previous process left row 9 and an error; both are retracted.
        let stale = vec![(Ok(row(9)), 1), (Ok(row(1)), 1), (Err("e".into()), 1)];
        check(
            (vec![a()], Some(stale)),
            vec![(Ok(row(2)), 2), (Ok(row(9)), -1), (Err("e".into()), -1)],
        );
        check(
            (vec![a()], Some(vec![(Ok(row(1)), 1), (Ok(row(2)), 2)])),
            vec![],
        );
    }

    #[test]
    fn seeding_keeps_the_shard_rows_and_drops_errors() {
        let mut state = DesiredState::new_seeded();
        state.apply(StorageWriteOp::Append(vec![(row(5), 1)]));
        state.seed(vec![(Ok(row(1)), 1), (Err("e".into()), 1)]);
        assert!(!state.needs_seed && !state.needs_reconcile);
        assert_eq!(state.desired(), vec![(row(1), 1), (row(5), 1)]);
        assert_eq!(
            state.pending(),
            vec![(Ok(row(5)), 1), (Err("e".into()), -1)]
        );
    }

    proptest! {
        #[test]
        fn actual_plus_pending_is_desired(
            ops in proptest::collection::vec((0u8..3, proptest::collection::vec((0i64..4, -2i64..3), 0..4)), 0..8),
            actual in proptest::collection::vec((0i64..4, -2i64..3), 0..6),
            reconcile_at in 0usize..9,
        ) {
            let mut state = DesiredState::default();
            // The model: the multiset of desired rows.
            let mut model: BTreeMap<Row, i64> = BTreeMap::new();
            let actual: Vec<(SourceData, i64)> = actual.into_iter().map(|(r, d)| (Ok(row(r)), d)).collect();
            let mut shard: BTreeMap<SourceData, i64> = BTreeMap::new();
            for (i, (kind, rows)) in ops.into_iter().enumerate() {
                if i == reconcile_at {
                    state.reconcile(actual.clone());
                    shard.clear();
                    for (d, r) in &actual { add(&mut shard, d.clone(), *r); }
                }
                let rows: Vec<(Row, i64)> = rows.into_iter().map(|(r, d)| (row(r), d)).collect();
                match kind {
                    0 => { for (r, d) in &rows { add(&mut model, r.clone(), *d); } state.apply(StorageWriteOp::Append(rows)); }
                    1 => { model.clear(); for (r, d) in &rows { add(&mut model, r.clone(), *d); } state.apply(StorageWriteOp::Set(rows)); }
                    _ => { model.retain(|r, _| r != &row(0)); state.apply(StorageWriteOp::DeleteWhere(Arc::new(|r: &Row| r == &row(0)))); }
                }
            }
            for (d, r) in state.pending() { add(&mut shard, d, r); }
            let expected: BTreeMap<SourceData, i64> = model.iter().map(|(r, d)| (Ok(r.clone()), *d)).collect();
            prop_assert_eq!(shard, expected);
            prop_assert_eq!(state.desired(), model.into_iter().collect::<Vec<_>>());
        }
    }
}
