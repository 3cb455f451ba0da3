//! Locations: one URL names one `Arc<dyn ObjectStore>` plus a key prefix.
//!
//! - `mem://name`: a process-wide registry of named in-memory stores, so every client
//!   opened with the same name shares the same data (until the process exits). A test
//!   may register any store under a name instead ([`register_memory_location`]).
//! - `file:///abs/path` (feature `file`): a local directory, created if missing. Every
//!   write is fsynced, file and parent directory, before it is acknowledged
//!   (`LocalFileSystem::with_fsync(true)`), so an acknowledged append survives a crash.
//! - `s3://bucket/prefix` (feature `s3`): settings come from the standard AWS
//!   environment (`AmazonS3Builder::from_env`), including `AWS_ENDPOINT_URL` and
//!   `AWS_ALLOW_HTTP`. Opening lists the prefix once, so a missing bucket is an error at
//!   open, not at the first write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::consensus::ConsensusKind;
use crate::error::LocationError;
use crate::paths::{KeyError, ObjectKey, Prefix};

/// An opened location: the store and the prefix under which every key lives.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store that holds both consensus and blob objects.
    pub store: Arc<dyn ObjectStore>,
    /// Every key of this location starts with this prefix (may be empty).
    pub prefix: Path,
    /// The URL this location was opened from.
    pub url: String,
    /// The consensus its shards use (see [`crate::consensus`]).
    pub consensus: ConsensusKind,
}

/// The parsed form of a location URL, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationSpec {
    /// `mem://name`.
    Memory {
        /// The registry name.
        name: String,
    },
    /// `file:///path`.
    File {
        /// The absolute directory.
        path: std::path::PathBuf,
    },
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix inside the bucket (may be empty).
        prefix: String,
    },
}

impl LocationSpec {
    /// Parses a location URL without touching any storage.
    ///
    /// # Examples
    ///
    /// ```
    /// use strata_persist_backend::location::LocationSpec;
    /// assert_eq!(
    ///     LocationSpec::parse("s3://bkt/a/b").unwrap(),
    ///     LocationSpec::S3 { bucket: "bkt".into(), prefix: "a/b".into() },
    /// );
    /// assert!(LocationSpec::parse("ftp://x").is_err());
    /// assert!(LocationSpec::parse("not a url").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, LocationError> {
        let malformed = |reason: &str| LocationError::Malformed {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| malformed(&e.to_string()))?;
        match url.scheme() {
            "mem" => {
                let mut name = url.host_str().unwrap_or_default().to_owned();
                name.push_str(url.path());
                if name.is_empty() {
                    return Err(malformed("mem:// needs a name"));
                }
                Ok(LocationSpec::Memory { name })
            }
            "file" => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(malformed("file:// urls take no host; use file:///abs/path"));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| malformed("not an absolute file path"))?;
                Ok(LocationSpec::File { path })
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| malformed("s3:// needs a bucket"))?;
                let prefix = url.path().trim_matches('/').to_owned();
                Ok(LocationSpec::S3 {
                    bucket: bucket.to_owned(),
                    prefix,
                })
            }
            other => Err(LocationError::UnknownScheme {
                scheme: other.to_owned(),
                url: text.to_owned(),
            }),
        }
    }
}

fn memory_registry() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The process-wide in-memory store registered under `name`, created on first use.
pub fn memory_store(name: &str) -> Arc<InMemory> {
    let mut registry = match memory_registry().lock() {
        Ok(guard) => guard,
        // A panic while holding this lock cannot leave the map half-updated.
        Err(poisoned) => poisoned.into_inner(),
    };
    Arc::clone(
        registry
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(InMemory::new())),
    )
}

/// Stores registered with [`register_memory_location`], consulted before the named
/// in-memory stores.
type Overrides = HashMap<String, (Arc<dyn ObjectStore>, ConsensusKind)>;

fn store_overrides() -> &'static Mutex<Overrides> {
    static OVERRIDES: OnceLock<Mutex<Overrides>> = OnceLock::new();
    OVERRIDES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Makes every `mem://name` location opened from now on in this process use `store`
