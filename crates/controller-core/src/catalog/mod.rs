//! The durable catalog: the default
//! [`StorageTxn`](strata_controller_api::StorageTxn) implementation, backed by a
//! metadata shard, and the epoch fencing that comes with it.
//!
//! The metadata shard (by default [`CATALOG_SHARD_ID`]) holds a small differential
//! collection of rows ([`CatalogContents`]): collection id → data shard, unfinalized
//! shards, the txns shard, and the epoch. Version `n` of the catalog is written at time
//! `n` with one `compare_and_append`, so the shard's upper says how many versions exist
//! and every commit is linearizable. A commit replays its transaction's changes on the
//! latest version, so concurrent transactions of one epoch never overwrite each other.
//!
//! **Epochs.** [`DurableCatalog::open`] claims the next epoch in two steps:
//! 1. a `compare_and_downgrade_since` on the metadata shard's critical since, from the
//!    stored opaque to the new epoch: exactly one of racing opens wins each value;
//! 2. a `compare_and_append` that replaces the epoch row.
//!
//! A commit succeeds only on top of a version whose epoch row is its own, so once a
//! newer controller has written its epoch row, every commit of an older one fails with
//! [`StorageError::Fenced`](strata_controller_api::StorageError::Fenced) and writes
//! nothing. (A commit between steps 1 and 2 of a newer open lands before its epoch row:
//! the newer controller reads it.) An open that finds a newer epoch row than the one it
//! claimed is itself fenced.
//!
//! **Invariants**: the epoch row never decreases; the critical since's opaque is the
//! highest epoch ever claimed; no row is ever read with a multiplicity other than one
//! (a corrupt shard is a typed [`CatalogError::CorruptRow`], never a panic).

mod contract;
mod error;
mod prepare;
mod rows;
mod shard;
mod txn;

use std::sync::{Arc, Mutex, PoisonError};

use strata_controller_api::{BufferedTxn, ShardId, StorageTimestamp};
use strata_persist_backend::PersistClient;

pub use contract::{CatalogHarness, storage_txn_contract};
pub use error::{CatalogError, Result};
pub use prepare::{PreparedState, initialize_state, new_shard_id, prepare_state};
pub use rows::CatalogContents;
pub use txn::DurableStorageTxn;

use rows::diff;
use shard::MetadataShard;

/// The well-known metadata shard of a location: the 16 bytes of `strata-catalog-1`.
pub const CATALOG_SHARD_ID: ShardId = ShardId::from_bytes(*b"strata-catalog-1");

/// The critical reader of the metadata shard whose opaque is the epoch.
pub const CATALOG_READER_ID: &str = "strata-catalog";

/// The critical since follows the latest version once every this many commits.
const SINCE_DOWNGRADE_EVERY: usize = 16;

/// Where the catalog lives and how hard it tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogOptions {
    /// The metadata shard.
    pub shard: ShardId,
    /// Attempts at an epoch claim or a commit before [`CatalogError::Contention`].
    pub max_attempts: usize,
}

impl Default for CatalogOptions {
    fn default() -> Self {
        CatalogOptions {
            shard: CATALOG_SHARD_ID,
            max_attempts: 16,
        }
    }
}

/// What a catalog instance knows about its metadata shard. Guarded by one async lock:
/// commits of one instance are serialized.
#[derive(Debug)]
struct Io {
    meta: MetadataShard,
    /// The latest version this instance has seen.
    durable: CatalogContents,
    /// The upper `durable` was read or written at.
    upper: u64,
    /// `durable`/`upper` may be behind the shard (after a mismatch or a failed write).
    stale: bool,
    /// A newer epoch that fenced us, once known.
    fenced_by: Option<u64>,
    commits_since_downgrade: usize,
}

#[derive(Debug)]
struct Inner {
    shard: ShardId,
    epoch: u64,
    max_attempts: usize,
    /// The latest version this instance committed or read (after a conflict, that may
    /// be a newer controller's); `begin` starts from it.
    cache: Mutex<CatalogContents>,
    io: tokio::sync::Mutex<Io>,
}

/// The durable catalog of one controller epoch. Cheap to clone; clones share the epoch
/// and serialize their commits.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::collections::BTreeMap;
/// use strata_controller_api::{GlobalId, ShardId, StorageError, StorageTxn, Timestamp};
/// use strata_controller_core::catalog::DurableCatalog;
/// use strata_persist_backend::PersistClient;
///
/// let client = PersistClient::open("mem://catalog-doc").await.unwrap();
/// let old = DurableCatalog::open(&client).await.unwrap();
/// let mut txn = old.begin::<Timestamp>();
/// let shard = ShardId::from_bytes([1; 16]);
/// txn.insert_collection_metadata(BTreeMap::from([(GlobalId::User(1), shard)])).unwrap();
/// txn.commit().await.unwrap();
///
/// let new = DurableCatalog::open(&client).await.unwrap();
/// assert_eq!(new.epoch(), old.epoch() + 1);
/// assert_eq!(new.begin::<Timestamp>().get_collection_metadata().len(), 1);
/// assert!(matches!(txn.commit().await, Err(StorageError::Fenced { .. })));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct DurableCatalog {
    inner: Arc<Inner>,
}

