//! The command line: every subcommand and option of `strata`, as clap derives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Demo(DemoArgs),
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

/// How the controller reaches its replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Transport {
    /// In-process replicas over local channels.
    Local,
    /// `strata replica` child processes on 127.0.0.1, over gRPC.
    Grpc,
}

/// `strata demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The persist location: file:///path (or a plain path), s3://bucket/prefix or
    /// mem://name. A second run over the same location recovers the first one's state.
    #[arg(long, default_value = "file://./strata-data", value_name = "URL")]
    pub(crate) persist: String,
    /// How many replicas run the instance.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=8))]
    pub(crate) replicas: u16,
    /// Timely worker threads per replica.
    #[arg(long, default_value_t = 2, value_name = "W", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub(crate) workers: u16,
    /// How replicas are reached: in-process (local) or child processes over gRPC.
    #[arg(long, value_enum, default_value_t = Transport::Local)]
    pub(crate) transport: Transport,
    /// How long the source ingests and the tables take writes, at most 24h: such as
    /// 10s, 1m30s or 2 (seconds).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::duration::run_time)]
    pub(crate) duration: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics while the demo runs.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Also ingest a live Postgres database (postgres://user@host:port/db) through
    /// logical replication: every table of `--postgres-publication`, which needs
    /// wal_level=logical and tables with REPLICA IDENTITY FULL (docs/QUICKSTART.md).
    #[arg(long, value_name = "URL")]
    pub(crate) postgres: Option<String>,
    /// The publication `--postgres` ingests.
    #[arg(
        long,
        default_value = "strata_demo",
        value_name = "NAME",
        requires = "postgres"
    )]
    pub(crate) postgres_publication: String,
    /// See [`OpenTimeout`].
    #[command(flatten)]
    pub(crate) open_timeout: OpenTimeout,
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
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
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

/// A `--listen` value: an address, or a host name with a port (such as
/// `localhost:6876`), resolved now. Of a name's addresses an IPv4 one is preferred, so
/// `localhost` listens where clients of `localhost` usually connect first.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "{text:?} has no port: give HOST:PORT, such as localhost:6876"
        ));
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values_resolve_or_say_why() {
        let table: [(&str, Result<&str, &str>); 5] = [
            ("127.0.0.1:6876", Ok("127.0.0.1:6876")),
            ("[::1]:7", Ok("[::1]:7")),
            ("localhost:6876", Ok("127.0.0.1:6876")),
            (
                "localhost",
                Err("has no port: give HOST:PORT, such as localhost:6876"),
            ),
            ("localhost:port", Err("cannot resolve \"localhost:port\"")),
        ];
        for (text, want) in table {
            match (parse_listen(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.to_string(), want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
