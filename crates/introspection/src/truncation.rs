//! Bounding history collections: keep the newest N rows per key, or the rows inside a
//! retention window.
//!
//! These are pure functions from the current contents to the retractions that bound
//! them; the collection manager applies the retractions with a compare-and-append and
//! recomputes them if the upper moved underneath it.

use std::collections::BTreeMap;

/// One history row as truncation sees it: the key it is counted under, when it
/// happened, and a tie-breaker that orders rows with equal times (the row's bytes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryEntry<K, R> {
    /// The key the row is counted under, e.g. `(id, replica_id)`.
    pub key: K,
    /// When the row happened, in milliseconds since the epoch.
    pub occurred_at: u64,
    /// The row itself; it breaks ties between rows with equal times.
    pub row: R,
}

/// A row with its time, and its multiplicity.
type Timed<R> = ((u64, R), i64);

/// The rows to retract so that each key keeps exactly its `keep` newest rows.
///
/// Rows are ordered by `(occurred_at, row)`, so rows with equal times are kept or
/// dropped deterministically. A row present with multiplicity `m > 1` counts `m` times.
///
/// # Examples
///
/// ```
/// use strata_introspection::truncation::{HistoryEntry, retractions_to_keep_newest};
/// let rows = vec![
///     (HistoryEntry { key: "a", occurred_at: 1, row: "old" }, 1),
///     (HistoryEntry { key: "a", occurred_at: 2, row: "new" }, 1),
///     (HistoryEntry { key: "b", occurred_at: 1, row: "only" }, 1),
/// ];
/// let retract = retractions_to_keep_newest(rows, 1);
/// assert_eq!(retract, vec![(HistoryEntry { key: "a", occurred_at: 1, row: "old" }, 1)]);
/// ```
pub fn retractions_to_keep_newest<K: Ord + Clone, R: Ord>(
    rows: impl IntoIterator<Item = (HistoryEntry<K, R>, i64)>,
    keep: usize,
) -> Vec<(HistoryEntry<K, R>, i64)> {
    let mut by_key: BTreeMap<K, Vec<Timed<R>>> = BTreeMap::new();
    for (entry, diff) in rows {
        if diff > 0 {
            by_key
                .entry(entry.key)
                .or_default()
                .push(((entry.occurred_at, entry.row), diff));
        }
    }
    let mut out = Vec::new();
    for (key, mut entries) in by_key {
        // Newest first; the first `keep` units survive.
        entries.sort_by(|a, b| b.0.cmp(&a.0));
        let mut budget = i64::try_from(keep).unwrap_or(i64::MAX);
        for ((occurred_at, row), diff) in entries {
            let kept = diff.min(budget);
            budget -= kept;
            if diff > kept {
                out.push((
                    HistoryEntry {
                        key: key.clone(),
                        occurred_at,
                        row,
                    },
                    diff - kept,
                ));
            }
        }
    }
    out
}

/// The rows to retract so that only rows with `occurred_at >= now - retention` remain.
///
/// # Examples
///
/// ```
/// use strata_introspection::truncation::retractions_outside_window;
/// let rows = vec![((10u64, "a"), 1), ((95, "b"), 2)];
/// assert_eq!(retractions_outside_window(rows, 100, 50), vec![((10, "a"), 1)]);
/// ```
pub fn retractions_outside_window<R>(
    rows: impl IntoIterator<Item = ((u64, R), i64)>,
    now: u64,
    retention: u64,
) -> Vec<((u64, R), i64)> {
    let cutoff = now.saturating_sub(retention);
    rows.into_iter()
        .filter(|((occurred_at, _), diff)| *occurred_at < cutoff && *diff > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    type Row = (HistoryEntry<&'static str, u32>, i64);

    fn entry(key: &'static str, occurred_at: u64, row: u32) -> HistoryEntry<&'static str, u32> {
        HistoryEntry {
            key,
            occurred_at,
            row,
        }
    }

    fn check(rows: Vec<Row>, keep: usize, expected: Vec<Row>) {
        let mut got = retractions_to_keep_newest(rows.clone(), keep);
        got.sort();
        let mut expected = expected;
        expected.sort();
        assert_eq!(got, expected, "rows {rows:?} keep {keep}");
    }

    #[test]
    fn keep_newest_table() {
        check(vec![], 3, vec![]);
        check(vec![(entry("a", 1, 0), 1)], 0, vec![(entry("a", 1, 0), 1)]);
        check(
            vec![(entry("a", 1, 0), 1), (entry("a", 2, 0), 1)],
            5,
            vec![],
        );
        // Equal times: the tie-breaker decides, deterministically.
        check(
            vec![
                (entry("a", 5, 1), 1),
                (entry("a", 5, 2), 1),
                (entry("a", 5, 3), 1),
            ],
            2,
            vec![(entry("a", 5, 1), 1)],
        );
        // A row with multiplicity counts that many times.
        check(vec![(entry("a", 1, 0), 3)], 2, vec![(entry("a", 1, 0), 1)]);
        // Keys are independent.
        check(
            vec![
                (entry("a", 1, 0), 1),
                (entry("a", 2, 0), 1),
                (entry("b", 1, 0), 1),
            ],
            1,
            vec![(entry("a", 1, 0), 1)],
        );
        // Retractions already present are not counted as rows.
        check(
            vec![(entry("a", 1, 0), -1), (entry("a", 2, 0), 1)],
            1,
            vec![],
        );
    }

    proptest! {
        #[test]
        fn keeps_exactly_the_newest_n_per_key(
            rows in proptest::collection::vec((0u8..3, 0u64..5, 0u32..4, 1i64..3), 0..40),
            keep in 0usize..5,
        ) {
            let keys = ["a", "b", "c"];
            let input: Vec<Row> =
                rows.iter().map(|(k, t, r, d)| (entry(keys[*k as usize], *t, *r), *d)).collect();
            let mut remaining: BTreeMap<HistoryEntry<&str, u32>, i64> = BTreeMap::new();
            for (e, d) in &input {
                *remaining.entry(e.clone()).or_default() += d;
            }
            for (e, d) in retractions_to_keep_newest(input, keep) {
                *remaining.entry(e).or_default() -= d;
            }
            for key in keys {
                // Model: expand multiplicities, sort newest first, keep `keep`.
                let mut all: Vec<(u64, u32)> = Vec::new();
                for (e, d) in &remaining {
                    prop_assert!(*d >= 0);
                    if e.key == key {
                        all.extend(std::iter::repeat_n((e.occurred_at, e.row), *d as usize));
                    }
                }
                prop_assert!(all.len() <= keep);
                let mut original: Vec<(u64, u32)> = rows
                    .iter()
                    .filter(|(k, ..)| keys[*k as usize] == key)
                    .flat_map(|(_, t, r, d)| std::iter::repeat_n((*t, *r), *d as usize))
                    .collect();
                original.sort_by(|a, b| b.cmp(a));
                original.truncate(keep);
                all.sort_by(|a, b| b.cmp(a));
                prop_assert_eq!(all, original);
            }
        }
    }

    #[test]
    fn window_keeps_recent_rows() {
        let rows = vec![
            ((0u64, 'a'), 1),
            ((49, 'b'), 1),
            ((50, 'c'), 1),
            ((99, 'd'), 1),
        ];
        assert_eq!(
            retractions_outside_window(rows, 100, 50),
            vec![((0, 'a'), 1), ((49, 'b'), 1)]
        );
        assert!(retractions_outside_window(vec![((0u64, 'a'), 1)], 10, 100).is_empty());
    }
}
