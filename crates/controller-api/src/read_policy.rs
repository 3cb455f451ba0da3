//! [`ReadPolicy`]: how a collection's own since follows its upper.
//!
//! A policy is plain data, so it can be compared, logged, serialized and sent to another
//! thread. [`ReadPolicy::frontier`] is a pure function from an upper to the since the
//! policy advises.

use serde::{Deserialize, Serialize};
use timely::progress::frontier::AntichainRef;
use timely::progress::{Antichain, Timestamp as TimelyTimestamp};

use crate::timestamp::{StorageTimestamp, Timestamp};

/// How far a collection's since may follow its upper.
///
/// The controller holds an *implied capability* for every collection. Whenever the
/// collection's upper moves, it asks the policy for [`ReadPolicy::frontier`] of the new
/// upper and advances the implied capability to the join of the old capability and that
/// frontier. The controller only ever advances a since, so advice that is behind the
/// current since changes nothing; this is why "no advice" is spelled `[minimum]`.
///
/// # Semantics of [`ReadPolicy::frontier`]
///
/// | policy | non-empty upper | empty upper `[]` |
/// |---|---|---|
/// | `NoPolicy { initial_since }` | `initial_since` | `initial_since` |
/// | `ValidFrom(f)` | `f` | `f` |
/// | `LagWriteFrontier { lag, max_granularity }` | each `t` becomes `t - lag` (saturating), then, if `lag` is not the minimum, rounded down to a multiple of `min(lag, max_granularity)` | `[minimum]` |
/// | `StepBack` | each `t` becomes `t - 1`; the minimum stays the minimum | `[minimum]` |
/// | `Multiple(ps)` | the meet (element-wise lower bound) of every member's frontier | same |
/// | `Multiple([])` | `[minimum]` | `[minimum]` |
///
/// Guarantees, for a non-empty upper:
/// - every policy except `NoPolicy` and `ValidFrom` (and a `Multiple` containing one)
///   advises a frontier that is not beyond the upper, so the latest complete time stays
///   readable;
/// - the advice is monotone: a greater upper never yields a lesser frontier.
///
/// The empty upper means the collection is closed; the lag-style policies then give no
/// advice rather than allowing compaction to `[]`, because dropping a collection is the
/// caller's decision, not the policy's.
///
/// # Cost
///
/// `frontier` allocates one antichain per member policy; with a total order each has at
/// most one element.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Antichain, ReadPolicy, Timestamp};
/// let t = Timestamp::new;
/// let upper = Antichain::from_elem(t(1_234));
///
/// let lag = ReadPolicy::lag_writes_by(t(100), t(1_000));
/// assert_eq!(lag.frontier(upper.borrow()), Antichain::from_elem(t(1_100)));
///
/// let back = ReadPolicy::step_back();
/// assert_eq!(back.frontier(upper.borrow()), Antichain::from_elem(t(1_233)));
///
/// // The meet of both is the more conservative one.
/// let both = ReadPolicy::Multiple(vec![lag, back]);
/// assert_eq!(both.frontier(upper.borrow()), Antichain::from_elem(t(1_100)));
///
/// // A closed collection gets no advice from a lag-style policy.
/// assert_eq!(
///     ReadPolicy::<Timestamp>::step_back().frontier(Antichain::new().borrow()),
///     Antichain::from_elem(t(0)),
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadPolicy<T = Timestamp> {
    /// A fixed since, chosen when the collection was created.
    NoPolicy {
        /// The since to keep.
        initial_since: Antichain<T>,
    },
    /// A fixed since chosen by the caller: reads must stay valid from this frontier on.
    ValidFrom(Antichain<T>),
    /// Trail the upper by `lag`, in steps of at most `max_granularity`, so the since
    /// moves in coarse jumps instead of on every tick.
    LagWriteFrontier {
        /// How far behind the upper the since stays.
        lag: T,
        /// The largest rounding step; the step is `min(lag, max_granularity)`.
        max_granularity: T,
    },
    /// Trail the upper by one tick: the latest complete time stays readable.
    StepBack,
    /// The most conservative of several policies.
    Multiple(Vec<ReadPolicy<T>>),
}

impl<T: StorageTimestamp> ReadPolicy<T> {
    /// A policy that keeps the since one tick behind the upper.
    pub fn step_back() -> Self {
        ReadPolicy::StepBack
    }

    /// A policy that keeps the since `lag` behind the upper, rounded down to a multiple
    /// of `min(lag, max_granularity)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use strata_controller_api::{Antichain, ReadPolicy, Timestamp};
    /// let p = ReadPolicy::lag_writes_by(Timestamp::new(10), Timestamp::new(4));
    /// // 37 - 10 = 27, rounded down to a multiple of min(10, 4) = 4.
    /// let upper = Antichain::from_elem(Timestamp::new(37));
    /// assert_eq!(p.frontier(upper.borrow()), Antichain::from_elem(Timestamp::new(24)));
    /// ```
    pub fn lag_writes_by(lag: T, max_granularity: T) -> Self {
        ReadPolicy::LagWriteFrontier {
            lag,
            max_granularity,
        }
    }

