//! The format marker: the object `strata-format` at a location's root names the
//! consensus its shards use (`consensus=register`, `consensus=file-register` or
//! `consensus=log`), so no client reads a location with the other format.
//!
//! [`settle`] runs when a location is opened by URL:
//! - a marker naming what the store uses by default is accepted;
//! - a marker naming `log` (or no marker, over shards that have log versions: a
//!   location written before the registers) keeps the log, which every store can do;
//! - any other marker is [`LocationError::Format`], naming both formats;
//! - with no marker and no log versions, the default is written (create-if-absent, so
//!   two clients opening a new location at once agree). A location that cannot be
//!   written (read-only files or credentials) is still opened: nothing can be
//!   committed there, so no format can be mixed up.

use bytes::Bytes;
use object_store::path::Path;
use strata_controller_api::retry::{Backoff, BackoffConfig};

use super::ConsensusKind;
use crate::error::LocationError;
use crate::location::Location;

/// The marker's key, relative to the location.
pub const MARKER: &str = "strata-format";

fn marker_text(kind: &ConsensusKind) -> String {
    format!("consensus={}\n", kind.name())
}

fn parse(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("consensus="))
        .map(str::trim)
}

/// The consensus `loc` must use, given its marker (written if absent).
pub async fn settle(loc: &Location) -> Result<ConsensusKind, LocationError> {
    let key = loc.key(MARKER);
    let unreachable = |e: &dyn std::fmt::Display| LocationError::Unreachable {
        url: loc.url.clone(),
        reason: format!("reading the format marker {MARKER}: {e}"),
    };
    let default = loc.consensus.clone();
    for _ in 0..3 {
        match read_marker(loc, &key).await {
            Ok(Some(bytes)) => return accept(loc, &default, &bytes),
            Ok(None) => {}
            Err(e) => return Err(unreachable(&e)),
        }
        let kind = match retried_log_check(loc).await.map_err(|e| unreachable(&e))? {
            true => ConsensusKind::Log,
            false => default.clone(),
        };
        let text = Bytes::from(marker_text(&kind));
        match crate::blob::create(loc.store.as_ref(), &key, text).await {
            Ok(crate::blob::Created::Yes) => return Ok(kind),
            // Another client wrote it first: read what it chose.
            Ok(crate::blob::Created::AlreadyExists) => continue,
            Err(e) => {
                tracing::warn!(url = %loc.url, error = %e, "cannot write the format marker; opening without it");
                return Ok(kind);
            }
        }
    }
    Err(unreachable(&"the marker kept changing"))
}

/// Like [`settle`], but never writes: a location without a marker is read as the log if
/// it has log versions, and with its default consensus otherwise. For clients that only
/// inspect (a read-only copy, read-only credentials, or a location whose writers must
/// not be disturbed).
pub async fn settle_read_only(loc: &Location) -> Result<ConsensusKind, LocationError> {
    let key = loc.key(MARKER);
    let unreachable = |e: &dyn std::fmt::Display| LocationError::Unreachable {
        url: loc.url.clone(),
        reason: format!("reading the format marker {MARKER}: {e}"),
    };
    let default = loc.consensus.clone();
    match read_marker(loc, &key).await {
        Ok(Some(bytes)) => accept(loc, &default, &bytes),
        Ok(None) => match retried_log_check(loc).await.map_err(|e| unreachable(&e))? {
            true => Ok(ConsensusKind::Log),
            false => Ok(default),
        },
        Err(e) => Err(unreachable(&e)),
    }
}

/// How many times a read of the marker (or the log check) is tried: reads change
/// nothing, so a store that failed one transiently is asked again, with backoff.
const READ_ATTEMPTS: u32 = 5;

/// The marker's bytes, or `None` if there is none; transient failures are retried.
async fn read_marker(
    loc: &Location,
    key: &Path,
) -> Result<Option<Bytes>, crate::error::ExternalError> {
    let mut backoff = Backoff::new(BackoffConfig::STORE);
    loop {
        match crate::blob::get(loc.store.as_ref(), key).await {
            Err(_) if backoff.retries() + 1 < READ_ATTEMPTS => {
                tokio::time::sleep(backoff.next_delay()).await
            }
            other => return other,
        }
    }
}

/// [`has_log_versions`], with transient failures retried.
async fn retried_log_check(loc: &Location) -> Result<bool, object_store::Error> {
    let mut backoff = Backoff::new(BackoffConfig::STORE);
    loop {
        match has_log_versions(loc).await {
            Err(_) if backoff.retries() + 1 < READ_ATTEMPTS => {
                tokio::time::sleep(backoff.next_delay()).await
            }
            other => return other,
        }
    }
}

fn accept(
    loc: &Location,
    default: &ConsensusKind,
    bytes: &[u8],
) -> Result<ConsensusKind, LocationError> {
    let text = String::from_utf8_lossy(bytes);
    let found = parse(&text).unwrap_or("").to_owned();
    if found == default.name() {
        return Ok(default.clone());
    }
    if found == ConsensusKind::Log.name() {
        return Ok(ConsensusKind::Log);
    }
    Err(LocationError::Format {
        url: loc.url.clone(),
        found: if found.is_empty() {
            text.trim().to_owned()
        } else {
            found
        },
        expected: default.name().to_owned(),
    })
}

/// Whether the first shard of the location keeps log versions (`shards/{s}/state/`).
async fn has_log_versions(loc: &Location) -> Result<bool, object_store::Error> {
    let shards = loc.key("shards");
    let listed = loc.store.list_with_delimiter(Some(&shards)).await?;
    let Some(first) = listed.common_prefixes.first() else {
        return Ok(false);
    };
    let inside = loc.store.list_with_delimiter(Some(first)).await?;
    let state: Path = Path::from_iter(first.parts().chain(std::iter::once("state".into())));
    Ok(inside.common_prefixes.contains(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse() {
        assert_eq!(parse("consensus=register\n"), Some("register"));
        assert_eq!(parse("# x\nconsensus= log \n"), Some("log"));
        assert_eq!(parse("garbage"), None);
        assert_eq!(
            parse(&marker_text(&ConsensusKind::FileRegister {
                root: "/x".into()
            })),
            Some("file-register")
        );
    }
}
