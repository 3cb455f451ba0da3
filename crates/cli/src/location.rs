//! Opening persist locations with errors a person can act on.
//!
//! Object storage retries connection failures with backoff for minutes, so every open
//! has a deadline; a read-only command refuses a local directory that does not exist
//! instead of creating an empty one.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use strata_persist_backend::PersistClient;
use strata_persist_backend::location::LocationSpec;

use crate::args::OpenTimeout;

/// Whether a command may create the location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: a missing local directory is an error.
    ReadOnly,
    /// May create the location (a replica or controller).
    ReadWrite,
}

/// The deadline of an open, from `--open-timeout`.
pub(crate) fn deadline(timeout: OpenTimeout) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(timeout.secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| anyhow!("--open-timeout must be a positive number of seconds"))
}

/// A hint for a location kind that does not answer.
fn unreachable_hint(spec: &LocationSpec) -> &'static str {
    match spec {
        LocationSpec::S3 { .. } => {
            "; check AWS_ENDPOINT_URL, AWS_REGION and credentials, and that the endpoint is up"
        }
        _ => "",
    }
}

/// Opens `url` within `timeout`.
pub(crate) async fn open(
    url: &str,
    access: Access,
    timeout: OpenTimeout,
) -> anyhow::Result<PersistClient> {
    let spec = LocationSpec::parse(url).context("invalid --persist")?;
    if let (Access::ReadOnly, LocationSpec::File { path }) = (access, &spec) {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!(
                "no persist data at {url}: {} is not a directory",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "no persist data at {url}: {} does not exist",
                    path.display()
                )
            }
            Err(e) => bail!("cannot read persist location {url}: {e}"),
        }
    }
    let limit = deadline(timeout)?;
    match tokio::time::timeout(limit, PersistClient::open(url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(anyhow!(e).context(format!("cannot open persist location {url}"))),
        Err(_) => bail!(
            "persist location {url} did not answer within {:.1}s{}",
            limit.as_secs_f64(),
            unreachable_hint(&spec)
        ),
    }
}

/// Runs `op` against a location within `timeout`, so a location that stops answering
/// after it opened does not hang a command either.
pub(crate) async fn within<F, T>(url: &str, timeout: OpenTimeout, op: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let limit = deadline(timeout)?;
    tokio::time::timeout(limit, op).await.map_err(|_| {
        anyhow!(
            "persist location {url} did not answer within {:.1}s",
            limit.as_secs_f64()
        )
    })?
}