/// instead of the in-memory store of that name, until [`unregister_memory_location`].
/// This is how a test puts a decorator (fault injection, latency) under code that
/// opens locations by URL. Returns the store registered before, if any.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use object_store::memory::InMemory;
/// use strata_persist_backend::location::{register_memory_location, unregister_memory_location};
/// let name = "location-doc-override";
/// assert!(register_memory_location(name, Arc::new(InMemory::new())).is_none());
/// assert!(unregister_memory_location(name).is_some());
/// ```
///
/// The location's consensus is the register, so `store` must support
/// `PutMode::Update`; for a store that does not (a local file system under a
/// decorator), use [`register_memory_location_as`].
pub fn register_memory_location(
    name: &str,
    store: Arc<dyn ObjectStore>,
) -> Option<Arc<dyn ObjectStore>> {
    register_memory_location_as(name, store, ConsensusKind::Register)
}

/// [`register_memory_location`] with the consensus the location must use: the one of
/// the location `store` decorates (for example `FileRegister` at its directory).
pub fn register_memory_location_as(
    name: &str,
    store: Arc<dyn ObjectStore>,
    consensus: ConsensusKind,
) -> Option<Arc<dyn ObjectStore>> {
    let mut overrides = match store_overrides().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    overrides
        .insert(name.to_owned(), (store, consensus))
        .map(|(store, _)| store)
}

/// Removes a store registered with [`register_memory_location`]; `mem://name` opens the
/// named in-memory store again. Returns the removed store, if any.
pub fn unregister_memory_location(name: &str) -> Option<Arc<dyn ObjectStore>> {
    let mut overrides = match store_overrides().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    overrides.remove(name).map(|(store, _)| store)
}

fn memory_location_store(name: &str) -> (Arc<dyn ObjectStore>, ConsensusKind) {
    let registered = match store_overrides().lock() {
        Ok(guard) => guard.get(name).cloned(),
        Err(poisoned) => poisoned.into_inner().get(name).cloned(),
    };
    registered.unwrap_or_else(|| (memory_store(name), ConsensusKind::Register))
}

impl Location {
    /// Parses and opens a location URL.
    ///
    /// Errors: [`LocationError::Malformed`], [`LocationError::UnknownScheme`],
    /// [`LocationError::FeatureDisabled`], or [`LocationError::Unreachable`] for a
    /// bucket or directory that cannot be used.
    ///
    /// Opening settles the consensus format with the location's marker
    /// ([`crate::consensus::format`]), writing it for a new location.
    pub async fn open(text: &str) -> Result<Location, LocationError> {
        let mut loc = Self::open_store(text, true).await?;
        loc.consensus = crate::consensus::format::settle(&loc).await?;
        Ok(loc)
    }

    /// Opens the location named by `text` for reading only: nothing is written, not even
    /// the format marker (it is read if present) or a missing local directory (which is
    /// [`LocationError::Unreachable`]).
    pub async fn open_read_only(text: &str) -> Result<Location, LocationError> {
        let mut loc = Self::open_store(text, false).await?;
        loc.consensus = crate::consensus::format::settle_read_only(&loc).await?;
        Ok(loc)
    }

    async fn open_store(text: &str, create: bool) -> Result<Location, LocationError> {
        let spec = LocationSpec::parse(text)?;
        let url = text.to_owned();
        let loc = match spec {
            LocationSpec::Memory { name } => {
                let (store, consensus) = memory_location_store(&name);
                Location::from_store(store, "", &url).with_consensus(consensus)
            }
            LocationSpec::File { path } => open_file(path, url, create).await?,
            LocationSpec::S3 { bucket, prefix } => open_s3(bucket, prefix, url).await?,
        };
        Ok(loc)
    }

    /// The directory that holds `prefix`'s objects, when this location is a local
    /// directory (`file:///path`): for what only the file system shows, such as the
    /// staging files of interrupted puts.
    pub(crate) fn local_dir(&self, prefix: &crate::paths::Prefix) -> Option<std::path::PathBuf> {
        let LocationSpec::File { path } = LocationSpec::parse(&self.url).ok()? else {
            return None;
        };
        let mut dir = path;
        dir.extend(self.prefix.parts().map(|p| p.as_ref().to_owned()));
        dir.extend(prefix.to_string().split('/').map(str::to_owned));
        Some(dir)
    }

