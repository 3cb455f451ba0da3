//! [`StorageWriteOp`]: a change to the desired contents of a differential collection.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::sync::Arc;

use crate::row::Row;

/// A change to the desired contents (a multiset of rows) of a differential
/// introspection collection. The collection manager writes whatever difference the
/// shard still needs to match the desired contents.
#[derive(Clone)]
pub enum StorageWriteOp {
    /// Adds each row's diff to its multiplicity.
    Append(Vec<(Row, i64)>),
    /// Replaces the whole desired contents with these rows (their diffs consolidated).
    Set(Vec<(Row, i64)>),
    /// Removes every row the predicate selects, whatever its multiplicity.
    DeleteWhere(Arc<dyn Fn(&Row) -> bool + Send + Sync>),
}

impl fmt::Debug for StorageWriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageWriteOp::Append(rows) => f.debug_tuple("Append").field(rows).finish(),
            StorageWriteOp::Set(rows) => f.debug_tuple("Set").field(rows).finish(),
            StorageWriteOp::DeleteWhere(_) => f.write_str("DeleteWhere(..)"),
        }
    }
}

impl StorageWriteOp {
    /// The rows the op adds (none for a delete), to validate them against a schema.
    pub fn rows(&self) -> &[(Row, i64)] {
        match self {
            StorageWriteOp::Append(rows) | StorageWriteOp::Set(rows) => rows,
            StorageWriteOp::DeleteWhere(_) => &[],
        }
    }

    /// Applies the op to `contents`, a multiset with no zero multiplicity (which stays
    /// so); returns the difference it made, consolidated.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::sync::Arc;
    /// use strata_controller_api::{Datum, Row, StorageWriteOp};
    /// let r = |x| Row::pack(&[Datum::Int64(x)]);
    /// let mut contents = BTreeMap::new();
    /// StorageWriteOp::Append(vec![(r(1), 2), (r(2), 1)]).apply_to(&mut contents);
    /// let diff = StorageWriteOp::DeleteWhere(Arc::new(move |row| *row == r(1))).apply_to(&mut contents);
    /// assert_eq!(diff, vec![(r(1), -2)]);
    /// assert_eq!(contents, BTreeMap::from([(r(2), 1)]));
    /// ```
    pub fn apply_to(&self, contents: &mut BTreeMap<Row, i64>) -> Vec<(Row, i64)> {
        let mut diff: BTreeMap<Row, i64> = BTreeMap::new();
        match self {
            StorageWriteOp::Append(rows) => {
                for (row, d) in rows {
                    add(contents, row.clone(), *d);
                    add(&mut diff, row.clone(), *d);
                }
            }
            StorageWriteOp::Set(rows) => {
                let mut new = BTreeMap::new();
                for (row, d) in rows {
                    add(&mut new, row.clone(), *d);
                }
                for (row, d) in contents.iter() {
                    add(&mut diff, row.clone(), -d);
                }
                for (row, d) in &new {
                    add(&mut diff, row.clone(), *d);
                }
                *contents = new;
            }
            StorageWriteOp::DeleteWhere(select) => {
                contents.retain(|row, d| {
                    if select(row) {
                        add(&mut diff, row.clone(), -*d);
                        false
                    } else {
                        true
                    }
                });
            }
        }
        diff.into_iter().collect()
    }
}

/// Adds `d` to `key`'s multiplicity, removing it at zero (saturating, never panicking).
fn add(map: &mut BTreeMap<Row, i64>, key: Row, d: i64) {
    if d == 0 {
        return;
    }
    match map.entry(key) {
        Entry::Occupied(mut e) => {
            let sum = e.get().saturating_add(d);
            if sum == 0 {
                e.remove();
            } else {
                *e.get_mut() = sum;
            }
        }
        Entry::Vacant(e) => {
            e.insert(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Datum;

    fn r(x: i64) -> Row {
        Row::pack(&[Datum::Int64(x)])
    }

    /// One case: the ops applied in order, the contents after, and the last op's diff.
    type Case = (Vec<StorageWriteOp>, Vec<(Row, i64)>, Vec<(Row, i64)>);

    #[test]
    fn ops_change_the_contents_and_report_the_difference() {
        let select_odd: Arc<dyn Fn(&Row) -> bool + Send + Sync> =
            Arc::new(|row| matches!(row.unpack()[0], Datum::Int64(x) if x % 2 == 1));
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![]),
            (
                vec![StorageWriteOp::Append(vec![
                    (r(1), 1),
                    (r(1), 1),
                    (r(2), 0),
                ])],
                vec![(r(1), 2)],
                vec![(r(1), 2)],
            ),
            (
                vec![
                    StorageWriteOp::Append(vec![(r(1), 1)]),
                    StorageWriteOp::Append(vec![(r(1), -1)]),
                ],
                vec![],
                vec![(r(1), -1)],
            ),
            (
                vec![
                    StorageWriteOp::Append(vec![(r(1), 1), (r(2), 1)]),
                    StorageWriteOp::Set(vec![(r(2), 1), (r(3), 1)]),
                ],
                vec![(r(2), 1), (r(3), 1)],
                vec![(r(1), -1), (r(3), 1)],
            ),
            (
                vec![
                    StorageWriteOp::Append(vec![(r(1), 3), (r(2), 1), (r(3), 1)]),
                    StorageWriteOp::DeleteWhere(Arc::clone(&select_odd)),
                ],
                vec![(r(2), 1)],
                vec![(r(1), -3), (r(3), -1)],
            ),
            (
                vec![StorageWriteOp::Append(vec![(r(1), i64::MAX), (r(1), 1)])],
                vec![(r(1), i64::MAX)],
                vec![(r(1), i64::MAX)],
            ),
        ];
        for (ops, contents, last) in cases {
            let mut state = BTreeMap::new();
            let mut diff = Vec::new();
            for op in &ops {
                diff = op.apply_to(&mut state);
            }
            assert_eq!(state.into_iter().collect::<Vec<_>>(), contents, "{ops:?}");
            assert_eq!(diff, last, "{ops:?}");
        }
    }
}
