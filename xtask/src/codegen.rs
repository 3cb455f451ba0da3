//! `cargo xtask codegen [--check]`: regenerates committed code from `.proto` files.

use std::path::Path;

/// Generates (or, with `check`, verifies) the committed protocol code.
pub(crate) fn run(root: &Path, check: bool) -> anyhow::Result<()> {
    let proto_dir = root.join("crates/instance-client/proto");
    if !proto_dir.exists() {
        eprintln!(
            "codegen: no proto files yet; nothing to {}",
            if check { "check" } else { "generate" }
        );
        return Ok(());
    }
    anyhow::bail!("codegen: proto files exist but no generator is wired in yet")
}
