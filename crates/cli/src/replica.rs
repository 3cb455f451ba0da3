//! `strata replica`: a replica process serving instance-client's gRPC protocol.
//!
//! Order of start-up, so each failure names its cause: the listen rule, the TLS and
//! token files, the persist location (with a deadline), the port, then the workers.
//! Ctrl-C or SIGTERM stops accepting, waits `--shutdown-grace` for open connections,
//! stops the workers and exits 0.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use strata_controller_api::Timestamp;
use strata_instance_client::grpc::{self, ServerConfig};
use strata_instance_client::transport::{EpochFence, ReplicaHandler};
use strata_introspection::{Metrics, serve_metrics};
use strata_replica::ReplicaConfig;
use strata_replica::server::ReplicaServer;
use strata_replica::shard::persist::PersistShards;
use tokio::net::TcpListener;

use crate::args::ReplicaArgs;
use crate::location::{self, Access};
use crate::metered::{Metered, Observed};

/// The listen rule: plaintext is only for loopback addresses, unless the operator says
/// `--insecure`.
pub(crate) fn check_listen(addr: SocketAddr, tls: bool, insecure: bool) -> Result<(), String> {
    if tls || insecure || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {addr} without tls: pass --tls-cert and --tls-key, \
         or --insecure to serve plaintext on a non-loopback address"
    ))
}

fn read_file(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The bearer token in `path`, without surrounding whitespace.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let bytes = read_file("token file", path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow!("token file {} is not utf-8", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    Ok(token.to_owned())
}

/// Checks that `cert` and `key` are PEM and belong together, so a bad file is named
/// before anything starts.
fn check_tls(cert_path: &Path, cert: &[u8], key_path: &Path, key: &[u8]) -> anyhow::Result<()> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow!(
                "tls certificate {} is not valid pem: {e}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "tls certificate {} holds no certificate",
            cert_path.display()
        );
    }
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        anyhow!(
            "tls key {} holds no usable private key: {e}",
            key_path.display()
        )
    })?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            anyhow!(
                "tls key {} does not fit certificate {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    Ok(())
}

fn server_config(args: &ReplicaArgs) -> anyhow::Result<ServerConfig> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert_path), Some(key_path)) => {
            let cert = read_file("tls certificate", cert_path)?;
            let key = read_file("tls key", key_path)?;
            check_tls(cert_path, &cert, key_path, &key)?;
            Some((cert, key))
        }
        _ => None,
    };
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    Ok(ServerConfig { tls, token })
}

/// Ctrl-C and SIGTERM, watched from creation on: a signal that arrives after the
/// "listening" line but before the server runs still stops it cleanly.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers; needs a runtime.
    fn install() -> anyhow::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch for ctrl-c")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch for sigterm")?,
        })
    }

    /// Resolves with the name of the first signal.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "ctrl-c",
            _ = self.terminate.recv() => "sigterm",
        }
    }
}

