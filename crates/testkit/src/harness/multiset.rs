//! Collections compared as multisets: consolidation and a readable difference.
//!
//! A snapshot is a list of `(row, diff)`; two snapshots are equal when every row's
//! diffs sum to the same count. Rows whose count is zero are absent.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use strata_controller_api::Row;

/// Sums the diffs of equal rows and drops rows whose count is zero.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Datum, Row};
/// use strata_testkit::harness::consolidate;
///
/// let a = Row::pack(&[Datum::Int64(1)]);
/// let b = Row::pack(&[Datum::Int64(2)]);
/// let multiset = consolidate(vec![(a.clone(), 2), (b.clone(), 1), (a.clone(), -1), (b, -1)]);
/// assert_eq!(multiset.into_iter().collect::<Vec<_>>(), vec![(a, 1)]);
/// ```
pub fn consolidate(updates: impl IntoIterator<Item = (Row, i64)>) -> BTreeMap<Row, i64> {
    let mut counts = BTreeMap::new();
    for (row, diff) in updates {
        *counts.entry(row).or_insert(0i64) += diff;
    }
    counts.retain(|_, count| *count != 0);
    counts
}

/// One row whose count differs between two multisets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDifference {
    /// The row.
    pub row: Row,
    /// Its count in the actual multiset (0 when absent).
    pub actual: i64,
    /// Its count in the expected multiset (0 when absent).
    pub expected: i64,
}

/// The rows whose counts differ, after consolidating both sides, in row order.
pub fn multiset_difference(
    actual: impl IntoIterator<Item = (Row, i64)>,
    expected: impl IntoIterator<Item = (Row, i64)>,
) -> Vec<RowDifference> {
    let actual = consolidate(actual);
    let expected = consolidate(expected);
    let mut rows: Vec<&Row> = actual.keys().chain(expected.keys()).collect();
    rows.sort();
    rows.dedup();
    rows.into_iter()
        .filter_map(|row| {
            let a = actual.get(row).copied().unwrap_or(0);
            let e = expected.get(row).copied().unwrap_or(0);
            (a != e).then(|| RowDifference {
                row: row.clone(),
                actual: a,
                expected: e,
            })
        })
        .collect()
}

/// A human-readable report of `differences`: one line per row, `+` for rows the actual
/// side has too many of and `-` for rows it lacks.
pub fn render_difference(differences: &[RowDifference]) -> String {
    let mut out = String::new();
    for d in differences {
        let sign = if d.actual > d.expected { '+' } else { '-' };
        let _ = writeln!(
            out,
            "{sign} {:?}: actual {} expected {}",
            d.row, d.actual, d.expected
        );
    }
    out
}

/// Asserts two collections are equal as multisets, panicking with a row-by-row
/// difference otherwise. Either side may be unconsolidated (`Vec<(Row, i64)>`, a
/// [`BTreeMap`] from [`Harness::snapshot_multiset`](super::Harness::snapshot_multiset),
/// or anything else that iterates over `(Row, i64)`).
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Datum, Row};
/// use strata_testkit::harness::assert_consolidated_eq;
///
/// let row = |x| Row::pack(&[Datum::Int64(x)]);
/// assert_consolidated_eq(
///     vec![(row(1), 1), (row(2), 3), (row(2), -2)],
///     vec![(row(2), 1), (row(1), 1)],
/// );
/// ```
///
/// ```should_panic
/// use strata_controller_api::{Datum, Row};
/// use strata_testkit::harness::assert_consolidated_eq;
///
/// let row = |x| Row::pack(&[Datum::Int64(x)]);
/// // panics: "collections differ (1 row(s)):\n- Row(..): actual 0 expected 1"
/// assert_consolidated_eq(vec![], vec![(row(1), 1)]);
/// ```
#[track_caller]
pub fn assert_consolidated_eq(
    actual: impl IntoIterator<Item = (Row, i64)>,
    expected: impl IntoIterator<Item = (Row, i64)>,
) {
    let differences = multiset_difference(actual, expected);
    if !differences.is_empty() {
        panic!(
            "collections differ ({} row(s)):\n{}",
            differences.len(),
            render_difference(&differences)
        );
    }
}

#[cfg(test)]
mod tests {
    use strata_controller_api::Datum;

    use super::*;

    fn row(x: i64) -> Row {
        Row::pack(&[Datum::Int64(x)])
    }

    fn check(actual: &[(i64, i64)], expected: &[(i64, i64)], differs: &[(i64, i64, i64)]) {
        let side = |s: &[(i64, i64)]| s.iter().map(|&(x, d)| (row(x), d)).collect::<Vec<_>>();
        let got: Vec<(i64, i64, i64)> = multiset_difference(side(actual), side(expected))
            .into_iter()
            .map(|d| {
                let x = (0..100).find(|x| row(*x) == d.row).unwrap();
                (x, d.actual, d.expected)
            })
            .collect();
        assert_eq!(got, differs, "actual {actual:?} expected {expected:?}");
    }

    #[test]
    fn differences() {
        check(&[], &[], &[]);
        check(&[(1, 1)], &[(1, 1)], &[]);
        check(&[(1, 2), (1, -1)], &[(1, 1)], &[]);
        check(&[(1, 1), (1, -1)], &[], &[]);
        check(&[(1, 1)], &[], &[(1, 1, 0)]);
        check(&[], &[(2, 3)], &[(2, 0, 3)]);
        check(
            &[(1, 1), (2, 2)],
            &[(2, 1), (3, 1)],
            &[(1, 1, 0), (2, 2, 1), (3, 0, 1)],
        );
        check(&[(4, -1)], &[], &[(4, -1, 0)]);
    }

    #[test]
    fn rendering_names_each_row_and_both_counts() {
        let text = render_difference(&multiset_difference(
            vec![(row(1), 2)],
            vec![(row(1), 1), (row(2), 1)],
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with('+') && lines[0].ends_with("actual 2 expected 1"));
        assert!(lines[1].starts_with('-') && lines[1].ends_with("actual 0 expected 1"));
    }

    #[test]
    fn assertion_reports_the_difference() {
        let caught = std::panic::catch_unwind(|| {
            assert_consolidated_eq(vec![(row(7), 1)], vec![]);
        })
        .unwrap_err();
        let message = caught.downcast_ref::<String>().unwrap();
        assert!(
            message.starts_with("collections differ (1 row(s))"),
            "{message}"
        );
        assert!(message.contains("actual 1 expected 0"), "{message}");
    }
}
