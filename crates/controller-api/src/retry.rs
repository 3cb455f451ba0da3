//! The one retry policy of Strata: capped exponential backoff with full jitter, after
//! object_store's `Backoff` and the AWS architecture note it cites.
//!
//! Retry `n` (counting from 1) waits a uniformly random time in
//! `[0, min(max, init × base^(n−1)))`. Full jitter spreads writers that failed together
//! (a lost CAS race, a store that answered 503 to all of them) so that they do not
//! collide again at the same instant. The delay is a pure function of the attempt and
//! a random fraction ([`BackoffConfig::delay`]), so the policy is tested without a
//! clock; [`Backoff`] adds the counting.
//!
//! It lives here, in the crate every other Strata crate depends on, so that persist,
//! the replica transport, the introspection writers and the controller all retry with
//! this one type. Like the rest of this crate it needs no runtime: a caller sleeps for
//! [`Backoff::next_delay`] on its own executor.
//!
//! ```
//! use std::time::Duration;
//! use strata_controller_api::retry::{Backoff, BackoffConfig};
//! let mut backoff = Backoff::new(BackoffConfig::PEER);
//! let first = backoff.next_delay();
//! assert!(first < Duration::from_millis(10));
//! assert_eq!(backoff.retries(), 1);
//! ```

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The shape of a backoff: its first ceiling, its largest ceiling and its growth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// The ceiling of the first retry's delay.
    pub init: Duration,
    /// The largest ceiling of any retry's delay.
    pub max: Duration,
    /// How much the ceiling grows per retry (at least 1).
    pub base: f64,
}

impl BackoffConfig {
    /// Storage calls that failed transiently: 1 ms growing to 128 ms.
    pub const STORE: BackoffConfig = BackoffConfig {
        init: Duration::from_millis(1),
        max: Duration::from_millis(128),
        base: 2.0,
    };

    /// A lost race for a shard's next version: 1 ms growing to 8 ms, since the winner
    /// has already moved on and the loser should retry soon.
    pub const CONTENTION: BackoffConfig = BackoffConfig {
        init: Duration::from_millis(1),
        max: Duration::from_millis(8),
        base: 2.0,
    };

    /// Waiting for something another process does (a replica to accept a connection,
    /// a replica's reader lease to let go of a dropped shard): 10 ms growing to 1 s.
    pub const PEER: BackoffConfig = BackoffConfig {
        init: Duration::from_millis(10),
        max: Duration::from_secs(1),
        base: 2.0,
    };

    /// A backoff that doubles from `init` up to `max`.
    pub const fn doubling(init: Duration, max: Duration) -> BackoffConfig {
        BackoffConfig {
            init,
            max,
            base: 2.0,
        }
    }

    /// The ceiling of retry `attempt` (1 is the first retry).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let base = if self.base.is_finite() {
            self.base.max(1.0)
        } else {
            1.0
        };
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let grown = self.init.as_secs_f64() * base.powi(exponent);
        let max = self.max.max(self.init);
        if grown.is_finite() && grown < max.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            max
        }
    }

    /// The delay of retry `attempt` for a random `fraction` in `[0, 1)`; a fraction
    /// outside that range is clamped into it.
    pub fn delay(&self, attempt: u32, fraction: f64) -> Duration {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self.ceiling(attempt).mul_f64(fraction)
    }
}

/// A random number for jitter, from std alone: every `RandomState` has fresh keys (seeded
/// from the OS once per thread), so hashing nothing with it gives a new SipHash output.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A uniformly random fraction in `[0, 1)`, for [`BackoffConfig::delay`].
pub fn random_fraction() -> f64 {
    let bits = random_u64() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The retries of one operation: counts them and draws each one's delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    retries: u32,
}

impl Backoff {
    /// A backoff that has not retried yet.
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, retries: 0 }
    }

    /// How many retries were taken so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Counts one more retry and returns how long to wait before it.
    pub fn next_delay(&mut self) -> Duration {
        self.retries = self.retries.saturating_add(1);
        self.config.delay(self.retries, random_fraction())
    }

    /// Starts over, as if no retry had been taken (after an attempt that worked).
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// The shape of this backoff.
    pub fn config(&self) -> BackoffConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_grow_then_cap() {
        let c = BackoffConfig::STORE;
        let table = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 4),
            (8, 128),
            (9, 128),
            (u32::MAX, 128),
        ];
        for (attempt, ms) in table {
            assert_eq!(c.ceiling(attempt), ms * MS, "attempt {attempt}");
        }
    }

    #[test]
    fn delays_stay_within_the_ceiling() {
        let c = BackoffConfig::CONTENTION;
        let table = [
            (1, 0.0, 0.0),
            (1, 0.5, 0.5),
            (4, 0.999, 7.992),
            (4, 7.0, 8.0),
            (2, -1.0, 0.0),
        ];
        for (attempt, fraction, ms) in table {
            let got = c.delay(attempt, fraction).as_secs_f64() * 1e3;
            assert!(
                (got - ms).abs() < 1e-6,
                "attempt {attempt} fraction {fraction}: {got}"
            );
        }
        assert_eq!(c.delay(3, f64::NAN), Duration::ZERO);
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        let odd = [
            BackoffConfig {
                init: Duration::ZERO,
                max: Duration::ZERO,
                base: 2.0,
            },
            BackoffConfig {
                init: 5 * MS,
                max: MS,
                base: 0.5,
            },
            BackoffConfig {
                init: MS,
                max: Duration::MAX,
                base: f64::INFINITY,
            },
            BackoffConfig {
                init: MS,
                max: Duration::from_secs(1),
                base: f64::NAN,
            },
        ];
        for c in odd {
            for attempt in [0, 1, 2, 70, u32::MAX] {
                let d = c.delay(attempt, 0.9);
                assert!(d <= c.max.max(c.init), "{c:?} {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn jitter_is_a_fraction_and_varies() {
        let draws: Vec<f64> = (0..1000).map(|_| random_fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)), "{draws:?}");
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|f| f.to_bits()).collect();
        assert!(
            distinct.len() > 990,
            "only {} distinct draws",
            distinct.len()
        );
        // Full jitter: the draws cover the whole range, not a band near the ceiling.
        assert!(draws.iter().any(|f| *f < 0.1) && draws.iter().any(|f| *f > 0.9));
    }

    #[test]
    fn the_named_policies() {
        let table = [
            (BackoffConfig::STORE, 1, 128),
            (BackoffConfig::CONTENTION, 1, 8),
            (BackoffConfig::PEER, 10, 1000),
            (BackoffConfig::doubling(20 * MS, 2000 * MS), 20, 2000),
        ];
        for (config, first_ms, cap_ms) in table {
            assert_eq!(config.ceiling(1), first_ms * MS, "{config:?}");
            assert_eq!(config.ceiling(2), 2 * first_ms * MS, "{config:?}");
            assert_eq!(config.ceiling(40), cap_ms * MS, "{config:?}");
        }
    }

    #[test]
    fn a_backoff_counts_its_retries() {
        let mut b = Backoff::new(BackoffConfig::STORE);
        for expected in 1..=10 {
            let d = b.next_delay();
            assert_eq!(b.retries(), expected);
            assert!(d <= BackoffConfig::STORE.ceiling(expected));
        }
        b.reset();
        assert_eq!(b.retries(), 0);
        assert!(b.next_delay() <= BackoffConfig::STORE.ceiling(1));
        assert_eq!(b.config(), BackoffConfig::STORE);
    }
}
