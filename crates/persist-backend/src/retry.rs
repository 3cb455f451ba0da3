//! The one retry policy: capped exponential backoff with full jitter, after
//! object_store's `Backoff` and the AWS architecture note it cites.
//!
//! Retry `n` (counting from 1) waits a uniformly random time in
//! `[0, min(max, init × base^(n−1)))`. Full jitter spreads writers that failed together
//! (a lost CAS race, a store that answered 503 to all of them) so that they do not
//! collide again at the same instant. The delay is a pure function of the attempt and
//! a random fraction ([`BackoffConfig::delay`]), so the policy is tested without a
//! clock; [`Backoff`] adds the counting and the sleep.
//!
//! Exported, so that the crates above persist retry with the same type rather than
//! hand-rolled loops.

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

    /// Waiting for something another process does (a controller finalizing a shard, a
    /// replica reconnecting): 10 ms growing to 1 s.
    pub const PEER: BackoffConfig = BackoffConfig {
        init: Duration::from_millis(10),
        max: Duration::from_secs(1),
        base: 2.0,
    };

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

/// A random number for jitter, without a dependency on an RNG crate.
pub(crate) fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A uniformly random fraction in `[0, 1)`.
pub(crate) fn random_fraction() -> f64 {
    let bits = random_u64() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

/// The retries of one operation: counts them and sleeps between them.
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

    /// Counts one more retry and waits for its delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
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
    fn a_backoff_counts_its_retries() {
        let mut b = Backoff::new(BackoffConfig::STORE);
        for expected in 1..=10 {
            let d = b.next_delay();
            assert_eq!(b.retries(), expected);
            assert!(d <= BackoffConfig::STORE.ceiling(expected));
        }
    }
}