    /// A location over any store, for tests and decorators such as fault injection.
    /// Its consensus is the default for the URL's scheme: the file register for
    /// `file:///path` (at that directory), the register otherwise (the store must
    /// support `PutMode::Update`; for a decorated local file system, pass the
    /// decorated location's consensus with [`Location::with_consensus`]). No format
    /// marker is read or written.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, url: &str) -> Location {
        let consensus = match LocationSpec::parse(url) {
            Ok(LocationSpec::File { path }) => ConsensusKind::FileRegister { root: path },
            _ => ConsensusKind::Register,
        };
        Location {
            store,
            prefix: Path::from(prefix),
            url: url.to_owned(),
            consensus,
        }
    }

    /// The same location with another consensus (for tests and benchmarks that
    /// compare them; a location's shards must always be read with one).
    pub fn with_consensus(mut self, consensus: ConsensusKind) -> Location {
        self.consensus = consensus;
        self
    }

    /// The full key of `suffix` (a `/`-separated relative path) in this location.
    pub(crate) fn key(&self, suffix: &str) -> Path {
        // Our keys are plain segments (letters, digits, `-`, `_`, `.`), which need no
        // encoding: joined to the (canonical) prefix and parsed as one string, they
        // give the same path as the part-by-part way below, with fewer allocations.
        let plain = |segment: &str| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if suffix.split('/').all(plain) {
            let prefix = self.prefix.as_ref();
            let joined = if prefix.is_empty() {
                Path::parse(suffix)
            } else {
                Path::parse(format!("{prefix}/{suffix}"))
            };
            if let Ok(path) = joined {
                return path;
            }
        }
        self.key_by_parts(suffix)
    }

    /// The full key of `suffix`, each segment encoded on its own.
    fn key_by_parts(&self, suffix: &str) -> Path {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_owned()).collect();
        parts.extend(
            suffix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        Path::from_iter(parts)
    }

    /// The full key of `object`.
    pub(crate) fn object(&self, object: &ObjectKey) -> Path {
        self.key(&object.to_string())
    }

    /// The full key of the listing prefix `prefix`.
    pub(crate) fn prefix_of(&self, prefix: Prefix) -> Path {
        self.key(&prefix.to_string())
    }

    /// `path` relative to this location's prefix, or `None` if it is not under it.
    pub(crate) fn relative(&self, path: &Path) -> Option<String> {
        let mut parts = path.parts();
        for expected in self.prefix.parts() {
            if parts.next()? != expected {
                return None;
            }
        }
        Some(
            parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// What `path`, a key listed from this location, names. A key outside the prefix or
    /// of no known form is an error, and is not ours to touch.
    pub(crate) fn parse_key(&self, path: &Path) -> Result<ObjectKey, KeyError> {
        let relative = self.relative(path).ok_or_else(|| KeyError {
            key: path.to_string(),
            reason: "outside the location's prefix",
        })?;
        relative.parse()
    }

    /// The listed objects (from a listing of `listing`) whose keys parse and are
    /// `expected` there. Any other object is not ours to touch: it is left out, and
    /// logged.
    pub(crate) fn expected_keys(
        &self,
        listed: Vec<object_store::ObjectMeta>,
        listing: &str,
        expected: impl Fn(&ObjectKey) -> bool,
    ) -> Vec<(ObjectKey, object_store::ObjectMeta)> {
        listed
            .into_iter()
            .filter_map(|meta| match self.parse_key(&meta.location) {
                Ok(key) if expected(&key) => Some((key, meta)),
                Ok(key) => {
                    tracing::warn!(%key, listing, "unexpected object in a listing; left alone");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, listing, "unknown object in a listing; left alone");
                    None
                }
            })
            .collect()
    }
}

#[cfg(feature = "file")]
async fn open_file(
    path: std::path::PathBuf,
    url: String,
    create: bool,
) -> Result<Location, LocationError> {
    let unreachable = |e: &dyn std::fmt::Display| LocationError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let dir = path.clone();
    tokio::task::spawn_blocking(move || match create {
        true => std::fs::create_dir_all(dir),
        false if dir.is_dir() => Ok(()),
        false => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", dir.display()),
        )),
    })
    .await
    .map_err(|e| unreachable(&e))?
    .map_err(|e| unreachable(&e))?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&path)
        .map_err(|e| unreachable(&e))?
        .with_fsync(true)
        .with_automatic_cleanup(true);
    Ok(Location {
        store: Arc::new(fs),
        prefix: Path::default(),
        url,
        consensus: ConsensusKind::FileRegister { root: path },
    })
}

