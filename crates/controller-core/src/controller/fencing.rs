//! Epoch fencing, and reading a shard's frontiers without writing.
//!
//! Every shard the controller owns, and the txns shard, has a critical reader named
//! [`CONTROLLER_READER_ID`] whose opaque value is the epoch of the controller holding
//! it. [`fence_shard`] raises it to ours, which fences every older controller;
//! [`critical_opaque`] and [`peek_frontiers`] read a shard's state without writing
//! anything, for read-only mode and for the checks before a write.
//!
//! A leaf of the controller: it depends on persist and the error helpers only, so
//! bootstrap, the storage task and introspection all use it without depending on each
//! other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_controller_api::{Antichain, ShardId, StorageError, StorageTimestamp};
use strata_persist_backend::txns::TxnsError;
use strata_persist_backend::{PersistClient, PersistError, SinceHandle, frontier_of};

use super::{persist_err, txns_err};

/// The critical reader id under which a controller holds every shard's since; its
/// opaque value is the controller's epoch.
pub const CONTROLLER_READER_ID: &str = "strata-controller";

/// Opens the controller's critical since of `shard` (creating the shard if needed) and
/// stores `epoch` as its opaque, fencing older controllers.
///
/// # Errors
///
/// [`StorageError::Fenced`] if a higher epoch holds the shard.
pub(super) async fn fence_shard<T: StorageTimestamp>(
    client: &PersistClient,
    shard: ShardId,
    epoch: u64,
) -> Result<SinceHandle<T>, StorageError<T>> {
    let mut handle = client
        .open_critical_since::<T>(shard, CONTROLLER_READER_ID)
        .await
        .map_err(persist_err)?;
    loop {
        let current = handle.opaque();
        if current > epoch {
            return Err(StorageError::Fenced {
                ours: epoch,
                current,
            });
        }
        if current == epoch {
            return Ok(handle);
        }
        let since = handle.since().clone();
        // A mismatch refreshes the handle's opaque; the loop checks it again.
        let _ = handle
            .compare_and_downgrade_since(current, (epoch, &since))
            .await
            .map_err(persist_err)?;
    }
}

/// The opaque (epoch) of the controller's critical reader of `shard`, read without
/// writing; 0 if there is none yet.
pub(super) async fn critical_opaque<T>(
    client: &PersistClient,
    shard: ShardId,
) -> Result<u64, StorageError<T>> {
    let state = match client.inspect_shard(shard).await {
        Ok(state) => state,
        Err(PersistError::InvalidUsage(_)) => return Ok(0),
        Err(error) => return Err(persist_err(error)),
    };
    let opaque = state
        .critical_readers
        .iter()
        .find(|r| r.id == CONTROLLER_READER_ID)
        .map_or(0, |r| r.opaque);
    Ok(opaque)
}

/// Reads a shard's since and upper without writing anything; `None` if the shard does
/// not exist yet.
pub(super) async fn peek_frontiers<T: StorageTimestamp>(
    client: &PersistClient,
    shard: ShardId,
) -> Result<Option<(Antichain<T>, Antichain<T>)>, StorageError<T>> {
    match client.inspect_shard(shard).await {
        Ok(state) => Ok(Some((
            frontier_of(state.since_code()),
            frontier_of(state.upper_code()),
        ))),
        Err(PersistError::NotInitialized { .. }) => Ok(None),
        Err(error) => Err(persist_err(error)),
    }
}

/// What this controller knows of being fenced: its epoch, and the newer epoch that
/// fenced it (0 while none has). Cheap to clone; clones share what they learn.
#[derive(Debug, Clone)]
pub(super) struct Fence {
    pub(super) epoch: u64,
    fenced_by: Arc<AtomicU64>,
}

impl Fence {
    /// Not fenced yet, at `epoch`.
    pub(super) fn new(epoch: u64) -> Self {
        Fence {
            epoch,
            fenced_by: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records that epoch `current` fenced this controller.
    pub(super) fn fenced<T>(&self, current: u64) -> StorageError<T> {
        self.fenced_by.fetch_max(current, Ordering::SeqCst);
        StorageError::Fenced {
            ours: self.epoch,
            current,
        }
    }

    /// Fails with `Fenced` if this controller already learned of a newer one.
    pub(super) fn check_seen<T>(&self) -> Result<(), StorageError<T>> {
        match self.fenced_by.load(Ordering::SeqCst) {
            0 => Ok(()),
            current => Err(StorageError::Fenced {
                ours: self.epoch,
                current,
            }),
        }
    }

    /// Fails with `Fenced` if this controller already learned of a newer one, or a
    /// newer controller holds `shard` (read without writing).
    pub(super) async fn check<T>(
        &self,
        client: &PersistClient,
        shard: ShardId,
    ) -> Result<(), StorageError<T>> {
        self.check_seen()?;
        let current = critical_opaque(client, shard).await?;
        if current > self.epoch {
            return Err(self.fenced(current));
        }
        Ok(())
    }

    /// Maps a txns failure to `StorageError`, turning a fenced CAS into `Fenced` (and
    /// remembering it, so every later write fails at once).
    pub(super) fn txns<T>(&self, error: TxnsError) -> StorageError<T> {
        match error {
            TxnsError::Persist(PersistError::Fenced { current, .. }) => self.fenced(current),
            other => txns_err(other),
        }
    }
}
