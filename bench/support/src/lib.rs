//! Shared tooling for Strata's `harness = false` bench targets, a dev-dependency only.
//!
//! `cargo xtask bench <suite>` runs one bench target with `--bench`, `STRATA_BENCH_OUT`
//! naming a file and, for `--quick`, `STRATA_BENCH_QUICK=1`. A target reports two kinds
//! of figures, each as one JSON line appended to that file:
//!
//! - **Micro-benchmarks** ([`micro`], feature `criterion`): a criterion group holds
//!   the measured function `strata` beside its `baseline`. The line declares the group;
//!   xtask reads criterion's estimates for both functions and fills in the figures.
//! - **End-to-end comparisons** ([`Metric`]): what criterion cannot express (latency
//!   percentiles against a raw floor, lag, throughput of a running system). The target
//!   measures both sides itself with [`best_of`], [`percentile`] or [`median`] and
//!   [`report`]s the finished metric ([`report_percentiles`] for p50 and p99 at once).
//!
//! Both sides of a comparison see the same input: [`XorShift`] makes it.
//!
//! Without `--bench` (as `cargo test --all-targets` runs bench targets) the [`Mode`] is
//! [`Mode::Smoke`]: criterion runs each function once and the end-to-end parts use tiny
//! sizes, so the target tests itself quickly.

mod metric;
#[cfg(feature = "criterion")]
pub mod micro;
mod mode;
mod stats;

pub use metric::{Metric, report, report_percentiles};
pub use mode::Mode;
pub use stats::{XorShift, best_of, median, percentile};