impl DurableCatalog {
    /// Opens (creating if needed) the catalog at [`CATALOG_SHARD_ID`] and claims the next
    /// epoch, fencing every earlier catalog instance of the location.
    pub async fn open(client: &PersistClient) -> Result<DurableCatalog> {
        Self::open_with(client, CatalogOptions::default()).await
    }

    /// [`DurableCatalog::open`] with explicit options.
    pub async fn open_with(
        client: &PersistClient,
        options: CatalogOptions,
    ) -> Result<DurableCatalog> {
        let mut meta = MetadataShard::open(client, options.shard, CATALOG_READER_ID).await?;
        let attempts = options.max_attempts.max(1);
        for _ in 0..attempts {
            let (durable, upper) = meta.read().await?;
            let expected = meta.opaque();
            let prev = durable.epoch.max(expected);
            let epoch = prev
                .checked_add(1)
                .ok_or(CatalogError::EpochOverflow { epoch: prev })?;
            let read_ts = upper.saturating_sub(1);
            if meta
                .compare_and_downgrade(expected, epoch, read_ts)
                .await?
                .is_err()
            {
                continue;
            }
            let (durable, upper) =
                write_epoch_row(&mut meta, durable, upper, epoch, attempts).await?;
            let io = Io {
                meta,
                durable: durable.clone(),
                upper,
                stale: false,
                fenced_by: None,
                commits_since_downgrade: 0,
            };
            let inner = Inner {
                shard: options.shard,
                epoch,
                max_attempts: attempts,
                cache: Mutex::new(durable),
                io: tokio::sync::Mutex::new(io),
            };
            return Ok(DurableCatalog {
                inner: Arc::new(inner),
            });
        }
        Err(CatalogError::Contention {
            shard: options.shard,
            attempts,
        })
    }

    /// The epoch this instance claimed.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The metadata shard.
    pub fn shard_id(&self) -> ShardId {
        self.inner.shard
    }

