//! Running child commands with readable failures.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// A `cargo` command rooted at the workspace.
pub(crate) fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` to completion, failing with `what` if it exits non-zero.
pub(crate) fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    eprintln!("xtask: running {what}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what}"))?;
    if !status.success() {
        bail!("{what} failed with {status}");
    }
    Ok(())
}