/// Runs `strata replica` to completion.
pub(crate) fn run(args: ReplicaArgs) -> anyhow::Result<()> {
    let tls = args.tls_cert.is_some();
    check_listen(args.listen, tls, args.insecure).map_err(|e| anyhow!(e))?;
    let persist = location::normalize(&args.persist)?;
    if persist.starts_with("mem://") {
        bail!("{}", location::memory_elsewhere(&persist));
    }
    let config = server_config(&args)?;
    let grace = args.shutdown_grace;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    // Check the location with a deadline before the replica's own adapter opens it.
    rt.block_on(location::open(
        &persist,
        Access::ReadWrite,
        args.open_timeout,
    ))?;
    let listener = rt
        .block_on(TcpListener::bind(args.listen))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // `PersistShards` owns a runtime and blocks on it: open it outside ours.
    let shards = Arc::new(
        PersistShards::open(&persist)
            .with_context(|| format!("cannot open persist location {persist}"))?,
    );
    let metrics = Metrics::new();
    let replica_config = ReplicaConfig {
        workers: usize::from(args.workers),
        observer: Some(Arc::new(Observed(metrics.replica.clone()))),
        ..ReplicaConfig::default()
    };
    let server = ReplicaServer::start(replica_config, Arc::clone(&shards) as _)
        .context("cannot start the replica")?;
    let handler: Arc<dyn ReplicaHandler<Timestamp>> = Arc::new(Metered {
        inner: Arc::clone(&server) as _,
        metrics: metrics.replica.clone(),
    });

    let result = rt.block_on(async {
        let signals = ShutdownSignals::install()?;
        let metrics_server = match args.metrics_addr {
            Some(addr) => {
                let server = serve_metrics(addr, metrics)
                    .await
                    .with_context(|| format!("cannot serve metrics on {addr}"))?;
                eprintln!(
                    "strata replica: metrics at http://{}/metrics",
                    server.local_addr()
                );
                Some(server)
            }
            None => None,
        };
        eprintln!(
            "strata replica: listening on {bound} ({}, {}), persist {}, {} worker(s)",
            if tls { "tls" } else { "plaintext" },
            if config.token.is_some() {
                "token required"
            } else {
                "no token"
            },
            persist,
            args.workers,
        );
        let served = serve(handler, config, listener, signals, grace).await;
        if let Some(server) = metrics_server {
            server.shutdown().await;
        }
        served
    });
    // Connections' tasks hold clones of the server; drop them before the server, on
    // this thread, so the replica's workers and runtimes stop outside any async context.
    rt.shutdown_timeout(Duration::from_secs(1));
    // Stops the dataflows and lets the shards' maintenance finish before the exit.
    server.shutdown();
    drop(server);
    drop(shards);
    if result.is_ok() {
        eprintln!("strata replica: stopped");
    }
    result
}

/// Serves until a signal, then waits up to `grace` for open connections.
async fn serve(
    handler: Arc<dyn ReplicaHandler<Timestamp>>,
    config: ServerConfig,
    listener: TcpListener,
    mut signals: ShutdownSignals,
    grace: Duration,
) -> anyhow::Result<()> {
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _peer)| {
            // Commands are small and latency matters more than throughput.
            let _ = stream.set_nodelay(true);
            stream
        });
        Some((accepted, listener))
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stop_rx.await;
    };
    let server = grpc::serve(handler, EpochFence::new(), config, incoming, stopped);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            result.context("the grpc server failed")?;
            bail!("the grpc server stopped unexpectedly")
        }
        signal = signals.recv() => {
            eprintln!("strata replica: {signal}, shutting down");
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.context("the grpc server failed while stopping")?,
        Err(_) => eprintln!(
            "strata replica: connections still open after {:.1}s, closing them",
            grace.as_secs_f64()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(addr: &str, tls: bool, insecure: bool, allowed: bool) {
        let got = check_listen(addr.parse().unwrap(), tls, insecure);
        assert_eq!(
            got.is_ok(),
            allowed,
            "{addr} tls={tls} insecure={insecure}: {got:?}"
        );
        if let Err(message) = got {
            assert!(message.contains(addr), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn listen_rule_table() {
        check("127.0.0.1:7000", false, false, true);
        check("127.1.2.3:7000", false, false, true);
        check("[::1]:7000", false, false, true);
        check("0.0.0.0:7000", false, false, false);
        check("[::]:7000", false, false, false);
        check("10.0.0.5:7000", false, false, false);
        check("0.0.0.0:7000", true, false, true);
        check("0.0.0.0:7000", false, true, true);
        check("10.0.0.5:7000", true, true, true);
    }

    #[test]
    fn token_is_trimmed_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  secret\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "secret");
        std::fs::write(&path, " \n").unwrap();
        assert!(format!("{:#}", read_token(&path).unwrap_err()).contains("is empty"));
        let missing = dir.path().join("missing");
        assert!(
            format!("{:#}", read_token(&missing).unwrap_err()).contains("cannot read token file")
        );
    }
}
