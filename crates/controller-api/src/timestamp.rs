//! Timestamps: the [`StorageTimestamp`] trait and the default millisecond [`Timestamp`].
//!
//! A storage timestamp is a timely [`TimelyTimestamp`] that is also a differential
//! [`Lattice`] and totally ordered. On top of that Strata needs a fixed 8-byte codec
//! (for shard state and Parquet parts), the ability to step one tick forward or back,
//! and a conversion from wall-clock epoch milliseconds.

use std::fmt;

use differential_dataflow::lattice::Lattice;
use serde::{Deserialize, Serialize};
use timely::order::{PartialOrder, TotalOrder};
use timely::progress::Antichain;
use timely::progress::Timestamp as TimelyTimestamp;
use timely::progress::timestamp::{PathSummary, Refines};

/// The timestamp contract every Strata component relies on.
///
/// # Contract
///
/// - The order is total, and agrees with [`PartialOrder`] and [`Ord`].
/// - `decode(encode(t)) == t`, and the encoding preserves order when compared as
///   big-endian bytes.
/// - `step_forward` is the least time strictly greater than `self`, saturating at
///   [`StorageTimestamp::maximum`]; `step_back` is the greatest time strictly less, or
///   `None` at the minimum.
pub trait StorageTimestamp:
    TimelyTimestamp
    + Lattice
    + TotalOrder
    + Copy
    + Ord
    + std::hash::Hash
    + Send
    + Sync
    + fmt::Display
    + 'static
{
    /// The greatest time.
    fn maximum() -> Self;
    /// The fixed 8-byte, order-preserving encoding.
    fn encode(&self) -> [u8; 8];
    /// The inverse of [`StorageTimestamp::encode`]. Every 8-byte value is a valid time.
    fn decode(bytes: [u8; 8]) -> Self;
    /// The next time, saturating at the maximum.
    fn step_forward(&self) -> Self;
    /// The previous time, or `None` at the minimum.
    fn step_back(&self) -> Option<Self>;
    /// `self - other`, saturating at the minimum.
    fn saturating_sub(&self, other: &Self) -> Self;
    /// The greatest multiple of `granularity` that is not beyond `self`. A zero
    /// granularity leaves `self` unchanged.
    fn round_down(&self, granularity: &Self) -> Self;
    /// The time that corresponds to a wall-clock instant in milliseconds since the epoch.
    fn from_epoch_millis(millis: u64) -> Self;
}

/// The default timestamp: milliseconds since the Unix epoch.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{StorageTimestamp, Timestamp};
/// let t = Timestamp::new(10);
/// assert_eq!(t.step_forward(), Timestamp::new(11));
/// assert_eq!(t.step_back(), Some(Timestamp::new(9)));
/// assert_eq!(Timestamp::new(0).step_back(), None);
/// assert_eq!(Timestamp::decode(t.encode()), t);
/// assert_eq!(Timestamp::new(1234).round_down(&Timestamp::new(100)), Timestamp::new(1200));
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// A timestamp from milliseconds.
    pub const fn new(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// The milliseconds of this timestamp.
    pub const fn as_millis(&self) -> u64 {
        self.0
    }
}

impl From<u64> for Timestamp {
    fn from(millis: u64) -> Self {
        Timestamp(millis)
    }
}

impl From<Timestamp> for u64 {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl PartialOrder for Timestamp {
    fn less_equal(&self, other: &Self) -> bool {
        self.0 <= other.0
    }
}

impl TotalOrder for Timestamp {}

impl PathSummary<Timestamp> for Timestamp {
    fn results_in(&self, src: &Timestamp) -> Option<Timestamp> {
        self.0.checked_add(src.0).map(Timestamp)
    }

    fn followed_by(&self, other: &Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Timestamp)
    }
}

impl TimelyTimestamp for Timestamp {
    type Summary = Timestamp;

    fn minimum() -> Self {
        Timestamp(0)
    }
}

impl Refines<()> for Timestamp {
    fn to_inner(_other: ()) -> Self {
        Timestamp(0)
    }

