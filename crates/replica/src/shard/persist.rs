//! [`PersistShards`]: the shard seam over `strata-persist-backend` (feature `persist`).
//!
//! Persist is async and handle-based; the seam is synchronous and keyed by shard. The
//! adapter owns a small tokio runtime and blocks on it, and caches one write handle and
//! one leased read handle per shard, opened with the schema registered through
//! [`ShardWriter::register_schema`].
//!
//! - `listen_from(lower)` is a fresh listen at `lower - 1` (a snapshot at `0` plus a
//!   listen at `0` when `lower` is `0`) read up to the upper seen first, so the seam's
//!   "every update in `[lower, upper)`" holds without keeping listen state per caller;
//! - `downgrade_since` downgrades the leased reader this replica holds on the shard;
//! - `release` expires the reader and writer held on a shard, so a dropped collection's
//!   shard is not held back and can be finalized.
//!
//! On [`Drop`] every handle is expired before the runtime shuts down, waiting at most
//! [`EXPIRE_TIMEOUT`]. Dropped inside a tokio runtime (where blocking is forbidden) the
//! expiry is handed to the adapter's own runtime thread and finishes in the background;
//! if the runtime stops first, the handles' leases simply run out on their own.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Mutex;
use std::time::Duration;

use strata_controller_api::{Antichain, Certainty, RelationDesc, Row, ShardId, Timestamp};
use strata_persist_backend::{ListenEvent, PersistClient, PersistError, ReadHandle, WriteHandle};
use timely::PartialOrder;

use super::{ShardError, ShardReader, ShardSince, ShardWriter, Update, UpperMismatch};

/// How long [`Drop`] and [`ShardSince::release`] wait for handles to expire.
pub const EXPIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Expires every handle, each attempt bounded by [`EXPIRE_TIMEOUT`]; failures are
/// ignored (the lease then runs out on its own).
async fn expire_all(writers: Vec<WriteHandle<Timestamp>>, readers: Vec<ReadHandle<Timestamp>>) {
    for writer in writers {
        let _ = tokio::time::timeout(EXPIRE_TIMEOUT, writer.expire()).await;
    }
    for reader in readers {
        let _ = tokio::time::timeout(EXPIRE_TIMEOUT, reader.expire()).await;
    }
}

/// Shards of one persist location.
#[derive(Debug)]
pub struct PersistShards {
    /// `Some` until [`Drop`], which shuts it down without blocking (the last handle may
    /// be dropped inside another runtime's task).
    runtime: Option<tokio::runtime::Runtime>,
    client: PersistClient,
    schemas: Mutex<BTreeMap<ShardId, RelationDesc>>,
    writers: Mutex<BTreeMap<ShardId, WriteHandle<Timestamp>>>,
    readers: Mutex<BTreeMap<ShardId, ReadHandle<Timestamp>>>,
}

fn unavailable(shard: ShardId, e: &PersistError) -> ShardError {
    ShardError::Unavailable {
        shard,
        reason: e.to_string(),
        certainty: e.certainty(),
    }
}

fn poisoned(shard: ShardId) -> ShardError {
    ShardError::Unavailable {
        shard,
        reason: "adapter lock poisoned".into(),
        certainty: Certainty::Determinate,
    }
}

fn decode(
    shard: ShardId,
    updates: Vec<strata_persist_backend::Update<Timestamp>>,
) -> Result<Vec<Update>, ShardError> {
    updates
        .into_iter()
        .map(|(data, time, diff)| match data {
            Ok(row) => Ok((row, time, diff)),
            Err(error) => Err(ShardError::InvalidUsage {
                shard,
                reason: format!("shard holds an error row: {error}"),
            }),
        })
        .collect()
}

