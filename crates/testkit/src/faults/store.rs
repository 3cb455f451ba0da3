//! [`FaultyObjectStore`]: a decorator that implements the whole `ObjectStore` trait over
//! any inner store and injects the faults its [`FaultHandle`] asks for.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::ready;
use futures::stream::{self, BoxStream};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};

use super::config::{FaultConfig, OpClass};
use super::error::InjectedFault;
use super::handle::FaultHandle;
use super::plan::{Plan, Verdict};

/// Wraps any [`ObjectStore`] and injects seeded faults: determinate errors per
/// operation class, added latency, indeterminate mutations (applied by the inner store,
/// then reported as failed) and unavailability windows.
///
/// Every injected error is `object_store::Error::Generic { store: "faulty", source }`
/// whose `source` is an [`InjectedFault`]; [`InjectedFault::of`] finds it. Errors of
/// the inner store pass through unchanged.
///
/// # Determinism
///
/// Each call takes one value from a SplitMix64 generator seeded by `seed`, whatever
/// the config. Calls made one after another therefore see the same faults for the same
/// seed and config; concurrent calls draw in whatever order they reach the store.
///
/// # Contract
///
/// - With the default [`FaultConfig`] the store is transparent: every result is the
///   inner store's.
/// - A determinate or unavailability fault never reaches the inner store.
/// - An indeterminate fault is reported only after the inner call succeeded.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
/// use strata_testkit::faults::{FaultyObjectStore, InjectedFault, OpClass};
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let store = FaultyObjectStore::new(Arc::new(InMemory::new()), 7);
/// let faults = store.handle();
/// let path = Path::from("a/b");
///
/// // An indeterminate put: the object lands, but the caller sees an error.
/// faults.set_indeterminate_rate(1.0);
/// let err = store.put(&path, "x".into()).await.unwrap_err();
/// assert!(!InjectedFault::of(&err).unwrap().is_determinate());
/// faults.set_indeterminate_rate(0.0);
/// assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), "x");
///
/// // Every read fails, writes are untouched.
/// faults.set_error_rate(OpClass::Read, 1.0);
/// assert!(store.head(&path).await.is_err());
/// assert!(store.put(&path, "y".into()).await.is_ok());
///
/// // Down until lifted.
/// faults.clear_faults();
/// faults.set_unavailable(true);
/// assert!(store.put(&path, "z".into()).await.is_err());
/// faults.make_available();
/// assert!(store.head(&path).await.is_ok());
///
/// let counters = faults.counters();
/// assert_eq!(counters.indeterminate.write, 1);
/// assert_eq!(counters.determinate.read, 1);
/// assert_eq!(counters.unavailable.write, 1);
/// # });
/// ```
pub struct FaultyObjectStore {
    inner: Arc<dyn ObjectStore>,
    handle: FaultHandle,
}

impl FaultyObjectStore {
    /// Wraps `inner` with the transparent default config; change it with
    /// [`FaultyObjectStore::handle`].
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64) -> Self {
        Self::with_config(inner, seed, FaultConfig::default())
    }

    /// Wraps `inner` with `config`.
    pub fn with_config(inner: Arc<dyn ObjectStore>, seed: u64, config: FaultConfig) -> Self {
        FaultyObjectStore {
            inner,
            handle: FaultHandle::new(seed, config),
        }
    }

    /// A handle to change the knobs and read the counters while the store is in use.
    pub fn handle(&self) -> FaultHandle {
        self.handle.clone()
    }

    /// The wrapped store, to look behind the faults (for example, to check that an
    /// indeterminate write landed).
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }
}

impl fmt::Debug for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyObjectStore")
            .field("inner", &self.inner)
            .field("handle", &self.handle)
            .finish()
    }
}

impl fmt::Display for FaultyObjectStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyObjectStore({})", self.inner)
    }
}

/// What the caller of one operation is told about it.
#[derive(Clone, Copy)]
struct Op<'a> {
    class: OpClass,
    name: &'static str,
    location: Option<&'a Path>,
    mutation: bool,
}

impl<'a> Op<'a> {
    fn read(name: &'static str, location: &'a Path) -> Self {
        Op {
            class: OpClass::Read,
            name,
            location: Some(location),
            mutation: false,
        }
    }

    fn write(name: &'static str, location: &'a Path, mutation: bool) -> Self {
        Op {
            class: OpClass::Write,
            name,
            location: Some(location),
            mutation,
        }
    }

    fn list(name: &'static str, prefix: Option<&'a Path>) -> Self {
        Op {
            class: OpClass::List,
            name,
            location: prefix,
            mutation: false,
        }
    }

