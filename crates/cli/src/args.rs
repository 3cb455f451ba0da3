//! The command line: every subcommand and option of `strata`, as clap derives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Strata: a storage controller for dataflow systems.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata, a storage controller for dataflow systems: serve a replica, inspect durable state",
    propagate_version = true
)]
pub(crate) struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the whole system working on an embedded default: tables, a load-generator
    /// source with subsources, a sink, introspection, drops and recovery.
    Demo(crate::demo::DemoArgs),
    /// Serve a replica over gRPC: run the dataflows a controller schedules and write
    /// their output to persist shards.
    Replica(ReplicaArgs),
    /// Read durable state: one shard, or every collection of the catalog.
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// A live terminal view of every collection: status, since, upper, lag and a
    /// sparkline of the lag.
    Top(TopArgs),
}

/// `strata top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The persist location: file:///path, s3://bucket/prefix or mem://name.
    #[arg(long, value_name = "URL")]
    pub(crate) persist: String,
    /// How often to re-read the location, at least 100ms: such as 1s, 500ms or 2
    /// (seconds).
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = crate::duration::interval)]
    pub(crate) interval: Duration,
    /// See [`OpenTimeout`].
    #[command(flatten)]
    pub(crate) open_timeout: OpenTimeout,
}

/// How long to wait for a persist location to answer, shared by every command that
/// opens one.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct OpenTimeout {
    /// Give up on a persist location that does not answer within this time, such as
    /// 30s, 2m or 10 (seconds); object storage retries connection failures with backoff
    /// until then.
    #[arg(
        long = "open-timeout",
        env = "STRATA_OPEN_TIMEOUT_SECS",
        default_value = "30s",
        value_name = "DURATION",
        value_parser = crate::duration::positive
    )]
    pub(crate) limit: Duration,
}

/// `strata replica`.
#[derive(Debug, Args)]
pub(crate) struct ReplicaArgs {
    /// The address to serve gRPC on, such as 127.0.0.1:6876 or localhost:6876.
    #[arg(long, value_name = "ADDR", value_parser = crate::replica::parse_listen)]
    pub(crate) listen: SocketAddr,
    /// The persist location: file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    pub(crate) persist: String,
    /// Timely worker threads.
    #[arg(long, default_value_t = 1, value_name = "W", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) workers: u16,
    /// PEM certificate chain for TLS (with --tls-key).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// A file holding the bearer token every controller must present.
    #[arg(long, value_name = "PATH")]
    pub(crate) token_file: Option<PathBuf>,
    /// Allow a non-loopback listen address without TLS.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// How long to wait for open connections to finish after Ctrl-C or SIGTERM, such
    /// as 3s, 500ms or 0 (do not wait).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = crate::duration::parse)]
    pub(crate) shutdown_grace: Duration,
    /// See [`OpenTimeout`].
    #[command(flatten)]
    pub(crate) open_timeout: OpenTimeout,
}

/// `strata inspect …`.
#[derive(Debug, Subcommand)]
pub(crate) enum InspectCommand {
    /// Print one shard's state as JSON.
    Shard {
        /// The persist location: file:///path, s3://bucket/prefix or mem://name.
        #[arg(long, value_name = "URL")]
        persist: String,
        /// The shard, such as s0123abcd-…
        #[arg(value_name = "SHARD_ID")]
        shard: String,
        /// See [`OpenTimeout`].
        #[command(flatten)]
        open_timeout: OpenTimeout,
    },
    /// List every collection of the durable catalog: name, status, since, upper, lag
    /// and parts (80 columns; --raw adds raw timestamps and shard ids).
    Collections {
        /// The persist location: file:///path, s3://bucket/prefix or mem://name.
        #[arg(long, value_name = "URL")]
        persist: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Show raw timestamps instead of UTC times of day, and each shard id.
        #[arg(long)]
        raw: bool,
        /// See [`OpenTimeout`].
        #[command(flatten)]
        open_timeout: OpenTimeout,
    },
}
