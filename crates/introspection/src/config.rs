//! [`ManagerConfig`]: how often a collection manager ticks, batches, retries and
//! truncates, and which clock it reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A wall clock in milliseconds since the Unix epoch. Injectable, so tests choose the
/// times updates are written at.
pub type NowFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system wall clock.
pub fn system_now() -> NowFn {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Tunables of a [`CollectionManager`](crate::CollectionManager).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_introspection::ManagerConfig;
/// let cfg = ManagerConfig::default();
/// assert_eq!(cfg.backoff(1), cfg.initial_backoff);
/// assert_eq!(cfg.backoff(100), cfg.max_backoff);
/// ```
#[derive(Clone)]
pub struct ManagerConfig {
    /// How often each collection's upper is moved forward when nothing is written.
    pub tick_interval: Duration,
    /// How long writes are collected before they are appended together.
    pub batch_duration: Duration,
    /// How often history collections are truncated (also once at start-up).
    pub truncation_interval: Duration,
    /// The first delay after a failed persist operation.
    pub initial_backoff: Duration,
    /// The cap of the exponential backoff.
    pub max_backoff: Duration,
    /// How many failed attempts one write makes before it is left for the next tick.
    pub max_attempts: u32,
    /// How many upper mismatches one write tolerates before it is left for the next tick.
    pub max_cas_retries: u32,
    /// The clock that chooses write times.
    pub now: NowFn,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            tick_interval: Duration::from_secs(1),
            batch_duration: Duration::from_millis(100),
            truncation_interval: Duration::from_secs(60 * 60),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(2),
            max_attempts: 6,
            max_cas_retries: 100,
            now: system_now(),
        }
    }
}

impl ManagerConfig {
    /// The delay before attempt `failures + 1`: `initial_backoff * 2^(failures - 1)`,
    /// capped at `max_backoff`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }

    /// The current time in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        (self.now)()
    }
}

impl fmt::Debug for ManagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerConfig")
            .field("tick_interval", &self.tick_interval)
            .field("batch_duration", &self.batch_duration)
            .field("truncation_interval", &self.truncation_interval)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("max_attempts", &self.max_attempts)
            .field("max_cas_retries", &self.max_cas_retries)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failures: u32, expected_ms: u64) {
        let cfg = ManagerConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..ManagerConfig::default()
        };
        assert_eq!(
            cfg.backoff(failures),
            Duration::from_millis(expected_ms),
            "{failures}"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        check(0, 10);
        check(1, 10);
        check(2, 20);
        check(3, 40);
        check(4, 80);
        check(5, 100);
        check(u32::MAX, 100);
    }
}
