//! The leaf of the crate: the update types, and the order-preserving `u64` codes of
//! times and frontiers with their arithmetic. It depends on nothing else in the crate.
//!
//! A frontier code is `Option<u64>`: `Some(t)` is the frontier `{t}`, `None` is the
//! empty frontier `[]`, which is beyond every time.

use strata_controller_api::{Antichain, Row, StorageTimestamp};

/// The data of one update: a row, or an error that the source reported in its place.
pub type SourceData = Result<Row, String>;

/// One update as a caller writes it: the data (a row or an error), a time and a diff.
pub type Update<T> = (SourceData, T, i64);

/// One update in the shard's internal time domain: `(data, time code, diff)`, where the
/// time code is the timestamp's 8-byte encoding as a big-endian `u64`.
pub type CodedUpdate = (SourceData, u64, i64);

/// A time as its order-preserving `u64` code.
pub fn time_code<T: StorageTimestamp>(t: &T) -> u64 {
    u64::from_be_bytes(t.encode())
}

/// The time of a code.
pub fn time_of<T: StorageTimestamp>(code: u64) -> T {
    T::decode(code.to_be_bytes())
}

/// A frontier of a totally ordered time as a code (`None` = `[]`).
pub fn frontier_code<T: StorageTimestamp>(f: &Antichain<T>) -> Option<u64> {
    f.elements().iter().map(time_code).min()
}

/// The frontier of a code.
pub fn frontier_of<T: StorageTimestamp>(code: Option<u64>) -> Antichain<T> {
    match code {
        Some(c) => Antichain::from_elem(time_of(c)),
        None => Antichain::new(),
    }
}

/// Renders a frontier for error messages.
pub(crate) fn render<T: StorageTimestamp>(f: &Antichain<T>) -> String {
    format!("{:?}", f.elements())
}

/// Whether time code `t` is before the frontier `f` (`None` = `[]`, beyond everything).
pub(crate) fn before(t: u64, f: Option<u64>) -> bool {
    f.is_none_or(|f| t < f)
}

/// The lesser of two frontiers (`None` = `[]` is the greatest).
pub(crate) fn meet(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (x, None) | (None, x) => x,
    }
}

/// The greater of two frontiers.
pub(crate) fn join(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

/// Whether frontier `a` is not beyond frontier `b`.
pub(crate) fn frontier_le(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => a <= b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_arithmetic() {
        let check = |a, b, m, j, le| {
            assert_eq!(meet(a, b), m, "meet {a:?} {b:?}");
            assert_eq!(join(a, b), j, "join {a:?} {b:?}");
            assert_eq!(frontier_le(a, b), le, "le {a:?} {b:?}");
        };
        check(Some(1), Some(2), Some(1), Some(2), true);
        check(Some(2), Some(1), Some(1), Some(2), false);
        check(None, Some(2), Some(2), None, false);
        check(Some(2), None, Some(2), None, true);
        check(None, None, None, None, true);
        assert!(before(3, None));
        assert!(!before(3, Some(3)));
    }

    #[test]
    fn codes_preserve_order_and_round_trip() {
        use strata_controller_api::Timestamp;
        let times = [0u64, 1, 2, 1 << 40, u64::MAX];
        for pair in times.windows(2) {
            let (a, b) = (Timestamp::new(pair[0]), Timestamp::new(pair[1]));
            assert!(time_code(&a) < time_code(&b));
            assert_eq!(time_of::<Timestamp>(time_code(&a)), a);
        }
        assert_eq!(frontier_code::<Timestamp>(&Antichain::new()), None);
        let f = Antichain::from_elem(Timestamp::new(5));
        assert_eq!(frontier_of::<Timestamp>(frontier_code(&f)), f);
    }
}
