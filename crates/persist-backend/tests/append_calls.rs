//! Counts the object-store requests of single-row durable appends, with a counting
//! `ObjectStore` decorator that tells requests made on an append's own path (inside
//! its future) from background work (maintenance and lease renewal tasks).
//!
//! - register (memory, S3): each append is exactly one request, the conditional PUT
//!   of the shard's head, and background work adds at most 5%;
//! - file register: the head is a file written under a lock, outside the object
//!   store, so the store sees only parts and maintenance: at most 2 per append;
//! - log (kept for older locations): one create plus one HEAD of the slot's fence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::consensus::ConsensusKind;
use strata_persist_backend::{Location, PersistClient, PersistConfig};

tokio::task_local! {
    /// Set while an append's own future runs: its requests are on its path.
    static ON_PATH: ();
}

fn on_path() -> bool {
    ON_PATH.try_with(|()| ()).is_ok()
}

/// Calls by kind, and the time spent in each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    /// Requests made inside an append's future.
    on_path: u64,
    creates: u64,
    puts: u64,
    gets: u64,
    lists: u64,
    deletes: u64,
    create_time: Duration,
    put_time: Duration,
    other_time: Duration,
}

impl Counts {
    fn calls(&self) -> [u64; 5] {
        [self.creates, self.puts, self.gets, self.lists, self.deletes]
    }
}

#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<Mutex<Counts>>,
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountingStore({})", self.inner)
    }
}

impl CountingStore {
    fn count_deletes(&self) {
        let mut c = self.counts.lock().unwrap();
        c.deletes += 1;
        c.on_path += u64::from(on_path());
    }

    fn count_lists(&self) {
        let mut c = self.counts.lock().unwrap();
        c.lists += 1;
        c.on_path += u64::from(on_path());
    }

    fn count_puts(&self) {
        let mut c = self.counts.lock().unwrap();
        c.puts += 1;
        c.on_path += u64::from(on_path());
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let start = Instant::now();
        let res = self.inner.put_opts(location, payload, opts).await;
        let mut c = self.counts.lock().unwrap();
        c.on_path += u64::from(on_path());
        if create {
            c.creates += 1;
            c.create_time += start.elapsed();
        } else {
            c.puts += 1;
            c.put_time += start.elapsed();
        }
        res
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.count_puts();
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let start = Instant::now();
        let res = self.inner.get_opts(location, options).await;
        let mut c = self.counts.lock().unwrap();
        c.gets += 1;
        c.on_path += u64::from(on_path());
        c.other_time += start.elapsed();
        res
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        {
            let mut c = self.counts.lock().unwrap();
            c.gets += 1;
            c.on_path += u64::from(on_path());
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.count_deletes();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.count_lists();
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.count_lists();
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.count_lists();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.count_puts();
        self.inner.copy_opts(from, to, options).await
    }
}

fn counted(
    inner: Arc<dyn ObjectStore>,
    url: &str,
    kind: ConsensusKind,
    cfg: PersistConfig,
) -> (PersistClient, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
        inner,
        counts: Arc::clone(&counts),
    });
    let loc = Location::from_store(store, "", url).with_consensus(kind);
    (PersistClient::from_location(loc, cfg), counts)
}

/// `n` single-row appends by one writer; asserts each makes exactly `per_append`
/// requests on its own path (when given), and returns the counts once background
/// work has settled.
async fn append_n(
    client: &PersistClient,
    counts: &Mutex<Counts>,
    n: u64,
    per_append: Option<u64>,
) -> Counts {
    let mut w = client
        .open_writer::<Timestamp>(new_shard(), test_desc())
        .await
        .unwrap();
    *counts.lock().unwrap() = Counts::default();
    for t in 0..n {
        let up = vec![(Ok(test_row(t as i64)), Timestamp::new(t), 1)];
        let (lo, hi) = (
            Antichain::from_elem(Timestamp::new(t)),
            Antichain::from_elem(Timestamp::new(t + 1)),
        );
        let before = counts.lock().unwrap().on_path;
        ON_PATH
            .scope((), w.compare_and_append(&up, lo, hi))
            .await
            .unwrap()
            .unwrap();
        if let Some(expected) = per_append {
            let made = counts.lock().unwrap().on_path - before;
            assert_eq!(made, expected, "requests on the path of append {t}");
        }
    }
    // Background work started by the appends (compaction, GC) runs to its end.
    client.maintenance_idle(w.shard_id()).await;
    counts.lock().unwrap().clone()
}

fn total(c: &Counts) -> u64 {
    c.calls().iter().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_append_on_the_memory_register() {
    let n = 1000;
    let (client, counts) = counted(
        Arc::new(object_store::memory::InMemory::new()),
        "mem://counted",
        ConsensusKind::Register,
        PersistConfig::default(),
    );
    let c = append_n(&client, &counts, n, Some(1)).await;
    let per = total(&c) as f64 / n as f64;
    println!("memory register, {n} appends: {per:.3} requests per append in all; {c:?}");
    assert!(per <= 1.05, "{per} requests per append: {c:?}");
}

/// The same on a real S3 server (moto, started by `cargo xtask test`); without
/// `STRATA_S3_TEST_BUCKET` there is no server and the test returns early.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_append_on_s3() {
    let Some(bucket) = std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("requests_per_append_on_s3: STRATA_S3_TEST_BUCKET is unset");
        return;
    };
    let url = format!("s3://{bucket}/calls-{}", uuid::Uuid::new_v4().simple());
    let opened = Location::open(&url).await.unwrap();
    assert_eq!(opened.consensus, ConsensusKind::Register);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
        inner: opened.store,
        counts: Arc::clone(&counts),
    });
    let loc = Location::from_store(store, opened.prefix.as_ref(), &url)
        .with_consensus(ConsensusKind::Register);
    let client = PersistClient::from_location(loc, PersistConfig::default());
    let n = 1000;
    let c = append_n(&client, &counts, n, Some(1)).await;
    let per = total(&c) as f64 / n as f64;
    println!("s3 register (moto), {n} appends: {per:.3} requests per append in all; {c:?}");
    assert!(per <= 1.05, "{per} requests per append: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_append_on_file() {
    let n = 1000;
    let dir = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .unwrap()
        .with_fsync(true);
    let kind = ConsensusKind::FileRegister {
        root: dir.path().to_owned(),
    };
    let url = format!("file://{}", dir.path().display());
    let (client, counts) = counted(Arc::new(fs), &url, kind, PersistConfig::default());
    let c = append_n(&client, &counts, n, None).await;
    let per = total(&c) as f64 / n as f64;
    let path = c.on_path as f64 / n as f64;
    println!(
        "file register, {n} appends: {path:.3} object-store requests per append on its path \
         (plus one locked head-file commit each), {per:.3} in all; {c:?}"
    );
    assert!(per <= 2.0, "{per} requests per append: {c:?}");
}

#[tokio::test]
async fn a_lone_cached_writer_on_the_log_appends_with_one_create() {
    let (client, counts) = counted(
        Arc::new(object_store::memory::InMemory::new()),
        "mem://counted",
        ConsensusKind::Log,
        PersistConfig::for_tests(),
    );
    let c = append_n(&client, &counts, 20, Some(2)).await;
    // [creates, puts, gets (fence HEADs), lists, deletes]
    assert_eq!(c.calls(), [20, 0, 20, 0, 0], "{c:?}");
}
