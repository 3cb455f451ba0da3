//! Micro-benchmarks: criterion groups that hold the measured function beside its
//! baseline, as `<group>/strata` and `<group>/baseline`.
//!
//! [`compare`] runs a group and declares it on `STRATA_BENCH_OUT` as
//! `{name, unit, baseline_name, criterion: <group>, elements}`. Criterion writes each
//! function's estimates to `$CRITERION_HOME/<group>/<function>/new/estimates.json`
//! (xtask sets `CRITERION_HOME` to `<target>/criterion`), and its HTML report to
//! `<group>/report/index.html`. xtask turns the declaration into a metric: the median
//! time per iteration of each function divided by `elements`, in ns per element.

use std::time::Duration;

pub use criterion;
use criterion::{Bencher, Criterion, Throughput};
use serde_json::json;

use crate::Mode;

/// The measured function's name in every group.
pub const STRATA: &str = "strata";
/// The baseline function's name in every group.
pub const BASELINE: &str = "baseline";

/// A suite's micro-benchmarks: each registers its groups with [`compare`].
pub type Groups = fn(&mut Criterion, Mode);

/// Runs `groups` with the criterion runner for `mode`, then criterion's summary.
pub fn run(mode: Mode, groups: &[Groups]) {
    let mut c = runner(mode);
    for groups in groups {
        groups(&mut c, mode);
    }
    c.final_summary();
}

/// The criterion runner for `mode`: short warm-ups and measurements (a quick run
/// takes about a second a function), then the command line (`--bench`, a filter,
/// criterion's own options) on top. Without `--bench` criterion runs each function
/// once as a test.
fn runner(mode: Mode) -> Criterion {
    let (samples, warm_up, measurement) = match mode {
        Mode::Full => (20, Duration::from_secs(1), Duration::from_secs(4)),
        Mode::Quick | Mode::Smoke => (10, Duration::from_millis(300), Duration::from_secs(1)),
    };
    Criterion::default()
        .sample_size(samples)
        .warm_up_time(warm_up)
        .measurement_time(measurement)
        .configure_from_args()
}

/// What one group compares, and the names its metric gets.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    /// The criterion group (a directory under `target/criterion`), unique across
    /// suites.
    pub group: &'a str,
    /// The metric's name in `bench-results/<suite>.json`.
    pub name: &'a str,
    /// The baseline's name there.
    pub baseline_name: &'a str,
    /// What one element is: the unit is `ns/<per>`.
    pub per: &'a str,
    /// Elements in one iteration of either function.
    pub elements: u64,
}

/// Runs `strata` and `baseline` as one criterion group, with throughput in elements,
/// and declares it to xtask when benchmarking.
pub fn compare(
    c: &mut Criterion,
    mode: Mode,
    spec: &Group<'_>,
    strata: impl FnMut(&mut Bencher<'_>),
    baseline: impl FnMut(&mut Bencher<'_>),
) {
    let mut group = c.benchmark_group(spec.group);
    group.throughput(Throughput::Elements(spec.elements));
    group.bench_function(STRATA, strata);
    group.bench_function(BASELINE, baseline);
    group.finish();
    if mode.is_bench() {
        crate::metric::emit(&json!({
            "name": spec.name,
            "unit": format!("ns/{}", spec.per),
            "baseline_name": spec.baseline_name,
            "criterion": spec.group,
            "elements": spec.elements,
        }));
    }
}
