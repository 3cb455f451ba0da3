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
mod duration;
mod inspect;
mod location;
mod metered;
mod read;
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

/// An error and its causes on one line, each cause once: a layer whose message already
/// quotes its source (as many do) does not print that source a second time.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = one_line(&cause.to_string());
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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
            raw,
            open_timeout,
        }) => block_on(inspect::collections(&persist, json, raw, open_timeout)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that quotes its source in its message and also returns it as source.
    #[derive(Debug)]
    struct Bind {
        source: std::io::Error,
    }

    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "binding the metrics listener to 127.0.0.1:9 failed: {}",
                self.source
            )
        }
    }

    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "Address already in use");
        let error = anyhow::Error::new(Bind { source: io }).context("the demo cannot start");
        assert_eq!(
            error_line(&error),
            "the demo cannot start: binding the metrics listener to 127.0.0.1:9 failed: Address already in use"
        );
        let plain = anyhow::anyhow!("first\n  line").context("outer");
        assert_eq!(error_line(&plain), "outer: first line");
    }
}
