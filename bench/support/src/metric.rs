//! End-to-end metrics and the `STRATA_BENCH_OUT` line protocol.

use std::io::Write;

use serde_json::{Value, json};

use crate::percentile;

/// One figure beside its baseline, measured in the same run. `ratio` is
/// `value / baseline_value` for throughputs and latencies alike; the metric's name and
/// unit say which direction is good.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    name: String,
    value: f64,
    unit: String,
    baseline_name: String,
    baseline_value: f64,
    samples: Option<usize>,
}

impl Metric {
    /// `name` measured as `value` `unit`, against `baseline_name` at `baseline_value`.
    pub fn new(
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        baseline_name: impl Into<String>,
        baseline_value: f64,
    ) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline_name: baseline_name.into(),
            baseline_value,
            samples: None,
        }
    }

    /// For a percentile: the number of measurements behind it.
    pub fn with_samples(mut self, samples: usize) -> Metric {
        self.samples = Some(samples);
        self
    }

    /// The metric as `bench-results/<suite>.json` holds it:
    /// `{name, value, unit, baseline_name, baseline_value, ratio}`, plus `samples` for a
    /// percentile.
    pub fn to_json(&self) -> Value {
        let mut line = json!({
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline_name": self.baseline_name,
            "baseline_value": self.baseline_value,
            "ratio": self.value / self.baseline_value,
        });
        if let (Some(samples), Some(object)) = (self.samples, line.as_object_mut()) {
            object.insert("samples".to_owned(), samples.into());
        }
        line
    }
}

/// Prints `metric` on stderr and appends it as one JSON line to the file named by
/// `STRATA_BENCH_OUT`, if set.
pub fn report(metric: &Metric) {
    emit(&metric.to_json());
}

/// Reports the p50 and p99 of `samples` against the same percentiles of `baseline`, as
/// two metrics carrying `samples` (the count of `samples`). `name` and `baseline_name`
/// give each metric's names from the percentile's label, `p50` or `p99`.
pub fn report_percentiles(
    samples: &mut [f64],
    baseline: &mut [f64],
    unit: &str,
    name: impl Fn(&str) -> String,
    baseline_name: impl Fn(&str) -> String,
) {
    for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
        let metric = Metric::new(
            name(label),
            percentile(samples, q),
            unit,
            baseline_name(label),
            percentile(baseline, q),
        );
        report(&metric.with_samples(samples.len()));
    }
}

/// Prints `line` on stderr and appends it to `STRATA_BENCH_OUT`. A bench whose figures
/// cannot be written has failed, so an I/O error panics.
pub(crate) fn emit(line: &Value) {
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("STRATA_BENCH_OUT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open STRATA_BENCH_OUT {path:?}: {e}"));
        writeln!(file, "{line}")
            .unwrap_or_else(|e| panic!("cannot write STRATA_BENCH_OUT {path:?}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Metric;

    #[test]
    fn a_metric_carries_its_ratio_and_samples_only_when_set() {
        let plain = Metric::new("append", 3.0, "ms", "floor", 2.0);
        assert_eq!(
            plain.to_json(),
            json!({"name": "append", "value": 3.0, "unit": "ms", "baseline_name": "floor",
                   "baseline_value": 2.0, "ratio": 1.5})
        );
        let p99 = plain.with_samples(400).to_json();
        assert_eq!(p99["samples"], 400);
        assert_eq!(p99["ratio"], 1.5);
    }
}
