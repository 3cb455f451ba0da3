//! Fault injection for tests (feature `testing`): [`FaultyStore`] decorates any
//! `ObjectStore` and fails a configurable share of calls.
//!
//! - A **determinate** fault fails the call before it reaches the inner store.
//! - An **indeterminate** fault (writes only) lets the call reach the inner store and
//!   then reports a failure anyway, as a timeout after the request was sent would.
//! - A **hook** ([`FaultyStore::arm`]) pauses one chosen put after it landed, runs the
//!   test's code there, and then answers it or replaces the answer with an error.
//!
//! [`DenyWrites`] serves every read and refuses every write, as read-only credentials
//! do, so that a path that must write nothing fails loudly at the write.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// How often calls fail, in parts per thousand; changeable while in use.
#[derive(Debug, Default)]
pub struct Faults {
    /// Share of calls that fail without reaching the inner store.
    pub determinate_permille: AtomicU32,
    /// Share of writes that reach the inner store and then report a failure.
    pub indeterminate_permille: AtomicU32,
    /// How many faults were injected so far.
    pub injected: AtomicU64,
}

impl Faults {
    /// Faults at the given rates.
    pub fn new(determinate_permille: u32, indeterminate_permille: u32) -> Arc<Faults> {
        Arc::new(Faults {
            determinate_permille: AtomicU32::new(determinate_permille),
            indeterminate_permille: AtomicU32::new(indeterminate_permille),
            injected: AtomicU64::new(0),
        })
    }

    /// Stops injecting faults.
    pub fn disable(&self) {
        self.determinate_permille.store(0, Ordering::SeqCst);
        self.indeterminate_permille.store(0, Ordering::SeqCst);
    }

    fn roll(&self, permille: &AtomicU32) -> bool {
        let p = permille.load(Ordering::Relaxed);
        let hit = p > 0 && (uuid::Uuid::new_v4().as_u64_pair().0 % 1000) < u64::from(p);
        if hit {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn determinate(&self) -> bool {
        self.roll(&self.determinate_permille)
    }

    fn indeterminate(&self) -> bool {
        self.roll(&self.indeterminate_permille)
    }
}

fn injected(kind: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "faulty",
        source: format!("injected {kind} fault").into(),
    }
}

/// An `ObjectStore` decorator that injects [`Faults`], and can pause one put of a
/// chosen key after it landed to run a test's hook there ([`FaultyStore::arm`]).
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
    armed: std::sync::Mutex<Option<(KeyMatch, PutHook)>>,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Arc<Faults>) -> Self {
        FaultyStore {
            inner,
            faults,
            armed: std::sync::Mutex::new(None),
        }
    }

    /// Runs `hook` after the next successful put of a key that `key` accepts, before
    /// that put answers. This injects the two races of a stalled writer exactly: a
    /// pause between a write and what the writer does next, and an acknowledgement
    /// lost after the write landed ([`AfterPut`]).
    pub fn arm(&self, key: impl Fn(&Path) -> bool + Send + Sync + 'static, hook: PutHook) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        *armed = Some((Box::new(key), hook));
    }

    /// Whether the armed hook has not run yet.
    pub fn is_armed(&self) -> bool {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    fn take_hook(&self, location: &Path) -> Option<PutHook> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        match armed.as_ref() {
            Some((key, _)) if key(location) => armed.take().map(|(_, hook)| hook),
            _ => None,
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        let res = self.inner.put_opts(location, payload, opts).await;
        if self.faults.indeterminate() {
            return Err(injected("indeterminate"));
        }
        let landed = res?;
        match self.take_hook(location) {
            Some(hook) => match hook().await {
                AfterPut::Answer => Ok(landed),
                AfterPut::Fail => Err(object_store::Error::Generic {
                    store: "faulty",
                    source: "injected: 500 Internal Server Error after the write landed".into(),
                }),
            },
            None => Ok(landed),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if self.faults.determinate() {
            return futures::stream::once(async { Err(injected("determinate")) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.faults.determinate() {
            return futures::stream::once(async { Err(injected("determinate")) }).boxed();
        }
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.faults.determinate() {
            return futures::stream::once(async { Err(injected("determinate")) }).boxed();
        }
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        if self.faults.determinate() {
            return Err(injected("determinate"));
        }
        self.inner.copy_opts(from, to, options).await
    }
}

/// What a [`PutHook`] makes the hooked put answer, after its write reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPut {
    /// The put answers as the inner store did.
    Answer,
    /// The put answers with a server error although its write landed: a lost
    /// acknowledgement.
    Fail,
}

/// Runs once, after a matching put reached the inner store and before it answers: the
/// test's chance to act while the writer is paused there.
pub type PutHook = Box<dyn FnOnce() -> futures::future::BoxFuture<'static, AfterPut> + Send>;

type KeyMatch = Box<dyn Fn(&Path) -> bool + Send + Sync>;

/// A store that serves every read and refuses every write (put, multipart upload,
/// delete, copy) with an error, recording the key of each write it refused.
#[derive(Debug)]
pub struct DenyWrites {
    inner: Arc<dyn ObjectStore>,
    refused: Arc<Mutex<Vec<String>>>,
}

impl DenyWrites {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<DenyWrites> {
        Arc::new(DenyWrites {
            inner,
            refused: Arc::default(),
        })
    }

    /// The keys of every write refused so far, in order.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, what: &str, location: &Path) -> object_store::Error {
        refuse(&self.refused, what, location)
    }
}

fn refuse(refused: &Mutex<Vec<String>>, what: &str, location: &Path) -> object_store::Error {
    refused
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(location.to_string());
    object_store::Error::Generic {
        store: "deny-writes",
        source: format!("{what} {location} refused: this store is read-only").into(),
    }
}

impl fmt::Display for DenyWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DenyWrites({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for DenyWrites {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(self.refuse("put", location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(self.refuse("multipart upload", location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let refused = Arc::clone(&self.refused);
        locations
            .map(move |location| Err(refuse(&refused, "delete", &location?)))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(self.refuse("copy", to))
    }
}
