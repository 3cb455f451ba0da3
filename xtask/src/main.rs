//! Project automation for Strata, run as `cargo xtask <command>`.
//!
//! - `codegen [--check]`: regenerate the committed protocol code, or check it is fresh.
//! - `test [--soak] [-- <cargo test args>]`: the whole test suite. It starts a local S3
//!   server (`moto_server`, installed from PyPI into a cached venv) for the S3 tests,
//!   and a fresh PostgreSQL cluster (`wal_level=logical`, from the Debian package) for
//!   the Postgres source's tests (`STRATA_TEST_POSTGRES_URL`).
//! - `lint`: fmt, clippy `-D warnings`, codegen check, docs with broken links denied.
//! - `ci`: `lint`, then `test`.
//! - `bench [suite] [--quick]`: benchmarks; each suite writes `bench-results/<suite>.json`.
//!
//! xtask may use `anyhow` and print: it is a binary, not a library.

#![allow(clippy::print_stdout)]

mod bench;
mod codegen;
mod layering;
mod moto;
mod postgres;
mod shell;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => {
            print_usage();
            bail!("missing command");
        }
    };
    match command {
        "codegen" => codegen::run(&root, has_flag(rest, "--check")),
        "test" => test(&root, rest),
        "lint" => lint(&root),
        "ci" => lint(&root).and_then(|()| test(&root, &[])),
        "bench" => bench::run(&root, rest),
        "help" | "--help" | "-h" => {
            print_usage();
            Ok(())
        }
        other => {
            print_usage();
            bail!("unknown command {other:?}")
        }
    }
}

fn print_usage() {
    println!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         codegen [--check]          regenerate (or check) committed protocol code\n  \
         test [--soak] [-- ARGS]    run every test, with a local S3 server (--soak: STRATA_SOAK=1, see docs/TESTING.md)\n  \
         lint                       fmt, clippy, codegen --check, docs\n  \
         ci                         lint, then test\n  \
         bench [SUITE] [--quick]    run benchmarks, writing bench-results/SUITE.json\n"
    );
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag)
}

/// The workspace root, from the manifest directory that `cargo run` sets for this run.
/// The compile-time value is only a fallback: a binary cached in a shared target
/// directory may have been built from a clone at another path.
fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

/// The cargo target directory in use: `CARGO_TARGET_DIR` or `<root>/target`.
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn test(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let (ours, passthrough) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let soak = has_flag(ours, "--soak");
    let s3 =
        moto::MotoServer::start(root).context("starting the local S3 server for the S3 tests")?;
    let postgres = postgres::PostgresServer::start()
        .context("starting the local PostgreSQL server for the Postgres source's tests")?;
    let mut cmd = shell::cargo(root);
    cmd.args(["test", "--workspace", "--all-features", "--no-fail-fast"]);
    cmd.args(passthrough);
    for (key, value) in s3.env().into_iter().chain(postgres.env()) {
        cmd.env(key, value);
    }
    if soak {
        cmd.env("STRATA_SOAK", "1");
    }
    let tests = shell::run(&mut cmd, "cargo test");
    // Always run the downstream example too, so one run reports both.
    let example = run_embed_example(root);
    tests.and(example)
}

/// Builds and runs `examples/embed`, a crate outside the workspace that uses only what
/// `docs/QUICKSTART.md` shows, as a downstream crate would. It shares the target
/// directory, so only Strata's own crates build again (with the example's features).
fn run_embed_example(root: &Path) -> anyhow::Result<()> {
    shell::run(
        shell::cargo(root).args([
            "run",
            "--manifest-path",
            "examples/embed/Cargo.toml",
            "--locked",
        ]),
        "the downstream example (examples/embed)",
    )
}

fn lint(root: &Path) -> anyhow::Result<()> {
    shell::run(
        shell::cargo(root).args(["fmt", "--all", "--", "--check"]),
        "cargo fmt --check",
    )?;
    shell::run(
        shell::cargo(root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
        "cargo clippy",
    )?;
    codegen::run(root, true)?;
    shell::run(
        shell::cargo(root)
            .args(["doc", "--workspace", "--no-deps", "--all-features"])
            .env(
                "RUSTDOCFLAGS",
                "-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links",
            ),
        "cargo doc",
    )
}
