//! Orphan collection for the txns shard's batch parts.
//!
//! A commit writes its batches under `txns/{txns}/parts/{data}/{uuid}` before its one
//! CAS. A committer that crashes in between leaves parts nothing references. A part
//! is referenced while a live txns row holds its batch (committed, maybe not applied)
//! or while its data shard's state holds it (applied: live or awaiting GC). Reading in
//! that order (list, txns rows, data shard state) never misses a reference: a row is
//! retracted only after its batch is linked into the data shard.

use std::collections::BTreeSet;

use strata_controller_api::{ShardId, StorageTimestamp};

use super::error::TxnsResult;
use super::handle::TxnsHandle;
use crate::error::PersistError;
use crate::paths::{ObjectKey, Prefix};

impl<T: StorageTimestamp> TxnsHandle<T> {
    /// Deletes the batch parts of commits that never happened (their committer failed
    /// or crashed between writing them and the CAS), once they are older than the
    /// client's `orphan_grace`, and on a local directory the staging files of puts that
    /// were interrupted as long ago; returns how many objects were deleted. Idempotent
    /// and safe to run concurrently with commits, applies and reads, provided a commit
    /// completes within `orphan_grace` of writing its parts.
    pub async fn gc_orphans(&mut self) -> TxnsResult<usize> {
        let machine = self.client.machine(self.txns_id);
        let staging =
            crate::maintenance::sweep_staging(&machine, Prefix::TxnsParts(self.txns_id)).await?;
        let prefix = machine.loc.prefix_of(Prefix::TxnsParts(self.txns_id));
        let listed = crate::blob::list(machine.loc.store.as_ref(), &prefix)
            .await
            .map_err(PersistError::from)?;
        let now = crate::config::system_now()() as i64;
        let grace = self.client.config().orphan_grace.as_millis() as i64;
        // (data shard, key relative to the location, full key) of each old enough part.
        let old_enough: Vec<_> = listed
            .into_iter()
            .filter(|m| now - m.last_modified.timestamp_millis() >= grace)
            .collect();
        let ours = |key: &ObjectKey| matches!(key, ObjectKey::TxnsPart { txns, .. } if *txns == self.txns_id);
        let candidates: Vec<(ShardId, String, object_store::path::Path)> = machine
            .loc
            .expected_keys(old_enough, "txns parts", ours)
            .into_iter()
            .filter_map(|(key, meta)| match key {
                ObjectKey::TxnsPart { data, .. } => Some((data, key.to_string(), meta.location)),
                _ => None,
            })
            .collect();
        if candidates.is_empty() {
            return Ok(staging);
        }
        self.refresh().await?;
        let mut referenced: BTreeSet<String> = self
            .view
            .shards
            .values()
            .flat_map(|e| {
                e.batches
                    .values()
                    .flat_map(|(_, b)| b.parts.iter().map(|p| p.key.clone()))
            })
            .collect();
        let shards: BTreeSet<ShardId> = candidates.iter().map(|(data, _, _)| *data).collect();
        for shard in shards {
            let state = match self.client.machine(shard).fetch().await {
                Ok(state) => state,
                // A data shard that was never initialized references nothing.
                Err(PersistError::NotInitialized { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            referenced.extend(state.live_parts().map(|p| p.key.clone()));
            referenced.extend(state.garbage.iter().map(|g| g.key.clone()));
        }
        let orphans: Vec<_> = candidates
            .into_iter()
            .filter(|(_, key, _)| !referenced.contains(key))
            .map(|(_, _, path)| path)
            .collect();
        let deleted = orphans.len();
        crate::blob::delete_many(machine.loc.store.as_ref(), orphans)
            .await
            .map_err(PersistError::from)?;
        Ok(deleted + staging)
    }
}
