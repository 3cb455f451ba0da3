//! [`WriteGate`]: an `ObjectStore` decorator that refuses the writes a test forbids, at
//! the moment they are made, and remembers each one.
//!
//! A test that must show "nothing is written while X" cannot show it by sleeping and
//! then looking: a write that comes later than the look passes. Under a gate, the
//! forbidden window is the time between [`WriteGate::deny_all`] (or
//! [`WriteGate::deny_where`]) and [`WriteGate::allow`], and every forbidden write in it
//! fails with an error naming the key, is logged at error level, and is recorded for
//! [`WriteGate::assert_nothing_refused`], however late it comes.
//!
//! Reads and listings always pass. The gate sees what goes through the object store:
//! over a memory or S3 store that is every write, since their consensus is the store's
//! conditional put; a local directory's consensus writes the file system directly, so
//! over a file store only parts (blobs) are gated.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use super::config::OpClass;

/// The `store` name of every error a [`WriteGate`] returns.
pub const WRITE_GATE_STORE_NAME: &str = "write-gate";

/// Which writes are forbidden: called with the class ([`OpClass::Write`] or
/// [`OpClass::Delete`]) and the key of each write.
type Rule = Arc<dyn Fn(OpClass, &Path) -> bool + Send + Sync>;

/// One write a [`WriteGate`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedWrite {
    /// The operation: `put`, `put_multipart`, `delete`, `copy` or `rename`.
    pub op: &'static str,
    /// The key it would have written (the target of a copy or rename).
    pub key: String,
}

impl fmt::Display for RefusedWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.key)
    }
}

/// Wraps any [`ObjectStore`]; passes everything through until told to deny writes, and
/// then refuses the forbidden ones loudly: every forbidden write fails with an error
/// naming its key, is logged, and is recorded for [`WriteGate::assert_nothing_refused`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
/// use strata_testkit::faults::WriteGate;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let gate = WriteGate::new(Arc::new(InMemory::new()));
/// gate.put(&Path::from("a"), "1".into()).await.unwrap();
/// gate.deny_all();
/// assert!(gate.put(&Path::from("b"), "2".into()).await.is_err());
/// assert!(gate.get(&Path::from("a")).await.is_ok()); // reads pass
/// assert_eq!(gate.refused()[0].to_string(), "put b");
/// gate.allow();
/// gate.put(&Path::from("b"), "2".into()).await.unwrap();
/// # });
/// ```
pub struct WriteGate {
    inner: Arc<dyn ObjectStore>,
    rule: Mutex<Option<Rule>>,
    refused: Arc<Mutex<Vec<RefusedWrite>>>,
}

impl WriteGate {
    /// Wraps `inner`, letting every write through.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<WriteGate> {
        Arc::new(WriteGate {
            inner,
            rule: Mutex::new(None),
            refused: Arc::default(),
        })
    }

    /// From now on, refuses every write (put, multipart upload, delete, copy, rename).
    pub fn deny_all(&self) {
        self.deny_where(|_, _| true);
    }

    /// From now on, refuses the writes `forbidden` accepts; it gets the class
    /// ([`OpClass::Write`] or [`OpClass::Delete`]) and the key of each write.
    pub fn deny_where(&self, forbidden: impl Fn(OpClass, &Path) -> bool + Send + Sync + 'static) {
        *self.rule.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(forbidden));
    }

    /// From now on, lets every write through. What was refused stays recorded.
    pub fn allow(&self) {
        *self.rule.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Every write refused so far, in order.
    pub fn refused(&self) -> Vec<RefusedWrite> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Panics, listing them, if any write was refused so far; `what` names the
    /// forbidden window in the message (for example "while read-only").
    #[track_caller]
    pub fn assert_nothing_refused(&self, what: &str) {
        let refused = self.refused();
        assert!(
            refused.is_empty(),
            "{} forbidden write(s) {what}: {}",
            refused.len(),
            refused
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// The store this gate wraps.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// `Some(error)` if the rule forbids this write; records and logs it.
    fn check(&self, class: OpClass, op: &'static str, key: &Path) -> Option<object_store::Error> {
        let rule = self
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !rule.is_some_and(|forbidden| forbidden(class, key)) {
            return None;
        }
        Some(refuse(&self.refused, op, key))
    }
}

fn refuse(refused: &Mutex<Vec<RefusedWrite>>, op: &'static str, key: &Path) -> object_store::Error {
    let write = RefusedWrite {
        op,
        key: key.to_string(),
    };
    tracing::error!(%write, "write gate: a forbidden write was refused");
    refused
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(write.clone());
    object_store::Error::Generic {
        store: WRITE_GATE_STORE_NAME,
        source: format!("forbidden write refused: {write}").into(),
    }
}

impl fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGate")
            .field("inner", &self.inner)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for WriteGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WriteGate({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for WriteGate {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        if let Some(error) = self.check(OpClass::Write, "put", location) {
            return Err(error);
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        if let Some(error) = self.check(OpClass::Write, "put_multipart", location) {
            return Err(error);
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let rule = self
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(forbidden) = rule else {
            return self.inner.delete_stream(locations);
        };
        // One location at a time, so each delete is judged on its own key.
        let inner = Arc::clone(&self.inner);
        let log = Arc::clone(&self.refused);
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let forbidden = Arc::clone(&forbidden);
                let log = Arc::clone(&log);
                async move {
                    let location = location?;
                    if forbidden(OpClass::Delete, &location) {
                        return Err(refuse(&log, "delete", &location));
                    }
                    inner.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if let Some(error) = self.check(OpClass::Write, "copy", to) {
            return Err(error);
        }
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        if let Some(error) = self.check(OpClass::Write, "rename", to) {
            return Err(error);
        }
        self.inner.rename_opts(from, to, options).await
    }
}

/// A fresh in-memory location under a [`WriteGate`], from [`gated_memory_location`].
#[derive(Debug, Clone)]
pub struct GatedLocation {
    /// `mem://{name}-{uuid}`: everything opened on it writes through [`Self::gate`].
    pub url: String,
    /// `mem://{name}-{uuid}-ungated`: the same store without the gate, for the parts of
    /// a test that may write whenever they like (an earlier process, a seeding step),
    /// so that their late writes (a dropped handle expiring its lease) are never
    /// mistaken for forbidden ones.
    pub ungated_url: String,
    /// The gate; it lets everything through until told otherwise.
    pub gate: Arc<WriteGate>,
}

/// Registers a new `InMemory` store twice (see
/// `strata_persist_backend::location::register_memory_location`): under a gate as
/// [`GatedLocation::url`] and bare as [`GatedLocation::ungated_url`]. Every controller,
/// client or manager opened on the gated URL writes through the gate, consensus
/// included. The location is settled first (its format marker written), so that
/// opening it later writes nothing. The registrations last for the process; the name
/// is unique, so tests never share them.
///
/// Errors: the location cannot be settled (not expected of a memory store).
pub async fn gated_memory_location(
    name: &str,
) -> std::result::Result<GatedLocation, strata_persist_backend::LocationError> {
    use strata_persist_backend::location::register_memory_location;
    let unique = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let ungated = format!("{unique}-ungated");
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let gate = WriteGate::new(Arc::clone(&store));
    register_memory_location(&ungated, store);
    register_memory_location(&unique, gate.clone());
    let url = format!("mem://{unique}");
    strata_persist_backend::Location::open(&url).await?;
    Ok(GatedLocation {
        url,
        ungated_url: format!("mem://{ungated}"),
        gate,
    })
}
