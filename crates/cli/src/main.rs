//! The `strata` binary: `demo` (the main job), `replica`, `inspect` and `top`.
//!
//! **Owns**: the command line, process concerns (signals, exit codes, logging) and the
//! wording of every error a person sees. Failures print one line on stderr, prefixed
//! `error:`, and exit 1; even a panic prints one line (a last resort: nothing here
//! should panic).
//!
//! **Must never**: be depended on by another crate; hold logic a library should own.
//!
//! `demo` runs the controller with its replicas (in-process, or `strata replica` child
//! processes it starts and stops) on the embedded default, `file://./strata-data`.

mod args;
mod demo;
mod inspect;
mod location;
mod metered;
mod replica;
mod top;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, InspectCommand};

/// Replaces Rust's multi-line panic report with one line.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error: {}{place} (this is a bug in strata)",
            one_line(&message)
        );
    }));
}

/// Logs go to stderr; `RUST_LOG` picks the level (warnings by default).
fn install_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs an async command on a small runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let result = rt.block_on(f);
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// tonic's TLS uses ring while the S3 client links aws-lc-rs too, so rustls cannot pick
/// a crypto provider by itself: pick ring for the whole process.
fn install_crypto_provider() {
    // An error means a provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn main() -> ExitCode {
    install_panic_hook();
    install_crypto_provider();
    let cli = Cli::parse();
    install_logging();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Top(args) => top::run(args),
        Command::Replica(args) => replica::run(args),
        Command::Inspect(InspectCommand::Shard {
            persist,
            shard,
            open_timeout,
        }) => block_on(inspect::shard(&persist, &shard, open_timeout)),
        Command::Inspect(InspectCommand::Collections {
            persist,
            json,
            open_timeout,
        }) => block_on(inspect::collections(&persist, json, open_timeout)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}
