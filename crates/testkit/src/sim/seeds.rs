//! Which seeds to run, from the environment, and running many of them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Sim, SimError, SimFailure, SimReport};

/// Runs only this seed when set: `STRATA_SIM_SEED=<n>`.
pub const SEED_ENV: &str = "STRATA_SIM_SEED";
/// Runs [`SOAK_SEEDS`] seeds instead of [`DEFAULT_SEEDS`] when set to anything but
/// empty or `0` (`cargo xtask test --soak` sets `STRATA_SOAK=1`).
pub const SOAK_ENV: &str = "STRATA_SOAK";
/// How many seeds a normal test run covers.
pub const DEFAULT_SEEDS: u64 = 50;
/// How many seeds a soak run covers.
pub const SOAK_SEEDS: u64 = 500;

/// How to re-run `seed` alone.
///
/// # Examples
///
/// ```
/// let hint = strata_testkit::sim::rerun_hint(42);
/// assert!(hint.contains("STRATA_SIM_SEED=42"));
/// ```
pub fn rerun_hint(seed: u64) -> String {
    format!(
        "re-run just this seed with: {SEED_ENV}={seed} cargo test -p strata-testkit --features sim --test sim"
    )
}

/// The seeds a test should run: `[n]` if [`SEED_ENV`] is set to `n`; otherwise
/// `0..SOAK_SEEDS` if [`SOAK_ENV`] is set, else `0..DEFAULT_SEEDS`.
///
/// # Errors
///
/// [`SimError::Setup`] if [`SEED_ENV`] is set but is not a number.
///
/// # Examples
///
/// ```
/// let seeds = strata_testkit::sim::seeds_from_env()?;
/// assert!(!seeds.is_empty());
/// # Ok::<(), strata_testkit::sim::SimError>(())
/// ```
pub fn seeds_from_env() -> Result<Vec<u64>, SimError> {
    if let Ok(seed) = std::env::var(SEED_ENV)
        && !seed.trim().is_empty()
    {
        let seed = seed.trim().parse::<u64>().map_err(|e| SimError::Setup {
            reason: format!("{SEED_ENV}={seed:?} is not a seed: {e}"),
        })?;
        return Ok(vec![seed]);
    }
    let soak = std::env::var(SOAK_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
    Ok((0..if soak { SOAK_SEEDS } else { DEFAULT_SEEDS }).collect())
}

/// Runs `build(seed).run()` for every seed on `threads` threads (at least 1) and
/// returns the results in the order of `seeds`. Each seed is logged (`tracing`, info)
/// as it starts; a run that panics becomes a [`SimFailure`] of its seed.
///
/// # Examples
///
/// ```no_run
/// use strata_testkit::sim::{Sim, run_seeds};
///
/// let results = run_seeds(&[1, 2, 3], 2, |seed| Sim::builder().seed(seed).build());
/// for result in results {
///     if let Err(failure) = result {
///         panic!("{failure}"); // names the seed and how to re-run it
///     }
/// }
/// ```
pub fn run_seeds(
    seeds: &[u64],
    threads: usize,
    build: impl Fn(u64) -> Sim + Sync,
) -> Vec<Result<SimReport, SimFailure>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<SimReport, SimFailure>>>> =
        Mutex::new(seeds.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, seeds.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&seed) = seeds.get(index) else {
                        return;
                    };
                    let run = std::panic::AssertUnwindSafe(|| build(seed).run());
                    let result = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                        let reason = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(SimFailure {
                            seed,
                            error: SimError::Simulation {
                                reason: format!("the run panicked: {reason}"),
                            },
                        })
                    });
                    let mut results = match results.lock() {
                        Ok(results) => results,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    if let Some(slot) = results.get_mut(index) {
                        *slot = Some(result);
                    }
                }
            });
        }
    });
    let results = match results.into_inner() {
        Ok(results) => results,
        Err(poisoned) => poisoned.into_inner(),
    };
    results
        .into_iter()
        .zip(seeds)
        .map(|(result, &seed)| {
            result.unwrap_or_else(|| {
                Err(SimFailure {
                    seed,
                    error: SimError::Simulation {
                        reason: "the seed did not run".into(),
                    },
                })
            })
        })
        .collect()
}
