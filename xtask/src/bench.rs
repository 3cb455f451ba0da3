//! `cargo xtask bench [suite] [--quick]`.
//!
//! Each suite is a `harness = false` bench target. It appends one JSON object per metric,
//! one per line, to the file named by `STRATA_BENCH_OUT`:
//! `{name, value, unit, baseline_name, baseline_value, ratio}`. xtask collects those
//! lines into `bench-results/<suite>.json` as an array. `--quick` sets
//! `STRATA_BENCH_QUICK=1`, which suites use to shrink their sizes.

use std::path::Path;

use anyhow::{Context, bail};

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
    if quick {
        cmd.env("STRATA_BENCH_QUICK", "1");
    }
    crate::shell::run(&mut cmd, &format!("bench suite {}", suite.name))?;
    let text = std::fs::read_to_string(&lines_path).with_context(|| {
        format!(
            "bench suite {} wrote no metrics to {}",
            suite.name,
            lines_path.display()
        )
    })?;
    let metrics: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if metrics.is_empty() {
        bail!("bench suite {} reported no metrics", suite.name);
    }
    let out = results.join(format!("{}.json", suite.name));
    std::fs::write(&out, format!("[\n  {}\n]\n", metrics.join(",\n  ")))?;
    let _ = std::fs::remove_file(&lines_path);
    println!("wrote {} ({} metrics)", out.display(), metrics.len());
    for line in metrics {
        println!("  {line}");
    }
    Ok(())
}
