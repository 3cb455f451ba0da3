//! Timing and order statistics for end-to-end comparisons.

use std::time::Duration;

/// The fastest of `rounds` runs of `run`, each returning the time it measured. Both
/// sides of a comparison take the same number of rounds.
pub fn best_of(rounds: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..rounds).map(|_| run()).min().unwrap_or_default()
}

/// The sample at quantile `q` (0 to 1) by nearest rank: the smallest sample with at
/// least `q` of the samples at or below it. Sorts `samples`; NaN if there are none.
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// The median of `samples` ([`percentile`] at 0.5).
pub fn median(mut samples: Vec<f64>) -> f64 {
    percentile(&mut samples, 0.5)
}

/// A small deterministic generator (xorshift64) for bench workloads, so that every
/// run and both sides of a comparison see the same input.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed`; a zero seed (xorshift's fixed point) is replaced.
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{XorShift, best_of, median, percentile};

    fn check(samples: &[f64], q: f64, expected: f64) {
        let mut samples = samples.to_vec();
        assert_eq!(percentile(&mut samples, q), expected, "q = {q}");
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        check(&hundred, 0.5, 50.0);
        check(&hundred, 0.99, 99.0);
        check(&hundred, 1.0, 100.0);
        check(&hundred, 0.0, 1.0);
        check(&[7.0], 0.99, 7.0);
        check(&[3.0, 1.0, 2.0], 0.5, 2.0);
        assert!(percentile(&mut [], 0.5).is_nan());
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.0);
    }

    #[test]
    fn best_of_keeps_the_fastest_round() {
        let mut times = [5, 2, 9].into_iter().map(Duration::from_millis);
        let best = best_of(3, || times.next().unwrap_or_default());
        assert_eq!(best, Duration::from_millis(2));
        assert_eq!(best_of(0, || Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn xorshift_repeats_from_a_seed_and_never_sticks_at_zero() {
        let take = |seed| {
            let mut rng = XorShift::new(seed);
            (0..4).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        assert!(take(0).iter().all(|v| *v != 0));
    }
}
