//! A controllable clock: [`NowFn`] and [`ManualClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A clock of milliseconds since the Unix epoch, as persist and introspection take it.
pub type NowFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A clock that moves only when a test moves it.
///
/// Clones share the time. Hand [`ManualClock::now_fn`] to
/// [`HarnessBuilder::now`](super::HarnessBuilder::now): the replicas then bind source
/// data at this clock's time, so a test decides which timestamps appear.
///
/// # Examples
///
/// ```
/// use strata_testkit::harness::ManualClock;
///
/// let clock = ManualClock::new(1_000);
/// let now = clock.now_fn();
/// assert_eq!(now(), 1_000);
/// clock.advance(5);
/// assert_eq!(now(), 1_005);
/// clock.set(2_000);
/// assert_eq!(clock.now(), 2_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `millis` until moved.
    pub fn new(millis: u64) -> ManualClock {
        ManualClock {
            millis: Arc::new(AtomicU64::new(millis)),
        }
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }

    /// Moves the clock forward by `millis` (saturating).
    pub fn advance(&self, millis: u64) {
        let _ = self
            .millis
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(millis))
            });
    }

    /// Sets the clock to `millis`; a test may move it backwards to test that code copes.
    pub fn set(&self, millis: u64) {
        self.millis.store(millis, Ordering::SeqCst);
    }

    /// The clock as a [`NowFn`].
    pub fn now_fn(&self) -> NowFn {
        let millis = Arc::clone(&self.millis);
        Arc::new(move || millis.load(Ordering::SeqCst))
    }
}

/// The wall clock as a [`NowFn`].
pub fn system_now() -> NowFn {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}
