//! `cargo xtask bench [suite] [--quick]`.
//!
//! Each suite is a `harness = false` bench target built on `strata-bench-support`. It
//! appends one JSON object per line to the file named by `STRATA_BENCH_OUT`:
//!
//! - an end-to-end metric, finished: `{name, value, unit, baseline_name,
//!   baseline_value, ratio}` (percentiles add `samples`);
//! - a criterion group's declaration: `{name, unit, baseline_name, criterion, elements}`.
//!   xtask reads criterion's estimates of the group's two functions,
//!   `$CRITERION_HOME/<group>/{strata,baseline}/new/estimates.json`, and fills in
//!   `value` and `baseline_value` (the median time per iteration over `elements`, in
//!   ns) and `ratio`.
//!
//! xtask collects the metrics into `bench-results/<suite>.json` as an array.
//! `CRITERION_HOME` is `<target>/criterion`, where the HTML reports land too
//! (`<group>/report/index.html`). `--quick` sets `STRATA_BENCH_QUICK=1`: suites shrink
//! their sizes and criterion measures for about a second a function.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde_json::Value;

/// A suite: its name, the package that holds it, and an optional manifest outside the
/// workspace (for peer comparisons whose dependencies `cargo test` must not build).
struct Suite {
    name: &'static str,
    package: &'static str,
    manifest: Option<&'static str>,
}

const SUITES: &[Suite] = &[
    Suite {
        name: "persist",
        package: "strata-persist-backend",
        manifest: None,
    },
    Suite {
        name: "persist-peer",
        package: "strata-persist-peer-bench",
        manifest: Some("bench/persist-peer/Cargo.toml"),
    },
    Suite {
        name: "instance",
        package: "strata-instance-client",
        manifest: None,
    },
    Suite {
        name: "replica",
        package: "strata-replica",
        manifest: None,
    },
    Suite {
        name: "controller",
        package: "strata-controller-core",
        manifest: None,
    },
    Suite {
        name: "connectors",
        package: "strata-replica",
        manifest: None,
    },
];

pub(crate) fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let selected: Vec<&Suite> = if wanted.is_empty() {
        SUITES.iter().collect()
    } else {
        let mut out = Vec::new();
        for name in &wanted {
            match SUITES.iter().find(|s| s.name == *name) {
                Some(suite) => out.push(suite),
                None => bail!(
                    "unknown bench suite {name:?}; known: {}",
                    SUITES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
                ),
            }
        }
        out
    };
    let results = root.join("bench-results");
    std::fs::create_dir_all(&results)?;
    for suite in selected {
        run_suite(root, &results, suite, quick)?;
    }
    Ok(())
}

fn run_suite(root: &Path, results: &Path, suite: &Suite, quick: bool) -> anyhow::Result<()> {
    let manifest = suite.manifest.map(|m| root.join(m));
    let in_workspace = manifest.is_none();
    if let Some(m) = manifest.as_ref().filter(|m| !m.exists()) {
        bail!(
            "bench suite {} has no manifest at {}",
            suite.name,
            m.display()
        );
    }
    let lines_path = results.join(format!("{}.jsonl.tmp", suite.name));
    let _ = std::fs::remove_file(&lines_path);
    let mut cmd = crate::shell::cargo(root);
    cmd.arg("bench");
    match &manifest {
        Some(m) => {
            // A workspace of its own gets a target directory of its own, so its heavy
            // dependencies never contend with the main workspace's build lock.
            cmd.arg("--manifest-path").arg(m);
            cmd.env("CARGO_TARGET_DIR", crate::target_dir(root).join(suite.name));
        }
        None => {
            cmd.args(["-p", suite.package]);
        }
    }
    if in_workspace {
        cmd.args(["--all-features", "--bench", suite.name]);
    }
    cmd.env("STRATA_BENCH_OUT", &lines_path);
    let criterion_home = crate::target_dir(root).join("criterion");
    cmd.env("CRITERION_HOME", &criterion_home);
    if quick {
        cmd.env("STRATA_BENCH_QUICK", "1");
    }
    // The connectors suite measures the Postgres source against a server of its own.
    let postgres = if suite.name == "connectors" {
        Some(
            crate::postgres::PostgresServer::start()
                .context("starting PostgreSQL for the connectors bench")?,
        )
    } else {
        None
    };
    for (key, value) in postgres
        .iter()
        .flat_map(crate::postgres::PostgresServer::env)
    {
        cmd.env(key, value);
    }
    let started = SystemTime::now();
    crate::shell::run(&mut cmd, &format!("bench suite {}", suite.name))?;
    drop(postgres);
    let text = std::fs::read_to_string(&lines_path).with_context(|| {
        format!(
            "bench suite {} wrote no metrics to {}",
            suite.name,
            lines_path.display()
        )
    })?;
    let mut metrics = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let metric: Value = serde_json::from_str(line)
            .with_context(|| format!("bench suite {} wrote {line:?}", suite.name))?;
        metrics.push(if metric.get("criterion").is_some() {
            from_criterion(&criterion_home, metric, started)?
        } else {
            metric
        });
    }
    if metrics.is_empty() {
        bail!("bench suite {} reported no metrics", suite.name);
    }
    let lines: Vec<String> = metrics.iter().map(Value::to_string).collect();
    let out = results.join(format!("{}.json", suite.name));
    std::fs::write(&out, format!("[\n  {}\n]\n", lines.join(",\n  ")))?;
    let _ = std::fs::remove_file(&lines_path);
    println!("wrote {} ({} metrics)", out.display(), lines.len());
    for line in lines {
        println!("  {line}");
    }
    Ok(())
}

