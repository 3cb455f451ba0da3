//! Counts the object-store calls of a single-row durable append, with a counting
//! `ObjectStore` decorator: a lone writer whose state is cached commits with exactly one
//! conditional create plus one HEAD of its slot's truncation fence (see `consensus`),
//! and no LIST and no state read.
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
use strata_persist_backend::{Location, PersistClient, PersistConfig};

/// Calls by kind, and the time spent in each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
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
        self.counts.lock().unwrap().puts += 1;
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
        c.other_time += start.elapsed();
        res
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.counts.lock().unwrap().gets += 1;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.counts.lock().unwrap().deletes += 1;
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.lock().unwrap().lists += 1;
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.counts.lock().unwrap().lists += 1;
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.counts.lock().unwrap().lists += 1;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.counts.lock().unwrap().puts += 1;
        self.inner.copy_opts(from, to, options).await
    }
}

fn counted(inner: Arc<dyn ObjectStore>, cfg: PersistConfig) -> (PersistClient, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
        inner,
        counts: Arc::clone(&counts),
    });
    (
        PersistClient::from_location(Location::from_store(store, "", "mem://counted"), cfg),
        counts,
    )
}

async fn append_n(client: &PersistClient, counts: &Mutex<Counts>, n: u64) -> Counts {
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
        w.compare_and_append(&up, lo, hi).await.unwrap().unwrap();
    }
    counts.lock().unwrap().clone()
}

#[tokio::test]
async fn a_lone_cached_writer_appends_with_one_create() {
    let (client, counts) = counted(
        Arc::new(object_store::memory::InMemory::new()),
        PersistConfig::for_tests(),
    );
    let c = append_n(&client, &counts, 20).await;
    // [creates, puts, gets (fence HEADs), lists, deletes]
    assert_eq!(c.calls(), [20, 0, 20, 0, 0], "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_per_append_on_file_with_maintenance() {
    let dir = tempfile::tempdir().unwrap();
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .unwrap()
        .with_fsync(true);
    let (client, counts) = counted(Arc::new(fs), PersistConfig::default());
    let n = 200;
    let c = append_n(&client, &counts, n).await;
    println!("per {n} appends: {c:?}");
    // Before inline batches merged on append and fences replaced the boundary LIST:
    // about 331 creates and 311 lists per 200 appends (compaction every few appends).
    assert!(c.creates >= n && c.creates <= n + n / 8, "{c:?}");
    assert!(c.lists <= n / 8, "{c:?}");
}
