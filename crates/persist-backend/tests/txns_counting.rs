//! Counts the object-store writes the txns shard makes, with a counting `ObjectStore`
//! decorator: a commit of N tables is one consensus write (one conditional put of the
//! head) on the txns shard and none on the data shards; advancing N idle
//! shards is one consensus write too, and data shards are written only when read.

#![cfg(test)]

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use strata_controller_api::{Antichain, Datum, Row, ShardId, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{Location, PersistClient, PersistConfig};

/// Consensus writes (conditional creates under `shards/{id}/state/` for a log, puts
/// of `shards/{id}/head` for a register), per shard id, and other puts by top-level
/// folder.
#[derive(Debug, Default)]
struct Counts {
    state_creates: BTreeMap<String, u64>,
    other_puts: BTreeMap<String, u64>,
    /// Reads of anything under `shards/{id}/`, per shard id.
    shard_reads: BTreeMap<String, u64>,
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
        let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_owned()).collect();
        {
            let mut c = self.counts.lock().unwrap();
            match (
                parts.first().map(String::as_str),
                parts.get(2).map(String::as_str),
                &opts.mode,
            ) {
                // A log's new version, or a register's new head.
                (Some("shards"), Some("state"), PutMode::Create)
                | (Some("shards"), Some("head"), _) => {
                    *c.state_creates.entry(parts[1].clone()).or_default() += 1
                }
                _ => {
                    *c.other_puts
                        .entry(parts.first().cloned().unwrap_or_default())
                        .or_default() += 1
                }
            }
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let parts: Vec<String> = location.parts().map(|p| p.as_ref().to_owned()).collect();
        if parts.first().map(String::as_str) == Some("shards")
            && let Some(shard) = parts.get(1)
        {
            let mut c = self.counts.lock().unwrap();
            *c.shard_reads.entry(shard.clone()).or_default() += 1;
        }
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
        self.inner.delete_stream(locations)
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
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn counted_client() -> (PersistClient, Arc<Mutex<Counts>>) {
    counted_client_with(PersistConfig::for_tests())
}

fn counted_client_with(cfg: PersistConfig) -> (PersistClient, Arc<Mutex<Counts>>) {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
        inner: Arc::new(InMemory::new()),
        counts: Arc::clone(&counts),
    });
    let client =
        PersistClient::from_location(Location::from_store(store, "", "mem://counted"), cfg);
    (client, counts)
}

/// Commits one row to each of `data` at `ts`, leaving the commit to be applied later.
async fn commit_a_row_to_each(h: &mut TxnsHandle<Timestamp>, data: &[ShardId], ts: u64) {
    let mut txn = Txn::new();
    for (i, d) in data.iter().enumerate() {
        txn.write(*d, [(Ok(test_row(i as i64)), 1)]);
    }
    let _applied_below = txn.commit_at(h, Timestamp::new(ts)).await.unwrap().unwrap();
}

fn take(counts: &Mutex<Counts>) -> Counts {
    std::mem::take(&mut *counts.lock().unwrap())
}

fn creates(c: &Counts, shard: ShardId) -> u64 {
    c.state_creates
        .get(&shard.to_string())
        .copied()
        .unwrap_or(0)
}

/// A txns shard with `n` data shards registered at 0, and its handle.
async fn registered(
    client: &PersistClient,
    n: usize,
) -> (ShardId, Vec<ShardId>, TxnsHandle<Timestamp>) {
    let txns = new_shard();
    let data: Vec<ShardId> = (0..n).map(|_| new_shard()).collect();
    let mut h = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    h.register(Timestamp::new(0), data.iter().map(|d| (*d, test_desc())))
        .await
        .unwrap()
        .unwrap();
    (txns, data, h)
}

#[tokio::test]
async fn a_commit_of_n_tables_is_one_consensus_write() {
    let (client, counts) = counted_client();
    let (txns, data, mut h) = registered(&client, 16).await;
    for round in 1..=5u64 {
        take(&counts);
        let mut txn = Txn::new();
        for (i, d) in data.iter().enumerate() {
            txn.write(*d, [(Ok(test_row(i as i64)), 1)]);
        }
        // One large batch goes to blob as a part; the others are inlined.
        let big: Vec<_> = (0..200)
            .map(|k| {
                (
                    Ok(Row::pack(&[Datum::Int64(k), Datum::String("x".repeat(40))])),
                    1,
                )
            })
            .collect();
        txn.write(data[0], big);
        let _left_for_apply_le = txn
            .commit_at(&mut h, Timestamp::new(round))
            .await
            .unwrap()
            .unwrap();
        let c = take(&counts);
        assert_eq!(
            creates(&c, txns),
            1,
            "round {round}: one consensus write on the txns shard: {c:?}"
        );
        assert_eq!(
            c.state_creates.len(),
            1,
            "round {round}: no data shard consensus write: {c:?}"
        );
        assert_eq!(
            c.other_puts.get("txns").copied(),
            Some(1),
            "one part for the large batch: {c:?}"
        );
        assert_eq!(
            c.other_puts.get("shards").copied().unwrap_or(0),
            0,
            "no other object: {c:?}"
        );
    }
    h.apply_le(Timestamp::new(5)).await.unwrap();
    let c = take(&counts);
    for d in &data {
        assert_eq!(
            creates(&c, *d),
            2,
            "the first apply registers a writer of {d} and links all 5 commits with one \
             more write: {c:?}"
        );
    }
    assert_eq!(creates(&c, txns), 0, "apply does not write the txns shard");
    commit_a_row_to_each(&mut h, &data, 6).await;
    take(&counts);
    h.apply_le(Timestamp::new(6)).await.unwrap();
    let c = take(&counts);
    for d in &data {
        assert_eq!(
            creates(&c, *d),
            1,
            "a later apply links with one write (the writer is kept): {c:?}"
        );
    }
}