impl PersistShards {
    /// Opens the persist location `url` (`mem://…` or `file:///…`).
    pub fn open(url: &str) -> Result<PersistShards, ShardError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| ShardError::Unavailable {
                shard: ShardId::from_bytes([0; 16]),
                reason: format!("cannot start a runtime: {e}"),
                certainty: Certainty::Determinate,
            })?;
        let client = runtime
            .block_on(PersistClient::open(url))
            .map_err(|e| unavailable(ShardId::from_bytes([0; 16]), &e))?;
        Ok(PersistShards {
            runtime: Some(runtime),
            client,
            schemas: Mutex::default(),
            writers: Mutex::default(),
            readers: Mutex::default(),
        })
    }

    /// The persist client, for callers that want the full API.
    pub fn client(&self) -> &PersistClient {
        &self.client
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        #[allow(clippy::expect_used)]
        // Invariant: the runtime is taken only in `Drop`.
        self.runtime.as_ref().expect("runtime present until drop")
    }

    /// Runs `f` on the runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime().block_on(f)
    }

    fn schema(&self, shard: ShardId) -> Result<RelationDesc, ShardError> {
        self.schemas
            .lock()
            .map_err(|_| poisoned(shard))?
            .get(&shard)
            .cloned()
            .ok_or_else(|| ShardError::InvalidUsage {
                shard,
                reason: "no schema registered for the shard".into(),
            })
    }

    fn with_writer<R>(
        &self,
        shard: ShardId,
        f: impl AsyncFnOnce(&mut WriteHandle<Timestamp>) -> Result<R, PersistError>,
    ) -> Result<R, ShardError> {
        let mut writers = self.writers.lock().map_err(|_| poisoned(shard))?;
        let handle = match writers.entry(shard) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let desc = self.schema(shard)?;
                let opened = self.block_on(self.client.open_writer(shard, desc));
                entry.insert(opened.map_err(|e| unavailable(shard, &e))?)
            }
        };
        let result = self.block_on(f(handle));
        if result.is_err() {
            // A handle in an unknown state is reopened next time.
            writers.remove(&shard);
        }
        result.map_err(|e| unavailable(shard, &e))
    }

    fn with_reader<R>(
        &self,
        shard: ShardId,
        f: impl AsyncFnOnce(&mut ReadHandle<Timestamp>) -> Result<R, PersistError>,
    ) -> Result<R, ShardError> {
        let mut readers = self.readers.lock().map_err(|_| poisoned(shard))?;
        let handle = match readers.entry(shard) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let desc = self.schema(shard)?;
                let opened = self.block_on(self.client.open_leased_reader(shard, desc));
                entry.insert(opened.map_err(|e| unavailable(shard, &e))?)
            }
        };
        match self.block_on(f(handle)) {
            Ok(r) => Ok(r),
            Err(PersistError::ReadBeforeSince { .. }) => Err(ShardError::ReadBeforeSince {
                shard,
                as_of: Timestamp::new(0),
                since: handle.since().clone(),
            }),
            Err(e) => {
                readers.remove(&shard);
                Err(unavailable(shard, &e))
            }
        }
    }
}

impl PersistShards {
    /// Waits (up to [`EXPIRE_TIMEOUT`]) for the background maintenance of every shard
    /// this adapter writes, then expires every handle.
    async fn finish(
        client: PersistClient,
        writers: Vec<WriteHandle<Timestamp>>,
        readers: Vec<ReadHandle<Timestamp>>,
    ) {
        if tokio::time::timeout(EXPIRE_TIMEOUT, client.all_maintenance_idle())
            .await
            .is_err()
        {
            tracing::warn!(
                "background maintenance still runs after {EXPIRE_TIMEOUT:?}; leaving it"
            );
        }
        expire_all(writers, readers).await;
    }
}

fn take_all<V>(map: &Mutex<BTreeMap<ShardId, V>>) -> Vec<V> {
    match map.lock() {
        Ok(mut map) => std::mem::take(&mut *map).into_values().collect(),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner())
            .into_values()
            .collect(),
    }
}

impl Drop for PersistShards {
    fn drop(&mut self) {
        let writers = take_all(&self.writers);
        let readers = take_all(&self.readers);
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            expire_then_shut_down(runtime, writers, readers);
            return;
        }
        // Blocking is forbidden here: a thread of the adapter's own takes the runtime
        // and expires the handles in the background (if it cannot, the leases run out).
        let (tx, rx) = std::sync::mpsc::channel::<tokio::runtime::Runtime>();
        let spawned = std::thread::Builder::new()
            .name("persist-shards-drop".into())
            .spawn(move || {
                if let Ok(runtime) = rx.recv() {
                    expire_then_shut_down(runtime, writers, readers);
                }
            });
        match spawned {
            Ok(_) => {
                if let Err(std::sync::mpsc::SendError(runtime)) = tx.send(runtime) {
                    runtime.shutdown_background();
                }
            }
            Err(_) => runtime.shutdown_background(),
        }
    }
}

fn expire_then_shut_down(
    runtime: tokio::runtime::Runtime,
    writers: Vec<WriteHandle<Timestamp>>,
    readers: Vec<ReadHandle<Timestamp>>,
) {
    runtime.block_on(expire_all(writers, readers));
    runtime.shutdown_timeout(EXPIRE_TIMEOUT);
}

