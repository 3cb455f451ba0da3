//! The pure decision of what to inject into one call: a function of the config, the
//! operation's class and random draws, so it is testable without a store or a runtime.

use std::time::Duration;

use strata_controller_api::rng::SplitMix64;
use tokio::time::Instant;

use super::config::{FaultConfig, OpClass, fires};

/// The random draws one call consumes. Every call consumes all of them, whatever the
/// config says, so changing one knob does not shift the draws of another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Draws {
    /// Picks the jitter.
    pub(crate) jitter: u64,
    /// Compared with the class's error rate.
    pub(crate) error_roll: f64,
    /// Compared with the indeterminate rate.
    pub(crate) indeterminate_roll: f64,
}

impl Draws {
    /// The draws for a call whose own seed is `call_seed`.
    pub(crate) fn from_seed(call_seed: u64) -> Self {
        let mut rng = SplitMix64::new(call_seed);
        Draws {
            jitter: rng.next_u64(),
            error_roll: rng.next_f64(),
            indeterminate_roll: rng.next_f64(),
        }
    }
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward to the inner store; if `indeterminate`, report a successful mutation as
    /// failed.
    Pass { indeterminate: bool },
    /// Fail without calling the inner store, because it is unavailable.
    Unavailable,
    /// Fail without calling the inner store, from the error rate.
    Determinate,
}

/// The delay and verdict for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) delay: Duration,
    pub(crate) verdict: Verdict,
}

/// Decides one call. Unavailability wins over the error rate; the indeterminate draw
/// only applies to mutations that got past both.
pub(crate) fn plan(
    config: &FaultConfig,
    class: OpClass,
    mutation: bool,
    draws: Draws,
    now: Instant,
) -> Plan {
    let delay = config
        .latency
        .fixed
        .saturating_add(jitter(config.latency.jitter, draws.jitter));
    let verdict = if config.is_unavailable_at(now) {
        Verdict::Unavailable
    } else if fires(config.error_rates.get(class), draws.error_roll) {
        Verdict::Determinate
    } else {
        Verdict::Pass {
            indeterminate: mutation && fires(config.indeterminate_rate, draws.indeterminate_roll),
        }
    };
    Plan { delay, verdict }
}

/// A uniform pick from `[0, max]` at nanosecond resolution.
fn jitter(max: Duration, draw: u64) -> Duration {
    let max_nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    match max_nanos.checked_add(1) {
        None => Duration::from_nanos(draw),
        Some(span) => Duration::from_nanos(draw % span),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(error_roll: f64, indeterminate_roll: f64) -> Draws {
        Draws {
            jitter: 7,
            error_roll,
            indeterminate_roll,
        }
    }

    #[test]
    fn verdicts() {
        let now = Instant::now();
        let check = |config: FaultConfig, class, mutation, d: Draws, expected: Verdict| {
            let got = plan(&config, class, mutation, d, now).verdict;
            assert_eq!(
                got, expected,
                "{config:?} {class:?} mutation={mutation} {d:?}"
            );
        };
        let pass = Verdict::Pass {
            indeterminate: false,
        };
        let base = FaultConfig::default;
        check(base(), OpClass::Read, false, draws(0.0, 0.0), pass);
        check(base(), OpClass::Write, true, draws(0.0, 0.0), pass);
        // Rates are per class.
        let writes = || base().with_error_rate(OpClass::Write, 0.5);
        check(
            writes(),
            OpClass::Write,
            true,
            draws(0.49, 0.9),
            Verdict::Determinate,
        );
        check(writes(), OpClass::Write, true, draws(0.5, 0.9), pass);
        check(writes(), OpClass::Read, false, draws(0.0, 0.0), pass);
        // A rate of one always fires, NaN never does.
        let all = || base().with_error_rate_all(1.0);
        check(
            all(),
            OpClass::List,
            false,
            draws(0.999_999, 0.0),
            Verdict::Determinate,
        );
        let nan = base().with_error_rate_all(f64::NAN);
        check(nan, OpClass::Delete, true, draws(0.0, 0.9), pass);
        // Indeterminate only for mutations that got past the error rate.
        let indet = || base().with_indeterminate_rate(0.5);
        let applied = Verdict::Pass {
            indeterminate: true,
        };
        check(indet(), OpClass::Write, true, draws(0.0, 0.1), applied);
        check(indet(), OpClass::Delete, true, draws(0.0, 0.1), applied);
        check(indet(), OpClass::Write, true, draws(0.0, 0.6), pass);
        check(indet(), OpClass::Read, false, draws(0.0, 0.1), pass);
        let both = base().with_indeterminate_rate(1.0).with_error_rate_all(1.0);
        check(
            both,
            OpClass::Write,
            true,
            draws(0.0, 0.0),
            Verdict::Determinate,
        );
        // Unavailability wins over everything.
        let down = FaultConfig {
            unavailable: true,
            ..base()
        };
        check(
            down,
            OpClass::Read,
            false,
            draws(0.9, 0.9),
            Verdict::Unavailable,
        );
        let window = FaultConfig {
            unavailable_until: Some(now + Duration::from_secs(1)),
            ..base().with_error_rate_all(1.0)
        };
        check(
            window,
            OpClass::List,
            false,
            draws(0.0, 0.0),
            Verdict::Unavailable,
        );
        let over = FaultConfig {
            unavailable_until: Some(now),
            ..base()
        };
        check(over, OpClass::List, false, draws(0.0, 0.0), pass);
    }

    #[test]
    fn delays() {
        let now = Instant::now();
        let check = |fixed_ms: u64, jitter_ms: u64, draw: u64, expected_ms: u64| {
            let config = FaultConfig::default().with_latency(
                Duration::from_millis(fixed_ms),
                Duration::from_millis(jitter_ms),
            );
            let d = Draws {
                jitter: draw,
                error_roll: 0.0,
                indeterminate_roll: 0.0,
            };
            let got = plan(&config, OpClass::Read, false, d, now).delay;
            assert_eq!(
                got,
                Duration::from_millis(expected_ms),
                "{fixed_ms} {jitter_ms} {draw}"
            );
        };
        check(0, 0, 123_456, 0);
        check(5, 0, 123_456, 5);
        check(5, 10, 3_000_000, 8);
        // The upper bound of the jitter is reachable.
        check(0, 10, 10_000_000, 10);
        check(0, 10, 10_000_001, 0);
    }

    #[test]
    fn draws_are_a_function_of_the_seed() {
        assert_eq!(Draws::from_seed(42), Draws::from_seed(42));
        assert_ne!(Draws::from_seed(42), Draws::from_seed(43));
    }
}