    /// The latest version this instance has committed or read, without I/O.
    pub fn contents(&self) -> CatalogContents {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A transaction on [`DurableCatalog::contents`], at this instance's epoch.
    pub fn begin<T: StorageTimestamp>(&self) -> DurableStorageTxn<T> {
        BufferedTxn::new(self.clone(), self.contents())
    }

    /// Reads the latest version of the catalog at `options.shard` without claiming an
    /// epoch and without writing anything: no reader is registered and no catalog row is
    /// written ([`PersistClient::peek_latest`]), so it works on read-only locations and
    /// never disturbs the controller that owns the catalog. For inspection.
    pub async fn read_latest(
        client: &PersistClient,
        options: &CatalogOptions,
    ) -> Result<CatalogContents> {
        let shard = options.shard;
        let read = client
            .peek_latest::<strata_controller_api::Timestamp>(shard, &rows::catalog_desc())
            .await;
        let updates = match read {
            Ok((updates, _upper)) => updates,
            // No controller has written a catalog here yet: it is empty.
            Err(strata_persist_backend::PersistError::NotInitialized { .. }) => {
                return Ok(CatalogContents::default());
            }
            Err(error) => {
                return Err(CatalogError::persist(shard, "read the latest version")(
                    error,
                ));
            }
        };
        rows::decode(shard, updates.into_iter().map(|(d, _, diff)| (d, diff)))
    }

    fn set_cache(&self, contents: &CatalogContents) {
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.clone_from(contents);
    }

    /// Writes the changes that turn `base` into `desired` as the next version, replayed
    /// on top of the latest version (see [`rows::rebase`]), so a concurrent commit of the
    /// same epoch is kept, not overwritten. Returns the version written.
    pub(crate) async fn commit(
        &self,
        base: &CatalogContents,
        desired: &CatalogContents,
    ) -> Result<CatalogContents> {
        let (ours, shard) = (self.inner.epoch, self.inner.shard);
        let mut io = self.inner.io.lock().await;
        for _ in 0..self.inner.max_attempts {
            if io.stale {
                let (durable, upper) = io.meta.read().await?;
                self.set_cache(&durable);
                (io.durable, io.upper, io.stale) = (durable, upper, false);
            }
            check_epoch(&mut io, ours, shard)?;
            let target = rows::rebase(shard, base, desired, &io.durable)?;
            let updates = diff(&io.durable, &target);
            if updates.is_empty() {
                // Nothing to write; linearize by checking that no one wrote since.
                if io.meta.fetch_upper().await? == io.upper {
                    return Ok(target);
                }
                io.stale = true;
                continue;
            }
            let at = io.upper;
            match io.meta.append(&updates, at).await {
                Ok(Ok(())) => {
                    self.set_cache(&target);
                    (io.durable, io.upper) = (target.clone(), at + 1);
                    maybe_downgrade_since(&mut io, ours).await;
                    return Ok(target);
                }
                Ok(Err(())) => io.stale = true,
                Err(e) => {
                    io.stale = true;
                    return Err(e);
                }
            }
        }
        Err(CatalogError::Contention {
            shard,
            attempts: self.inner.max_attempts,
        })
    }
}

/// Fails with `Fenced` once a newer epoch is known; a version whose epoch is older than
/// ours (ours was written at open) means the shard was rewritten behind our back.
fn check_epoch(io: &mut Io, ours: u64, shard: ShardId) -> Result<()> {
    let found = io.durable.epoch;
    if found > ours {
        io.fenced_by = Some(io.fenced_by.unwrap_or(0).max(found));
    }
    if let Some(current) = io.fenced_by {
        return Err(CatalogError::Fenced { ours, current });
    }
    if found < ours {
        return Err(CatalogError::CorruptRow {
            shard,
            row: format!("(epoch, , {found})"),
            reason: format!("the epoch row went back from {ours} to {found}"),
        });
    }
    Ok(())
}

/// Every few commits, moves the critical since up to the latest version so the shard can
/// compact. A mismatch there means a newer controller has claimed the catalog.
async fn maybe_downgrade_since(io: &mut Io, ours: u64) {
    io.commits_since_downgrade += 1;
    if io.commits_since_downgrade < SINCE_DOWNGRADE_EVERY {
        return;
    }
    io.commits_since_downgrade = 0;
    let read_ts = io.upper.saturating_sub(1);
    match io.meta.compare_and_downgrade(ours, ours, read_ts).await {
        Ok(Ok(())) => {}
        Ok(Err(current)) => io.fenced_by = Some(current),
        // Best effort: the since is only a compaction hint here.
        Err(e) => tracing::debug!(error = %e, "catalog since downgrade failed"),
    }
}

/// Replaces the epoch row with `epoch`, which this open claimed in the critical since.
/// Returns the version written and the new upper.
async fn write_epoch_row(
    meta: &mut MetadataShard,
    mut durable: CatalogContents,
    mut upper: u64,
    epoch: u64,
    attempts: usize,
) -> Result<(CatalogContents, u64)> {
    for _ in 0..attempts {
        if durable.epoch > epoch {
            return Err(CatalogError::Fenced {
                ours: epoch,
                current: durable.epoch,
            });
        }
        let target = CatalogContents {
            epoch,
            ..durable.clone()
        };
        match meta.append(&diff(&durable, &target), upper).await? {
            Ok(()) => return Ok((target, upper + 1)),
            Err(()) => (durable, upper) = meta.read().await?,
        }
    }
    Err(CatalogError::Contention {
        shard: meta.shard_id(),
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two opens race: A claims epoch 2 in the critical since, then B claims 3 and
    /// writes its epoch row before A writes its own. A's open is fenced, B's stands.
    #[tokio::test]
    async fn an_open_whose_epoch_row_loses_the_race_is_fenced() {
        let client = PersistClient::open("mem://catalog-open-race")
            .await
            .unwrap();
        let first = DurableCatalog::open(&client).await.unwrap();
        assert_eq!(first.epoch(), 1);

        let mut a = MetadataShard::open(&client, CATALOG_SHARD_ID, CATALOG_READER_ID)
            .await
            .unwrap();
        let (durable, upper) = a.read().await.unwrap();
        a.compare_and_downgrade(1, 2, upper - 1)
            .await
            .unwrap()
            .unwrap();

        let b = DurableCatalog::open(&client).await.unwrap();
        assert_eq!(b.epoch(), 3, "B claims past A's opaque");

        let err = write_epoch_row(&mut a, durable, upper, 2, 4)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CatalogError::Fenced {
                    ours: 2,
                    current: 3
                }
            ),
            "{err}"
        );
        let latest = DurableCatalog::read_latest(&client, &CatalogOptions::default())
            .await
            .unwrap();
        assert_eq!(latest.epoch, 3);
    }
}
