//! Finalizing the shard of a dropped collection, on the storage task.
//!
//! Steps, each idempotent so a crash anywhere is repaired by running them again after
//! a restart (the catalog lists the shard as unfinalized until the last step):
//! 1. release the txns handles' leased holds on the data shard (tables);
//! 2. close the upper (`[]`) with an empty append;
//! 3. release the controller's critical since (`[]`);
//! 4. finalize the shard (tombstone, parts deleted) and collect garbage;
//! 5. mark the shard finalized in the catalog and commit.

use std::collections::BTreeSet;

use strata_controller_api::retry::{Backoff, BackoffConfig};
use strata_controller_api::{Antichain, RelationDesc, ShardId, StorageError, StorageTimestamp};
use strata_persist_backend::PersistError;

use super::persist_err;
use super::storage_task::{Command, ShardKind, StorageTask};

/// How a failed finalization is retried: a shard whose since a replica's reader lease
/// still holds becomes finalizable once that lease expires, which is another process's
/// doing.
const RETRY: BackoffConfig = BackoffConfig::PEER;

/// Failed attempts logged at debug level before failures become warnings (about 2 s).
const QUIET_ATTEMPTS: u32 = 10;

/// How often one controller tries to finalize a shard (about 5 minutes at the cap).
const MAX_ATTEMPTS: u32 = 600;

impl<T: StorageTimestamp> StorageTask<T> {
    /// The backoff of a finalization that has not failed yet.
    pub(super) fn finalize_backoff() -> Backoff {
        Backoff::new(RETRY)
    }

    /// Finalizes `shard`; a failure is logged and retried after `backoff`'s next delay,
    /// up to [`MAX_ATTEMPTS`] attempts. The shard stays in the catalog's unfinalized set
    /// until it succeeds, so the next controller retries too.
    pub(super) async fn finalize_logged(
        &mut self,
        shard: ShardId,
        kind: ShardKind,
        mut backoff: Backoff,
    ) {
        let Err(error) = self.finalize(shard, kind).await else {
            return;
        };
        let attempt = backoff.retries();
        // A replica gives up its handles on a dropped collection's shard shortly after
        // the drop, so the first attempts failing is normal: only persistent failure is
        // worth a warning.
        if attempt < QUIET_ATTEMPTS {
            tracing::debug!(%shard, %error, attempt, "finalizing a dropped shard failed, will retry");
        } else {
            tracing::warn!(%shard, %error, attempt, "finalizing a dropped shard failed");
        }
        if attempt + 1 >= MAX_ATTEMPTS {
            return;
        }
        let delay = backoff.next_delay();
        let retry = self.retry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(tx) = retry.upgrade() {
                let _ = tx.send(Command::RetryFinalize {
                    shard,
                    kind,
                    backoff,
                });
            }
        });
    }

    async fn finalize(&mut self, shard: ShardId, kind: ShardKind) -> Result<(), StorageError<T>> {
        let empty = Antichain::new();
        if kind == ShardKind::Table {
            if let Some(txns) = self.txns.as_mut() {
                let _ = txns.downgrade_data_since(shard, &empty).await;
            }
            if let Some(reader) = self.config.reader.lock().await.as_mut() {
                let _ = reader.downgrade_data_since(shard, &empty).await;
            }
        }
        let exists = match self.config.client.inspect_shard(shard).await {
            Ok(state) => !state.tombstone,
            Err(PersistError::NotInitialized { .. }) => false,
            Err(error) => return Err(persist_err(error)),
        };
        if exists {
            self.close_upper(shard).await?;
            self.downgrade_critical(shard, &empty).await?;
            self.since_handles.remove(&shard);
            self.config
                .client
                .finalize_shard(shard)
                .await
                .map_err(persist_err)?;
            self.config.client.gc(shard).await.map_err(persist_err)?;
        }
        let mut catalog = (self.config.catalog)();
        catalog.mark_shards_as_finalized(BTreeSet::from([shard]));
        catalog.commit().await
    }

    /// Moves the shard's upper to `[]`.
    async fn close_upper(&mut self, shard: ShardId) -> Result<(), StorageError<T>> {
        let state = self
            .config
            .client
            .inspect_shard(shard)
            .await
            .map_err(persist_err)?;
        let desc: RelationDesc =
            serde_json::from_value(state.schema).unwrap_or_else(|_| RelationDesc::empty());
        let mut writer = self
            .config
            .client
            .open_writer::<T>(shard, desc)
            .await
            .map_err(persist_err)?;
        loop {
            let upper = writer
                .fetch_recent_upper()
                .await
                .map_err(persist_err)?
                .clone();
            if upper.is_empty() {
                break;
            }
            let closed = writer
                .compare_and_append(&[], upper, Antichain::new())
                .await
                .map_err(persist_err)?;
            if closed.is_ok() {
                break;
            }
        }
        writer.expire().await.map_err(persist_err)
    }
}
