//! Opening persist locations with errors a person can act on.
//!
//! Object storage retries connection failures with backoff for minutes, so every open
//! has a deadline; a read-only command refuses a local directory that does not exist
//! instead of creating an empty one.

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

/// A `--persist` value as a location URL: URLs pass through; a plain path (which is
/// what people type first) and a relative `file://` URL (`file://./x`, `file://x`,
/// which URL parsing would read as a host) become the `file://` URL of the absolute
/// path. Every command takes `--persist` through here, so all accept the same forms.
pub(crate) fn normalize(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("file://") {
        if rest.starts_with('/') {
            return Ok(text.to_owned());
        }
        return file_url_of(std::path::Path::new(
            rest.strip_prefix("./").unwrap_or(rest),
        ));
    }
    if text.contains("://") || text.is_empty() {
        return Ok(text.to_owned());
    }
    file_url_of(std::path::Path::new(text))
}

/// The `file://` URL of `path`, resolved against the current directory.
fn file_url_of(path: &std::path::Path) -> anyhow::Result<String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(path)
    };
    url::Url::from_file_path(&absolute)
        .map(String::from)
        .map_err(|()| {
            anyhow!(
                "invalid --persist: {} is not a usable path",
                absolute.display()
            )
        })
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

/// Why a `mem://` location cannot be used by a command that runs in its own process.
pub(crate) fn memory_elsewhere(url: &str) -> String {
    format!(
        "{url} is memory inside one process, and this command runs in a process of its own \
         that cannot see it: use a directory (file:///path) or s3://bucket/prefix"
    )
}

/// Opens `url` within `timeout`.
pub(crate) async fn open(
    url: &str,
    access: Access,
    timeout: OpenTimeout,
) -> anyhow::Result<PersistClient> {
    let spec = LocationSpec::parse(url).context("invalid --persist")?;
    if let (Access::ReadOnly, LocationSpec::Memory { .. }) = (access, &spec) {
        bail!("{}", memory_elsewhere(url));
    }
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
    let limit = timeout.limit;
    let opening = async {
        match access {
            // Inspection writes nothing: not even the format marker.
            Access::ReadOnly => PersistClient::open_read_only(url).await,
            Access::ReadWrite => PersistClient::open(url).await,
        }
    };
    match tokio::time::timeout(limit, opening).await {
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
    let limit = timeout.limit;
    tokio::time::timeout(limit, op).await.map_err(|_| {
        anyhow!(
            "persist location {url} did not answer within {:.1}s",
            limit.as_secs_f64()
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(normalize(input).unwrap(), expected, "{input}");
    }

    #[test]
    fn normalize_table() {
        let cwd = std::env::current_dir().unwrap();
        let cwd = url::Url::from_directory_path(&cwd).unwrap().to_string();
        check("file:///tmp/x", "file:///tmp/x");
        check("s3://bucket/prefix", "s3://bucket/prefix");
        check("mem://demo", "mem://demo");
        check("", "");
        check("/tmp/data", "file:///tmp/data");
        check("/tmp/with space", "file:///tmp/with%20space");
        check("strata-data", &format!("{cwd}strata-data"));
        check(
            "./strata-data",
            &format!("{cwd}./strata-data").replace("/./", "/"),
        );
    }
}