    fn to_outer(self) {}

    fn summarize(_path: Self::Summary) {}
}

impl Lattice for Timestamp {
    fn join(&self, other: &Self) -> Self {
        Timestamp(self.0.max(other.0))
    }

    fn meet(&self, other: &Self) -> Self {
        Timestamp(self.0.min(other.0))
    }
}

impl StorageTimestamp for Timestamp {
    fn maximum() -> Self {
        Timestamp(u64::MAX)
    }

    fn encode(&self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    fn decode(bytes: [u8; 8]) -> Self {
        Timestamp(u64::from_be_bytes(bytes))
    }

    fn step_forward(&self) -> Self {
        Timestamp(self.0.saturating_add(1))
    }

    fn step_back(&self) -> Option<Self> {
        self.0.checked_sub(1).map(Timestamp)
    }

    fn saturating_sub(&self, other: &Self) -> Self {
        Timestamp(self.0.saturating_sub(other.0))
    }

    fn round_down(&self, granularity: &Self) -> Self {
        match granularity.0 {
            0 => *self,
            g => Timestamp(self.0 - self.0 % g),
        }
    }

    fn from_epoch_millis(millis: u64) -> Self {
        Timestamp(millis)
    }
}

/// Whether the frontier `new` is strictly beyond `current`. Times are totally ordered,
/// so a frontier is one time, or none once closed; this compares them as such, which
/// is cheaper than the general antichain order on hot paths.
pub fn frontier_advances<T: StorageTimestamp>(current: &Antichain<T>, new: &Antichain<T>) -> bool {
    match (current.as_option(), new.as_option()) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(current), Some(new)) => current < new,
    }
}

/// Makes `current` a copy of the frontier `new` (see [`frontier_advances`]), without
/// the general antichain copy.
pub fn set_frontier<T: StorageTimestamp>(current: &mut Antichain<T>, new: &Antichain<T>) {
    *current = match new.as_option() {
        Some(time) => Antichain::from_elem(*time),
        None => Antichain::new(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frontier_advances_agrees_with_the_antichain_order() {
        let f =
            |t: Option<u64>| t.map_or_else(Antichain::new, |t| Antichain::from_elem(Timestamp(t)));
        let frontiers = [Some(0), Some(1), Some(7), Some(u64::MAX), None];
        for a in frontiers {
            for b in frontiers {
                let (a, b) = (f(a), f(b));
                assert_eq!(
                    frontier_advances(&a, &b),
                    PartialOrder::less_than(&a, &b),
                    "{a:?} -> {b:?}"
                );
                let mut copy = f(Some(3));
                set_frontier(&mut copy, &b);
                assert_eq!(copy, b);
            }
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_preserves_order(a: u64, b: u64) {
            let (ta, tb) = (Timestamp::new(a), Timestamp::new(b));
            prop_assert_eq!(Timestamp::decode(ta.encode()), ta);
            prop_assert_eq!(ta.encode().cmp(&tb.encode()), ta.cmp(&tb));
        }

        #[test]
        fn step_forward_then_back_is_identity_below_max(a in 0u64..u64::MAX) {
            let t = Timestamp::new(a);
            prop_assert_eq!(t.step_forward().step_back(), Some(t));
        }

        #[test]
        fn round_down_is_a_multiple_not_beyond(a: u64, g in 1u64..1_000_000) {
            let r = Timestamp::new(a).round_down(&Timestamp::new(g));
            prop_assert!(r.as_millis() <= a);
            prop_assert_eq!(r.as_millis() % g, 0);
            prop_assert!(a - r.as_millis() < g);
        }
    }

    #[test]
    fn saturation_at_the_edges() {
        assert_eq!(Timestamp::maximum().step_forward(), Timestamp::maximum());
        assert_eq!(
            Timestamp::new(3).saturating_sub(&Timestamp::new(5)),
            Timestamp::minimum()
        );
        assert_eq!(
            Timestamp::new(7).round_down(&Timestamp::new(0)),
            Timestamp::new(7)
        );
    }
}