    /// The since this policy advises for a collection whose upper is `upper`. See the
    /// type's documentation for the semantics of each variant.
    pub fn frontier(&self, upper: AntichainRef<'_, T>) -> Antichain<T> {
        match self {
            ReadPolicy::NoPolicy { initial_since } => initial_since.clone(),
            ReadPolicy::ValidFrom(frontier) => frontier.clone(),
            ReadPolicy::LagWriteFrontier {
                lag,
                max_granularity,
            } => map_non_empty(upper, |t| lag_time(t, lag, max_granularity)),
            ReadPolicy::StepBack => map_non_empty(upper, |t| t.step_back().unwrap_or(*t)),
            ReadPolicy::Multiple(policies) if policies.is_empty() => minimum_frontier(),
            ReadPolicy::Multiple(policies) => {
                let mut meet = Antichain::new();
                for policy in policies {
                    // Inserting keeps only the minimal elements, which is the meet.
                    meet.extend(policy.frontier(upper));
                }
                meet
            }
        }
    }
}

fn minimum_frontier<T: StorageTimestamp>() -> Antichain<T> {
    Antichain::from_elem(<T as TimelyTimestamp>::minimum())
}

/// Applies `f` to every element of a non-empty upper; the empty upper gets `[minimum]`.
fn map_non_empty<T: StorageTimestamp>(
    upper: AntichainRef<'_, T>,
    f: impl Fn(&T) -> T,
) -> Antichain<T> {
    match upper.len() {
        0 => minimum_frontier(),
        // The common case (totally ordered times): no antichain insertion needed.
        1 => Antichain::from_elem(f(&upper[0])),
        _ => upper.iter().map(f).collect(),
    }
}

