//! The knobs of [`FaultyObjectStore`](super::FaultyObjectStore) and its fault counters:
//! plain data, so tests can build, compare and print them.

use std::time::Duration;

use tokio::time::Instant;

/// The classes of object-store operation that get their own error rate.
///
/// | class | operations |
/// |---|---|
/// | `Read` | `get_opts` (and so `get`, `get_range`, `head`), `get_ranges` |
/// | `Write` | `put_opts`, `put_multipart_opts` and its parts, completion and abort, `copy_opts`, `rename_opts` |
/// | `List` | `list`, `list_with_offset`, `list_with_delimiter` |
/// | `Delete` | every location of `delete_stream` (and so `delete`) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpClass {
    /// Reads of objects and their metadata.
    Read,
    /// Anything that creates or overwrites an object.
    Write,
    /// Listings.
    List,
    /// Deletions.
    Delete,
}

impl OpClass {
    /// Every class, in declaration order.
    pub const ALL: [OpClass; 4] = [
        OpClass::Read,
        OpClass::Write,
        OpClass::List,
        OpClass::Delete,
    ];
}

/// One value per [`OpClass`].
///
/// # Examples
///
/// ```
/// use strata_testkit::faults::{OpClass, PerClass};
/// let mut rates = PerClass::splat(0.0);
/// rates.set(OpClass::Write, 0.5);
/// assert_eq!(rates.get(OpClass::Write), 0.5);
/// assert_eq!(rates.get(OpClass::Read), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PerClass<T> {
    /// The value for [`OpClass::Read`].
    pub read: T,
    /// The value for [`OpClass::Write`].
    pub write: T,
    /// The value for [`OpClass::List`].
    pub list: T,
    /// The value for [`OpClass::Delete`].
    pub delete: T,
}

impl<T: Copy> PerClass<T> {
    /// The same value for every class.
    pub fn splat(value: T) -> Self {
        PerClass {
            read: value,
            write: value,
            list: value,
            delete: value,
        }
    }

    /// The value for `class`.
    pub fn get(&self, class: OpClass) -> T {
        match class {
            OpClass::Read => self.read,
            OpClass::Write => self.write,
            OpClass::List => self.list,
            OpClass::Delete => self.delete,
        }
    }

    /// Replaces the value for `class`.
    pub fn set(&mut self, class: OpClass, value: T) {
        *self.get_mut(class) = value;
    }

    /// The value for `class`, mutably.
    pub fn get_mut(&mut self, class: OpClass) -> &mut T {
        match class {
            OpClass::Read => &mut self.read,
            OpClass::Write => &mut self.write,
            OpClass::List => &mut self.list,
            OpClass::Delete => &mut self.delete,
        }
    }
}

impl PerClass<u64> {
    /// The sum over all classes.
    pub fn total(&self) -> u64 {
        self.read + self.write + self.list + self.delete
    }
}

/// Added latency: every call sleeps `fixed` plus a uniform draw from `[0, jitter]`, on
/// tokio's timer (so a non-zero latency needs a tokio runtime with time enabled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Latency {
    /// Added to every call.
    pub fixed: Duration,
    /// The upper bound of the random extra delay.
    pub jitter: Duration,
}

impl Latency {
    /// No added latency.
    pub const NONE: Latency = Latency {
        fixed: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    /// Whether this adds no delay at all.
    pub fn is_zero(&self) -> bool {
        self.fixed.is_zero() && self.jitter.is_zero()
    }
}

/// What a [`FaultyObjectStore`](super::FaultyObjectStore) injects. The default injects
/// nothing, so a store with the default config is transparent.
///
/// Rates are probabilities per call. A rate at or below `0.0` (or NaN) never fires, a
/// rate at or above `1.0` always fires.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_testkit::faults::{FaultConfig, OpClass};
/// let config = FaultConfig::default()
///     .with_error_rate(OpClass::Write, 0.2)
///     .with_indeterminate_rate(0.1)
///     .with_latency(Duration::from_millis(1), Duration::from_millis(4));
/// assert_eq!(config.error_rates.get(OpClass::Write), 0.2);
/// assert_eq!(config.error_rates.get(OpClass::Read), 0.0);
/// assert!(!config.is_transparent());
/// assert!(FaultConfig::default().is_transparent());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// The chance that a call fails before it reaches the inner store (a determinate
    /// failure: nothing happened).
    pub error_rates: PerClass<f64>,
    /// The chance that a successful mutation (a put, a multipart completion, a copy, a
    /// rename or a delete) is reported as failed although the inner store applied it (an
    /// indeterminate failure). Drawn only when the call got past `error_rates`.
    pub indeterminate_rate: f64,
    /// Added to every call, including calls that then fail.
    pub latency: Latency,
    /// While `true`, every call fails before it reaches the inner store.
    pub unavailable: bool,
    /// Every call before this instant fails before it reaches the inner store. Uses
    /// tokio's clock, so a test with a paused clock controls the window exactly.
    pub unavailable_until: Option<Instant>,
}

impl FaultConfig {
    /// This config with `rate` as the error rate of `class`.
    pub fn with_error_rate(mut self, class: OpClass, rate: f64) -> Self {
        self.error_rates.set(class, rate);
        self
    }

    /// This config with `rate` as the error rate of every class.
    pub fn with_error_rate_all(mut self, rate: f64) -> Self {
        self.error_rates = PerClass::splat(rate);
        self
    }

    /// This config with `rate` as the indeterminate rate of mutations.
    pub fn with_indeterminate_rate(mut self, rate: f64) -> Self {
        self.indeterminate_rate = rate;
        self
    }

    /// This config with added latency.
    pub fn with_latency(mut self, fixed: Duration, jitter: Duration) -> Self {
        self.latency = Latency { fixed, jitter };
        self
    }

    /// Whether this config injects nothing: no errors, no latency, no unavailability.
    pub fn is_transparent(&self) -> bool {
        OpClass::ALL
            .iter()
            .all(|class| !fires(self.error_rates.get(*class), 0.0))
            && !fires(self.indeterminate_rate, 0.0)
            && self.latency.is_zero()
            && !self.unavailable
            && self.unavailable_until.is_none()
    }

    /// Whether the store is unavailable at `now`, by the manual switch or the window.
    pub fn is_unavailable_at(&self, now: Instant) -> bool {
        self.unavailable || self.unavailable_until.is_some_and(|until| now < until)
    }
}

/// Whether a uniform `roll` in `[0, 1)` hits `rate`. NaN and non-positive rates never
/// hit; rates of one or more always do.
pub(crate) fn fires(rate: f64, roll: f64) -> bool {
    rate > 0.0 && roll < rate
}

/// How many faults a [`FaultyObjectStore`](super::FaultyObjectStore) injected, by kind
/// and operation class. Tests compare these with the errors they saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FaultCounters {
    /// Calls seen, faulted or not.
    pub calls: PerClass<u64>,
    /// Determinate failures injected from the error rates.
    pub determinate: PerClass<u64>,
    /// Indeterminate failures: applied by the inner store, reported as failed.
    pub indeterminate: PerClass<u64>,
    /// Calls refused because the store was unavailable.
    pub unavailable: PerClass<u64>,
    /// Calls that were delayed by added latency.
    pub delayed: u64,
}

impl FaultCounters {
    /// All injected failures of every kind and class.
    pub fn total_faults(&self) -> u64 {
        self.determinate.total() + self.indeterminate.total() + self.unavailable.total()
    }
}