#[cfg(not(feature = "file"))]
async fn open_file(
    _path: std::path::PathBuf,
    _url: String,
    _create: bool,
) -> Result<Location, LocationError> {
    Err(LocationError::FeatureDisabled {
        scheme: "file".into(),
        feature: "file",
    })
}

#[cfg(feature = "s3")]
async fn open_s3(bucket: String, prefix: String, url: String) -> Result<Location, LocationError> {
    use futures::TryStreamExt;
    let s3_env = crate::s3_errors::S3Env::current();
    let unreachable = |e: &dyn std::fmt::Display| {
        let raw = e.to_string();
        LocationError::Unreachable {
            url: url.clone(),
            reason: crate::s3_errors::diagnose(&bucket, &raw, &s3_env).unwrap_or(raw),
        }
    };
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .build()
        .map_err(|e| unreachable(&e))?;
    let store: Arc<dyn ObjectStore> = Arc::new(s3);
    let prefix_path = Path::from(prefix.as_str());
    // A missing bucket fails the listing; an empty prefix lists nothing.
    let probe = Path::from_iter(prefix_path.parts().chain(std::iter::once("shards".into())));
    let _first: Option<_> = store
        .list(Some(&probe))
        .try_next()
        .await
        .map_err(|e| unreachable(&e))?;
    Ok(Location {
        store,
        prefix: prefix_path,
        url,
        consensus: ConsensusKind::Register,
    })
}

#[cfg(not(feature = "s3"))]
async fn open_s3(
    _bucket: String,
    _prefix: String,
    _url: String,
) -> Result<Location, LocationError> {
    Err(LocationError::FeatureDisabled {
        scheme: "s3".into(),
        feature: "s3",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<LocationSpec, &str>) {
        match (LocationSpec::parse(text), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(got), Err(kind)) => {
                assert!(format!("{got:?}").starts_with(kind), "{text}: {got:?}")
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_table() {
        check("mem://a", Ok(LocationSpec::Memory { name: "a".into() }));
        check("mem://a/b", Ok(LocationSpec::Memory { name: "a/b".into() }));
        check("mem://", Err("Malformed"));
        check(
            "file:///tmp/x",
            Ok(LocationSpec::File {
                path: "/tmp/x".into(),
            }),
        );
        check("file://host/tmp/x", Err("Malformed"));
        check(
            "s3://b",
            Ok(LocationSpec::S3 {
                bucket: "b".into(),
                prefix: String::new(),
            }),
        );
        check(
            "s3://b/p/q/",
            Ok(LocationSpec::S3 {
                bucket: "b".into(),
                prefix: "p/q".into(),
            }),
        );
        check("s3:///p", Err("Malformed"));
        check("gs://b", Err("UnknownScheme"));
        check("", Err("Malformed"));
        check("::::", Err("Malformed"));
    }

    #[test]
    fn keys_join_prefix() {
        let loc = Location::from_store(memory_store("keys"), "a/b", "mem://keys");
        assert_eq!(loc.key("shards/x/state").as_ref(), "a/b/shards/x/state");
        let loc = Location::from_store(memory_store("keys"), "", "mem://keys");
        assert_eq!(loc.key("shards/x").as_ref(), "shards/x");
    }

    #[test]
    fn the_parsed_key_is_the_part_by_part_key() {
        for prefix in ["", "a/b", "with space/x"] {
            let loc = Location::from_store(memory_store("keys"), prefix, "mem://keys");
            for suffix in [
                "shards/s1/head",
                "shards/s1/state/00000000000000000042",
                "/leading",
                "trailing/",
                "double//slash",
                "odd chars/{x}#|%",
                "shards/s1/..",
                "a/./b",
                "",
            ] {
                assert_eq!(
                    loc.key(suffix),
                    loc.key_by_parts(suffix),
                    "{prefix:?} {suffix:?}"
                );
            }
        }
    }

    #[test]
    fn listed_keys_parse_relative_to_the_prefix() {
        let loc = Location::from_store(memory_store("rel"), "a/b", "mem://rel");
        let key = ObjectKey::Head {
            shard: strata_controller_api::ShardId::from_bytes([3; 16]),
        };
        assert_eq!(loc.parse_key(&loc.object(&key)).unwrap(), key);
        let outside = Path::from("a/c/strata-format");
        assert_eq!(
            loc.parse_key(&outside).unwrap_err().reason,
            "outside the location's prefix"
        );
        assert_eq!(loc.relative(&Path::from("a/b")).as_deref(), Some(""));
    }
}