fn lag_time<T: StorageTimestamp>(time: &T, lag: &T, max_granularity: &T) -> T {
    if *lag == <T as TimelyTimestamp>::minimum() {
        return *time;
    }
    let lagged = time.saturating_sub(lag);
    let granularity = std::cmp::min(*lag, *max_granularity);
    lagged.round_down(&granularity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use timely::PartialOrder;

    type P = ReadPolicy<Timestamp>;

    fn t(ms: u64) -> Timestamp {
        Timestamp::new(ms)
    }

    fn f(elems: &[u64]) -> Antichain<Timestamp> {
        elems.iter().copied().map(Timestamp::new).collect()
    }

    fn check(policy: P, upper: &[u64], expected: &[u64]) {
        let got = policy.frontier(f(upper).borrow());
        assert_eq!(got, f(expected), "{policy:?} at upper {upper:?}");
    }

    const MAX: u64 = u64::MAX;

    #[test]
    fn no_policy_and_valid_from_are_fixed() {
        check(
            P::NoPolicy {
                initial_since: f(&[5]),
            },
            &[100],
            &[5],
        );
        check(
            P::NoPolicy {
                initial_since: f(&[5]),
            },
            &[],
            &[5],
        );
        check(
            P::NoPolicy {
                initial_since: f(&[500]),
            },
            &[0],
            &[500],
        );
        check(
            P::NoPolicy {
                initial_since: f(&[]),
            },
            &[10],
            &[],
        );
        check(P::ValidFrom(f(&[7])), &[3], &[7]);
        check(P::ValidFrom(f(&[7])), &[], &[7]);
        check(P::ValidFrom(f(&[0])), &[MAX], &[0]);
        check(P::ValidFrom(f(&[])), &[], &[]);
    }

    #[test]
    fn lag_write_frontier() {
        let lag = |l, g| P::lag_writes_by(t(l), t(g));
        // The empty upper gives no advice.
        check(lag(10, 100), &[], &[0]);
        // A zero lag follows the upper exactly, with no rounding.
        check(lag(0, 100), &[37], &[37]);
        check(lag(0, 0), &[MAX], &[MAX]);
        // The minimum upper saturates.
        check(lag(10, 100), &[0], &[0]);
        check(lag(10, 100), &[9], &[0]);
        // Granularity is min(lag, max_granularity).
        check(lag(10, 100), &[37], &[20]);
        check(lag(10, 4), &[37], &[24]);
        check(lag(10, 10), &[40], &[30]);
        check(lag(1, 1000), &[37], &[36]);
        // A zero max_granularity means no rounding.
        check(lag(10, 0), &[37], &[27]);
        // u64 edges.
        check(lag(MAX, MAX), &[MAX], &[0]);
        check(lag(1, MAX), &[MAX], &[MAX - 1]);
        check(lag(1000, 1000), &[MAX], &[(MAX - 1000) / 1000 * 1000]);
        check(lag(MAX, 1), &[5], &[0]);
    }

    #[test]
    fn step_back() {
        check(P::step_back(), &[], &[0]);
        check(P::step_back(), &[0], &[0]);
        check(P::step_back(), &[1], &[0]);
        check(P::step_back(), &[100], &[99]);
        check(P::step_back(), &[MAX], &[MAX - 1]);
    }

    #[test]
    fn multiple_is_the_meet() {
        check(P::Multiple(vec![]), &[100], &[0]);
        check(P::Multiple(vec![]), &[], &[0]);
        check(P::Multiple(vec![P::step_back()]), &[100], &[99]);
        check(
            P::Multiple(vec![P::step_back(), P::lag_writes_by(t(10), t(10))]),
            &[100],
            &[90],
        );
        check(
            P::Multiple(vec![P::ValidFrom(f(&[95])), P::step_back()]),
            &[100],
            &[95],
        );
        check(
            P::Multiple(vec![P::ValidFrom(f(&[200])), P::step_back()]),
            &[100],
            &[99],
        );
        // The empty frontier is the top: it never lowers the meet.
        check(
            P::Multiple(vec![P::ValidFrom(f(&[])), P::step_back()]),
            &[100],
            &[99],
        );
        check(
            P::Multiple(vec![P::ValidFrom(f(&[])), P::ValidFrom(f(&[]))]),
            &[100],
            &[],
        );
        // A closed collection: lag-style members give no advice, so the meet is minimum.
        check(
            P::Multiple(vec![P::ValidFrom(f(&[50])), P::step_back()]),
            &[],
            &[0],
        );
        // Nesting.
        check(
            P::Multiple(vec![
                P::Multiple(vec![P::step_back()]),
                P::Multiple(vec![P::ValidFrom(f(&[3]))]),
            ]),
            &[MAX],
            &[3],
        );
    }

    #[test]
    fn serde_round_trip_keeps_the_policy() {
        let p = P::Multiple(vec![
            P::step_back(),
            P::lag_writes_by(t(1), t(2)),
            P::ValidFrom(f(&[3])),
        ]);
        let back: P = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0),
            Just(1),
            Just(MAX - 1),
            Just(MAX),
            0u64..10_000,
            any::<u64>()
        ]
    }

    fn policy() -> impl Strategy<Value = P> {
        let leaf = prop_oneof![
            proptest::option::of(edge_u64()).prop_map(|s| P::NoPolicy {
                initial_since: s.into_iter().map(Timestamp::new).collect()
            }),
            proptest::option::of(edge_u64())
                .prop_map(|s| P::ValidFrom(s.into_iter().map(Timestamp::new).collect())),
            (edge_u64(), edge_u64()).prop_map(|(l, g)| P::lag_writes_by(t(l), t(g))),
            Just(P::step_back()),
        ];
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(P::Multiple)
        })
    }

    /// Whether the policy's advice follows the upper (no fixed frontier anywhere in it).
    fn follows_upper(p: &P) -> bool {
        match p {
            P::NoPolicy { .. } | P::ValidFrom(_) => false,
            P::LagWriteFrontier { .. } | P::StepBack => true,
            P::Multiple(ps) => ps.iter().all(follows_upper),
        }
    }

    /// A simple model for single-element uppers over `u64`.
    fn model(p: &P, upper: u64) -> Option<u64> {
        match p {
            P::NoPolicy { initial_since: s } | P::ValidFrom(s) => {
                s.as_option().map(|t| t.as_millis())
            }
            P::StepBack => Some(upper.saturating_sub(1)),
            P::LagWriteFrontier {
                lag,
                max_granularity,
            } => {
                let (lag, gran) = (lag.as_millis(), max_granularity.as_millis());
                if lag == 0 {
                    return Some(upper);
                }
                let lagged = upper.saturating_sub(lag);
                let g = lag.min(gran);
                Some(if g == 0 { lagged } else { lagged - lagged % g })
            }
            P::Multiple(ps) if ps.is_empty() => Some(0),
            P::Multiple(ps) => ps.iter().filter_map(|p| model(p, upper)).min(),
        }
    }

    proptest! {
        #[test]
        fn advice_is_not_beyond_a_non_empty_upper(p in policy(), u in edge_u64()) {
            let upper = f(&[u]);
            let since = p.frontier(upper.borrow());
            if follows_upper(&p) {
                prop_assert!(PartialOrder::less_equal(&since, &upper), "{since:?} beyond {upper:?}");
            }
        }

        #[test]
        fn advice_is_monotone_in_the_upper(p in policy(), a in edge_u64(), b in edge_u64()) {
            let (lo, hi) = (a.min(b), a.max(b));
            let s_lo = p.frontier(f(&[lo]).borrow());
            let s_hi = p.frontier(f(&[hi]).borrow());
            prop_assert!(PartialOrder::less_equal(&s_lo, &s_hi), "{s_lo:?} at {lo} vs {s_hi:?} at {hi}");
        }

        #[test]
        fn advice_matches_the_model(p in policy(), u in edge_u64()) {
            let got = p.frontier(f(&[u]).borrow()).as_option().map(|t| t.as_millis());
            prop_assert_eq!(got, model(&p, u));
        }

        #[test]
        fn lag_style_policies_give_no_advice_for_the_empty_upper(p in policy()) {
            if follows_upper(&p) {
                prop_assert_eq!(p.frontier(Antichain::new().borrow()), f(&[0]));
            }
        }
    }
}