/// A criterion group's declaration turned into a metric: each function's median time
/// per iteration over the group's `elements`, in ns, and their ratio. The estimates
/// must be from this run (written after `started`), not left over from an earlier one.
fn from_criterion(home: &Path, mut metric: Value, started: SystemTime) -> anyhow::Result<Value> {
    let group = metric["criterion"]
        .as_str()
        .context("a criterion declaration names its group")?
        .to_owned();
    let elements = metric["elements"]
        .as_f64()
        .filter(|n| *n > 0.0)
        .with_context(|| format!("criterion group {group} declares no elements"))?;
    let per_element = |function: &str| -> anyhow::Result<f64> {
        let path = estimates_path(home, &group, function);
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at >= started);
        if !fresh {
            bail!(
                "criterion wrote no estimates for {group}/{function} in this run ({})",
                path.display()
            );
        }
        let estimates: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("reading {}", path.display()))?;
        let median = estimates["median"]["point_estimate"]
            .as_f64()
            .with_context(|| format!("{} has no median", path.display()))?;
        Ok(median / elements)
    };
    let (value, baseline) = (per_element("strata")?, per_element("baseline")?);
    let object = metric
        .as_object_mut()
        .context("a metric is a JSON object")?;
    object.insert("value".to_owned(), value.into());
    object.insert("baseline_value".to_owned(), baseline.into());
    object.insert("ratio".to_owned(), (value / baseline).into());
    Ok(metric)
}

/// Where criterion keeps the latest estimates of `group`'s `function`.
fn estimates_path(home: &Path, group: &str, function: &str) -> PathBuf {
    home.join(group)
        .join(function)
        .join("new")
        .join("estimates.json")
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use serde_json::json;

    use super::{estimates_path, from_criterion};

    fn write_estimates(
        home: &Path,
        group: &str,
        function: &str,
        median_ns: f64,
    ) -> anyhow::Result<()> {
        let path = estimates_path(home, group, function);
        std::fs::create_dir_all(path.parent().unwrap_or(home))?;
        let estimates = json!({"median": {"point_estimate": median_ns}});
        std::fs::write(path, estimates.to_string())?;
        Ok(())
    }

    fn declaration() -> serde_json::Value {
        json!({"name": "consolidate_updates", "unit": "ns/update",
               "baseline_name": "sort_and_merge_updates", "criterion": "consolidate",
               "elements": 1000})
    }

    #[test]
    fn a_declared_group_becomes_a_metric_per_element() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let started = SystemTime::now() - Duration::from_secs(5);
        write_estimates(home.path(), "consolidate", "strata", 30_000.0)?;
        write_estimates(home.path(), "consolidate", "baseline", 60_000.0)?;
        let metric = from_criterion(home.path(), declaration(), started)?;
        assert_eq!(
            metric,
            json!({"name": "consolidate_updates", "unit": "ns/update",
                   "baseline_name": "sort_and_merge_updates", "criterion": "consolidate",
                   "elements": 1000, "value": 30.0, "baseline_value": 60.0, "ratio": 0.5})
        );
        Ok(())
    }

    #[test]
    fn estimates_from_an_earlier_run_or_none_at_all_are_refused() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let missing = from_criterion(home.path(), declaration(), SystemTime::now());
        assert!(missing.is_err());
        write_estimates(home.path(), "consolidate", "strata", 30_000.0)?;
        write_estimates(home.path(), "consolidate", "baseline", 60_000.0)?;
        let later = SystemTime::now() + Duration::from_secs(60);
        let stale = from_criterion(home.path(), declaration(), later).map_err(|e| e.to_string());
        assert!(
            stale
                .as_ref()
                .is_err_and(|e| e.contains("no estimates for consolidate/strata")),
            "{stale:?}"
        );
        Ok(())
    }
}
