//! `strata demo`'s options: the clap arguments ([`DemoArgs`], in `args`) checked and
//! resolved.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use strata_persist_backend::location::LocationSpec;

pub(crate) use crate::args::Transport;
use crate::args::{DemoArgs, OpenTimeout};
use crate::location;

/// The validated options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The persist location URL, with a relative `file://` path made absolute.
    pub(crate) persist: String,
    /// Where sink files go.
    pub(crate) sinks_dir: PathBuf,
    /// Why the sinks go there, when it is not beside the persist data.
    pub(crate) sinks_note: Option<String>,
    pub(crate) replicas: u16,
    pub(crate) workers: u16,
    pub(crate) transport: Transport,
    pub(crate) duration: Duration,
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// A Postgres database to ingest, and the publication to ingest from it.
    pub(crate) postgres: Option<(String, String)>,
    pub(crate) open_timeout: OpenTimeout,
}

/// `--persist` as a URL (see `location::normalize`).
fn absolute_file_url(text: &str) -> anyhow::Result<String> {
    location::normalize(text)
}

/// The directory of a `file://` location.
fn file_dir(url: &str) -> anyhow::Result<Option<PathBuf>> {
    match LocationSpec::parse(url).context("invalid --persist")? {
        LocationSpec::File { path } => Ok(Some(path)),
        _ => Ok(None),
    }
}

impl Options {
    /// Checks `args` and resolves relative paths against the current directory.
    pub(crate) fn from_args(args: DemoArgs) -> anyhow::Result<Options> {
        let persist = absolute_file_url(args.persist.trim())?;
        let (sinks_dir, sinks_note) = match file_dir(&persist)? {
            Some(dir) => (dir.join("sinks"), None),
            None => {
                let cwd = std::env::current_dir().context("cannot read the current directory")?;
                let dir = cwd.join("strata-data").join("sinks");
                let note = format!(
                    "sink files go to {} (a {} location has no local directory)",
                    dir.display(),
                    scheme(&persist)
                );
                (dir, Some(note))
            }
        };
        if args.transport == Transport::Grpc && persist.starts_with("mem://") {
            bail!(
                "--transport grpc needs a persist location the replica processes share \
                 (file:// or s3://): {persist} lives in this process's memory"
            );
        }
        Ok(Options {
            persist,
            sinks_dir,
            sinks_note,
            replicas: args.replicas,
            workers: args.workers,
            transport: args.transport,
            duration: args.duration,
            metrics_addr: args.metrics_addr,
            postgres: args
                .postgres
                .map(|url| (url, args.postgres_publication.clone())),
            open_timeout: args.open_timeout,
        })
    }

    /// Whether the persist location is this process's memory (nothing survives).
    pub(crate) fn is_memory(&self) -> bool {
        self.persist.starts_with("mem://")
    }
}

/// The scheme of a URL, such as `mem://`.
fn scheme(url: &str) -> &str {
    url.find("://").map_or(url, |i| &url[..i + 3])
}

/// `path` relative to the current directory when it is below it, for shorter lines.
pub(crate) fn short_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(
            || path.display().to_string(),
            |p| format!("./{}", p.display()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_urls_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let want = url::Url::from_file_path(cwd.join("strata-data"))
            .unwrap()
            .to_string();
        assert_eq!(absolute_file_url("file://./strata-data").unwrap(), want);
        assert_eq!(absolute_file_url("file://strata-data").unwrap(), want);
        assert_eq!(absolute_file_url("strata-data").unwrap(), want);
        assert_eq!(absolute_file_url("file:///tmp/x").unwrap(), "file:///tmp/x");
        assert_eq!(absolute_file_url("mem://demo").unwrap(), "mem://demo");
        assert_eq!(scheme("s3://bucket/prefix"), "s3://");
    }
}