#[tokio::test]
async fn advancing_n_idle_shards_is_one_consensus_write() {
    let (client, counts) = counted_client();
    let (txns, data, mut h) = registered(&client, 64).await;
    take(&counts);
    for t in 1..=20u64 {
        assert_eq!(
            h.advance_to(Timestamp::new(t * 5)).await.unwrap(),
            Antichain::from_elem(Timestamp::new(t * 5))
        );
    }
    let c = take(&counts);
    assert_eq!(
        creates(&c, txns),
        20 + 1,
        "one consensus write per advancement, and one more as the handle's reader since \
         follows the upper (every 16 moves): {c:?}"
    );
    assert_eq!(
        c.state_creates.len(),
        1,
        "64 idle data shards were not written: {c:?}"
    );
    assert_eq!(
        h.read_at(data[7], Timestamp::new(99)).await.unwrap(),
        vec![]
    );
    let c = take(&counts);
    assert!(
        creates(&c, data[7]) >= 1,
        "the read moved the upper of the shard it read: {c:?}"
    );
    assert_eq!(c.state_creates.len(), 1, "and wrote no other shard: {c:?}");
}

/// Registered data shards that sit idle cost no store request, however long: the txns
/// handle's writers of data shards renew no lease. Time is paused, so advancing it by
/// 40 leases fires every lease timer there is, deterministically; with a renewing
/// writer per data shard this counted 64 x 160 heartbeats. A writer whose lease lapsed
/// registers again when its shard is next written (a link) or moved (a read).
#[tokio::test(start_paused = true)]
async fn idle_data_shards_cost_no_store_requests() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let lease = std::time::Duration::from_millis(100);
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let now = {
        let clock = Arc::clone(&clock);
        Arc::new(move || clock.load(Ordering::SeqCst))
    };
    let (client, counts) = counted_client_with(PersistConfig {
        heartbeat_in_background: true,
        writer_lease: lease,
        reader_lease: lease,
        now,
        ..PersistConfig::for_tests()
    });
    let (txns, data, mut h) = registered(&client, 64).await;
    commit_a_row_to_each(&mut h, &data, 1).await;
    h.apply_le(Timestamp::new(1)).await.unwrap();
    take(&counts);
    // Virtual time: the runtime jumps from timer to timer, running every task each
    // wakes, until 40 leases have passed.
    tokio::time::sleep(lease * 40).await;
    let c = take(&counts);
    let written: Vec<&String> = c
        .state_creates
        .keys()
        .filter(|k| **k != txns.to_string())
        .collect();
    assert!(
        written.is_empty(),
        "idle data shards were written: {} of them, {c:?}",
        written.len()
    );
    // The writers' leases lapse (by the lease clock), then a commit is applied to one
    // shard and another is read past its upper: both register their writer again.
    clock.fetch_add(40 * lease.as_millis() as u64, Ordering::SeqCst);
    let mut txn = Txn::new();
    txn.write(data[3], [(Ok(test_row(100)), 1)]);
    let _applied_below = txn
        .commit_at(&mut h, Timestamp::new(5))
        .await
        .unwrap()
        .unwrap();
    h.apply_le(Timestamp::new(5)).await.unwrap();
    let mut rows = h.read_at(data[3], Timestamp::new(5)).await.unwrap();
    rows.sort_by_key(|(_, t, _)| *t);
    assert_eq!(rows.len(), 2, "both commits of data[3]: {rows:?}");
    h.advance_to(Timestamp::new(9)).await.unwrap();
    assert_eq!(
        h.read_at(data[9], Timestamp::new(8)).await.unwrap().len(),
        1,
        "data[9]'s one row, read after its writer's lease lapsed"
    );
}

#[tokio::test]
async fn registering_registered_shards_again_touches_no_data_shard() {
    let (client, counts) = counted_client();
    let (txns, data, h) = registered(&client, 16).await;
    // A restart: a new handle registers the same shards with the same schema.
    drop(h);
    let mut h = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    take(&counts);
    h.register(Timestamp::new(1), data.iter().map(|d| (*d, test_desc())))
        .await
        .unwrap()
        .unwrap();
    let c = take(&counts);
    for d in &data {
        assert_eq!(
            c.shard_reads.get(&d.to_string()),
            None,
            "{d} was read: {c:?}"
        );
        assert_eq!(creates(&c, *d), 0, "{d} was written: {c:?}");
    }
    assert_eq!(creates(&c, txns), 0, "{c:?}");
}

#[tokio::test]
async fn reopening_a_registered_critical_reader_reads_the_head_once() {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let store: Arc<dyn ObjectStore> = Arc::new(CountingStore {
        inner: Arc::new(InMemory::new()),
        counts: Arc::clone(&counts),
    });
    let client = || {
        PersistClient::from_location(
            Location::from_store(Arc::clone(&store), "", "mem://counted"),
            PersistConfig::for_tests(),
        )
    };
    let shard = new_shard();
    let first = client()
        .open_critical_since::<Timestamp>(shard, "controller")
        .await
        .unwrap();
    drop(first);
    // A restart: a new process (no cached state) opens the same reader.
    take(&counts);
    let again = client()
        .open_critical_since::<Timestamp>(shard, "controller")
        .await
        .unwrap();
    assert_eq!(again.since(), &Antichain::from_elem(Timestamp::new(0)));
    let c = take(&counts);
    assert_eq!(c.shard_reads.get(&shard.to_string()), Some(&1), "{c:?}");
    assert_eq!(creates(&c, shard), 0, "{c:?}");
}
