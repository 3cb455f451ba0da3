//! [`FaultHandle`]: the shared, runtime-changeable state of one faulty store: its config,
//! its seeded generator and its counters.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use strata_controller_api::rng::SplitMix64;
use tokio::time::Instant;

use super::config::{FaultConfig, FaultCounters, OpClass};
use super::plan::{Draws, Plan, Verdict, plan};

#[derive(Debug)]
struct State {
    seed: u64,
    config: FaultConfig,
    rng: SplitMix64,
    counters: FaultCounters,
}

/// A cheap, cloneable handle to a faulty store's knobs and counters. Changes apply to
/// the next call the store sees, from any thread.
///
/// One short mutex guards the config, the generator and the counters together, so each
/// call's decision and its counting are atomic.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    state: Arc<Mutex<State>>,
}

impl FaultHandle {
    pub(crate) fn new(seed: u64, config: FaultConfig) -> Self {
        FaultHandle {
            state: Arc::new(Mutex::new(State {
                seed,
                config,
                rng: SplitMix64::new(seed),
                counters: FaultCounters::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every panic (each update is one assignment),
        // so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The seed this store's fault sequence started from.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// A copy of the current config.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Replaces the whole config.
    pub fn set_config(&self, config: FaultConfig) {
        self.lock().config = config;
    }

    /// Changes the config in place.
    pub fn update(&self, change: impl FnOnce(&mut FaultConfig)) {
        change(&mut self.lock().config);
    }

    /// Injects nothing from now on: the default config. Counters are kept.
    pub fn clear_faults(&self) {
        self.set_config(FaultConfig::default());
    }

    /// Sets the determinate error rate of one class of operation.
    pub fn set_error_rate(&self, class: OpClass, rate: f64) {
        self.update(|c| c.error_rates.set(class, rate));
    }

    /// Sets the determinate error rate of every class of operation.
    pub fn set_error_rate_all(&self, rate: f64) {
        self.update(|c| *c = c.clone().with_error_rate_all(rate));
    }

    /// Sets the chance that a successful mutation is reported as failed.
    pub fn set_indeterminate_rate(&self, rate: f64) {
        self.update(|c| c.indeterminate_rate = rate);
    }

    /// Sets the added latency: `fixed` plus a uniform draw from `[0, jitter]`.
    ///
    /// Delays sleep on tokio's timer, so a store with latency must be driven by a tokio
    /// runtime with time enabled (`#[tokio::test]` is); with a paused clock
    /// (`start_paused = true`) the delays cost no wall-clock time.
    pub fn set_latency(&self, fixed: Duration, jitter: Duration) {
        self.update(|c| *c = c.clone().with_latency(fixed, jitter));
    }

    /// Turns the manual unavailability switch on or off. While it is on, every call
    /// fails. Turning it off leaves a time-based window in place.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.update(|c| c.unavailable = unavailable);
    }

    /// Makes every call fail for `duration` from now, on tokio's clock. A duration
    /// too long for the clock lasts until [`FaultHandle::make_available`].
    pub fn unavailable_for(&self, duration: Duration) {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
        let now = Instant::now();
        let until = now
            .checked_add(duration)
            .or_else(|| now.checked_add(CENTURY));
        self.update(|c| match until {
            Some(until) => c.unavailable_until = Some(until),
            None => c.unavailable = true,
        });
    }

    /// Lifts all unavailability: the manual switch and any window.
    pub fn make_available(&self) {
        self.update(|c| {
            c.unavailable = false;
            c.unavailable_until = None;
        });
    }

    /// Whether a call made now would be refused as unavailable.
    pub fn is_unavailable(&self) -> bool {
        self.lock().config.is_unavailable_at(Instant::now())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> FaultCounters {
        self.lock().counters
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.lock().counters = FaultCounters::default();
    }

    /// Decides one call and counts it. Each call takes exactly one value from the
    /// seeded generator, so a sequence of calls made one after another sees the same
    /// faults for the same seed and config.
    pub(crate) fn begin(&self, class: OpClass, mutation: bool) -> Plan {
        let now = Instant::now();
        let mut state = self.lock();
        let draws = Draws::from_seed(state.rng.next_u64());
        let plan = plan(&state.config, class, mutation, draws, now);
        let counters = &mut state.counters;
        *counters.calls.get_mut(class) += 1;
        if !plan.delay.is_zero() {
            counters.delayed += 1;
        }
        match plan.verdict {
            Verdict::Unavailable => *counters.unavailable.get_mut(class) += 1,
            Verdict::Determinate => *counters.determinate.get_mut(class) += 1,
            Verdict::Pass { .. } => {}
        }
        plan
    }

    /// Counts an indeterminate failure that was just reported.
    pub(crate) fn count_indeterminate(&self, class: OpClass) {
        *self.lock().counters.indeterminate.get_mut(class) += 1;
    }
}