impl ShardWriter for PersistShards {
    #[tracing::instrument(level = "debug", name = "persist.close", skip_all)]
    fn close(&self) {
        let (writers, readers) = (take_all(&self.writers), take_all(&self.readers));
        let finish = Self::finish(self.client.clone(), writers, readers);
        if tokio::runtime::Handle::try_current().is_err() {
            self.block_on(finish);
            return;
        }
        // Inside another runtime, blocking on ours must happen on a thread of its own;
        // waiting for that thread is bounded by the timeouts in `finish`.
        std::thread::scope(|scope| {
            let _ = scope.spawn(|| self.block_on(finish)).join();
        });
    }

    fn register_schema(&self, shard: ShardId, desc: &RelationDesc) {
        if let Ok(mut schemas) = self.schemas.lock() {
            schemas.insert(shard, desc.clone());
        }
    }

    #[tracing::instrument(level = "trace", name = "persist.upper", skip_all, fields(shard = %shard))]
    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError> {
        self.block_on(self.client.fetch_recent_upper(shard))
            .map_err(|e| unavailable(shard, &e))
    }

    #[tracing::instrument(
        level = "debug",
        name = "persist.compare_and_append",
        skip_all,
        fields(
            shard = %shard,
            updates = updates.len(),
            expected = crate::shard::frontier_time(expected_upper).map(tracing::field::display),
            new = crate::shard::frontier_time(new_upper).map(tracing::field::display),
        )
    )]
    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError> {
        let coded: Vec<_> = updates
            .iter()
            .map(|(row, t, d)| (Ok::<Row, String>(row.clone()), *t, *d))
            .collect();
        let (expected, new) = (expected_upper.clone(), new_upper.clone());
        let result = self
            .with_writer(shard, async move |w| {
                w.compare_and_append(&coded, expected, new).await
            })
            .inspect_err(|error| tracing::debug!(%error, "compare_and_append failed"))?;
        match &result {
            Ok(()) => tracing::debug!("appended"),
            Err(m) => tracing::debug!(current = ?m.current, "upper mismatch: nothing appended"),
        }
        Ok(result)
    }
}

impl ShardReader for PersistShards {
    #[tracing::instrument(level = "debug", name = "persist.snapshot", skip_all, fields(shard = %shard, as_of = %as_of))]
    fn snapshot(
        &self,
        shard: ShardId,
        as_of: Timestamp,
    ) -> Result<Option<Vec<Update>>, ShardError> {
        if self.upper(shard)?.less_equal(&as_of) {
            return Ok(None);
        }
        let updates = self.with_reader(shard, async move |r| r.snapshot(&as_of).await)?;
        decode(shard, updates).map(Some)
    }

    #[tracing::instrument(level = "trace", name = "persist.listen_from", skip_all, fields(shard = %shard, lower = %lower))]
    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError> {
        let upper = self.upper(shard)?;
        if upper.less_equal(&lower) {
            return Ok((Vec::new(), upper));
        }
        let target = upper.clone();
        let (updates, frontier) = self.with_reader(shard, async move |r| {
            let mut out = Vec::new();
            let as_of = match lower.as_millis().checked_sub(1) {
                Some(before) => Timestamp::new(before),
                None => {
                    out.extend(r.snapshot(&lower).await?);
                    lower
                }
            };
            let mut listen = r.listen(&as_of).await?;
            while PartialOrder::less_than(&listen.frontier(), &target) {
                for event in listen.next().await? {
                    if let ListenEvent::Updates(updates) = event {
                        out.extend(updates);
                    }
                }
            }
            Ok((out, listen.frontier()))
        })?;
        Ok((decode(shard, updates)?, frontier))
    }
}

impl ShardSince for PersistShards {
    #[tracing::instrument(level = "debug", name = "persist.downgrade_since", skip_all, fields(shard = %shard, since = crate::shard::frontier_time(since).map(tracing::field::display)))]
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError> {
        let since = since.clone();
        self.with_reader(shard, async move |r| {
            if PartialOrder::less_than(r.since(), &since) {
                r.downgrade_since(&since).await?;
            }
            Ok(())
        })
    }

    #[tracing::instrument(level = "debug", name = "persist.release", skip_all, fields(shard = %shard))]
    fn release(&self, shard: ShardId) {
        let writer = match self.writers.lock() {
            Ok(mut writers) => writers.remove(&shard),
            Err(_) => None,
        };
        let reader = match self.readers.lock() {
            Ok(mut readers) => readers.remove(&shard),
            Err(_) => None,
        };
        if writer.is_none() && reader.is_none() {
            return;
        }
        let expire = expire_all(writer.into_iter().collect(), reader.into_iter().collect());
        if tokio::runtime::Handle::try_current().is_ok() {
            // Detached: the expiry finishes on the adapter's runtime in the background.
            drop(self.runtime().spawn(expire));
        } else {
            self.block_on(expire);
        }
    }
}