    fn fault(&self, verdict: Verdict) -> Option<InjectedFault> {
        let op = self.name;
        let location = InjectedFault::location_text(self.location);
        match verdict {
            Verdict::Unavailable => Some(InjectedFault::Unavailable { op, location }),
            Verdict::Determinate => Some(InjectedFault::Determinate { op, location }),
            Verdict::Pass {
                indeterminate: true,
            } => Some(InjectedFault::Indeterminate { op, location }),
            Verdict::Pass {
                indeterminate: false,
            } => None,
        }
    }
}

async fn sleep_for(plan: &Plan) {
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
}

/// Runs one call through the fault plan: delay, then refuse, or forward and maybe
/// report an applied mutation as failed.
async fn guarded<R, Fut>(handle: &FaultHandle, op: Op<'_>, call: impl FnOnce() -> Fut) -> Result<R>
where
    Fut: Future<Output = Result<R>>,
{
    let plan = handle.begin(op.class, op.mutation);
    sleep_for(&plan).await;
    match (plan.verdict, op.fault(plan.verdict)) {
        (_, None) => call().await,
        (Verdict::Pass { .. }, Some(fault)) => {
            call().await?;
            handle.count_indeterminate(op.class);
            Err(fault.into())
        }
        (_, Some(fault)) => Err(fault.into()),
    }
}

/// The streaming form of [`guarded`] for listings: the decision is made when the
/// listing is requested, the delay and any error come first in the stream.
fn guarded_stream<T: Send + 'static>(
    handle: &FaultHandle,
    op: Op<'_>,
    inner: impl FnOnce() -> BoxStream<'static, Result<T>>,
) -> BoxStream<'static, Result<T>> {
    let plan = handle.begin(op.class, op.mutation);
    match op.fault(plan.verdict) {
        Some(fault) => stream::once(async move {
            sleep_for(&plan).await;
            Err(fault.into())
        })
        .boxed(),
        None if plan.delay.is_zero() => inner(),
        None => stream::once(async move { sleep_for(&plan).await })
            .filter_map(|()| ready(None))
            .chain(inner())
            .boxed(),
    }
}

#[async_trait]
impl ObjectStore for FaultyObjectStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let op = Op::write("put", location, true);
        guarded(&self.handle, op, || {
            self.inner.put_opts(location, payload, opts)
        })
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let op = Op::write("put_multipart", location, false);
        let upload = guarded(&self.handle, op, || {
            self.inner.put_multipart_opts(location, opts)
        })
        .await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            handle: self.handle.clone(),
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let name = if options.head { "head" } else { "get" };
        let op = Op::read(name, location);
        guarded(&self.handle, op, || self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let op = Op::read("get_ranges", location);
        guarded(&self.handle, op, || self.inner.get_ranges(location, ranges)).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let handle = self.handle.clone();
        // One location at a time, so each delete draws its faults in input order.
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let handle = handle.clone();
                async move {
                    let location = location?;
                    let op = Op {
                        class: OpClass::Delete,
                        name: "delete",
                        location: Some(&location),
                        mutation: true,
                    };
                    guarded(&handle, op, || inner.delete(&location)).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        guarded_stream(&self.handle, Op::list("list", prefix), || {
            self.inner.list(prefix)
        })
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        guarded_stream(&self.handle, Op::list("list_with_offset", prefix), || {
            self.inner.list_with_offset(prefix, offset)
        })
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let op = Op::list("list_with_delimiter", prefix);
        guarded(&self.handle, op, || self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let op = Op::write("copy", to, true);
        guarded(&self.handle, op, || self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let op = Op::write("rename", to, true);
        guarded(&self.handle, op, || {
            self.inner.rename_opts(from, to, options)
        })
        .await
    }
}

/// A multipart upload whose parts, completion and abort go through the fault plan of
/// the store that started it.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    handle: FaultHandle,
    location: Path,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let op = Op::write("put_part", &self.location, false);
        let plan = self.handle.begin(op.class, op.mutation);
        match op.fault(plan.verdict) {
            // A refused part is never sent.
            Some(fault) => Box::pin(async move {
                sleep_for(&plan).await;
                Err(fault.into())
            }),
            None => {
                let part = self.inner.put_part(data);
                Box::pin(async move {
                    sleep_for(&plan).await;
                    part.await
                })
            }
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let FaultyUpload {
            inner,
            handle,
            location,
        } = self;
        let op = Op::write("complete_multipart", location, true);
        guarded(handle, op, || inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        let FaultyUpload {
            inner,
            handle,
            location,
        } = self;
        let op = Op::write("abort_multipart", location, false);
        guarded(handle, op, || inner.abort()).await
    }
}
