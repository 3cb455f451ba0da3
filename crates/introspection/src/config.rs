//! [`ManagerConfig`]: how often a collection manager ticks, batches, retries and
//! truncates, and which clock it reads.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::retry::BackoffConfig;

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
/// assert_eq!(cfg.backoff.ceiling(1), Duration::from_millis(20));
/// assert_eq!(cfg.backoff.ceiling(100), Duration::from_secs(2));
/// ```
#[derive(Clone)]
pub struct ManagerConfig {
    /// How often each collection's upper is moved forward when nothing is written.
    pub tick_interval: Duration,
    /// How long writes are collected before they are appended together.
    pub batch_duration: Duration,
    /// How often history collections are truncated (also once at start-up).
    pub truncation_interval: Duration,
    /// How long to wait after a failed persist operation (the shared policy of
    /// [`strata_controller_api::retry`]).
    pub backoff: BackoffConfig,
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
            backoff: BackoffConfig::doubling(Duration::from_millis(20), Duration::from_secs(2)),
            max_attempts: 6,
            max_cas_retries: 100,
            now: system_now(),
        }
    }
}

impl ManagerConfig {
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
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("max_cas_retries", &self.max_cas_retries)
            .finish_non_exhaustive()
    }
}
