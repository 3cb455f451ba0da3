//! Dropping tables and sources: validation, then the durable record of the drop, then
//! forgetting tables at the txns shard and releasing the collections' capabilities
//! through the empty frontier. The frontier state machine emits `Finalize` once no
//! hold or dependent keeps a shard, and the storage task then finalizes it (see
//! `finalize`).
//!
//! The record comes first and is committed before the call returns: the catalog stops
//! mapping the ids and lists their shards as unfinalized until finalization is done.
//! A controller that starts after a crash therefore finalizes them, and the ids stay
//! gone; re-creating one later gets a fresh shard. A host that wrote the same through
//! its own `prepare_state` finds nothing left to write.

use std::collections::BTreeSet;

use strata_controller_api::{DataSource, GlobalId, ShardId, StorageError, StorageTimestamp};
use tokio::sync::oneshot;

use super::Controller;
use super::storage_task::Command;

impl<T: StorageTimestamp> Controller<T> {
    /// Drops tables at `ts`. See [`Tables::drop_tables`](strata_controller_api::Tables::drop_tables).
    pub(super) async fn drop_tables_inner(
        &mut self,
        ids: Vec<GlobalId>,
        ts: T,
    ) -> Result<(), StorageError<T>> {
        self.check_fenced()?;
        let ids: Vec<GlobalId> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut forget: Vec<ShardId> = Vec::new();
        for id in &ids {
            let state = self.registry.live_table(*id)?;
            // Read-only, an earlier controller may have registered the table: the
            // storage task keeps the forget until writes are allowed and then forgets
            // the shards that are registered.
            if state.txns_registered || self.read_only {
                forget.push(state.shard);
            }
        }
        self.record_drops(&ids).await?;
        if !forget.is_empty() {
            // Nobody waits for the reply: a failed forget leaves the shard registered
            // and unfinalized, and the storage task logs it.
            let (reply, _) = oneshot::channel();
            self.storage_task.send(Command::Forget {
                ts,
                shards: forget,
                reply,
            });
        }
        for id in &ids {
            if let Some(state) = self.registry.collections.get_mut(id) {
                state.txns_registered = false;
            }
        }
        let effects = self.registry.frontiers.drop_collections(&ids)?;
        self.execute(effects);
        self.introspection_dropped(&ids);
        self.upper_watch.unwatch(ids);
        Ok(())
    }

    /// Drops non-table collections; with `validate`, an unknown id or a table fails
    /// the whole call, otherwise such ids are skipped.
    pub(super) async fn drop_sources_inner(
        &mut self,
        ids: Vec<GlobalId>,
        validate: bool,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_fenced()?;
        let mut to_drop = Vec::with_capacity(ids.len());
        for id in ids {
            match self.registry.live(id) {
                Ok(state) if state.description.is_table() => {
                    if validate {
                        return Err(StorageError::IdentifierInvalid(id));
                    }
                }
                Ok(_) => to_drop.push(id),
                Err(error) => {
                    if validate {
                        return Err(error);
                    }
                }
            }
        }
        to_drop.sort_unstable();
        to_drop.dedup();
        self.record_drops(&to_drop).await?;
        let subsources: Vec<(GlobalId, GlobalId)> = to_drop
            .iter()
            .filter_map(
                |id| match &self.registry.collections.get(id)?.description.data_source {
                    DataSource::IngestionExport { ingestion_id, .. } => Some((*id, *ingestion_id)),
                    _ => None,
                },
            )
            .collect();
        let effects = self.registry.frontiers.drop_collections(&to_drop)?;
        self.execute(effects);
        self.introspection_dropped(&to_drop);
        self.upper_watch.unwatch(to_drop.iter().copied());
        // A surviving ingestion runs on without the subsources just dropped. Replicas
        // confirm drops per ingestion, not per subsource: once the amended ingestion is
        // sent (or, read-only, runs nowhere), nothing writes the subsource any more, so
        // the controller confirms its drop itself.
        let amended: BTreeSet<GlobalId> = subsources
            .iter()
            .map(|(_, ingestion)| *ingestion)
            .filter(|ingestion| self.registry.live(*ingestion).is_ok())
            .collect();
        for ingestion in &amended {
            self.run_ingestion(*ingestion)?;
        }
        let confirmed: BTreeSet<GlobalId> = if self.read_only {
            // Read-only, nothing ran on an instance (see `run_ingestion`), so there is
            // nothing to stop and no replica will confirm: every drop on an instance
            // is final now. (Finalization waits for `allow_writes`.)
            self.awaiting_replicas(&to_drop)
        } else {
            subsources
                .into_iter()
                .filter(|(_, ingestion)| amended.contains(ingestion))
                .map(|(id, _)| id)
                .collect()
        };
        self.confirm_drops(confirmed);
        Ok(())
    }

    /// Commits the drop of `ids` to the catalog: their mappings go and their shards are
    /// listed as unfinalized. Nothing is committed when no id is mapped any more (the
    /// host dropped them in its own transaction, or they were never mapped).
    async fn record_drops(&self, ids: &[GlobalId]) -> Result<(), StorageError<T>> {
        let mut txn = (self.catalog)();
        let prepared = crate::catalog::prepare_state(
            txn.as_mut(),
            BTreeSet::new(),
            ids.iter().copied().collect(),
            &mut super::random_shard,
        )?;
        if !prepared.dropped.is_empty() {
            txn.commit().await?;
        }
        Ok(())
    }

    /// The ids among `ids` whose drops replicas confirm: those on an instance.
    pub(super) fn awaiting_replicas(&self, ids: &[GlobalId]) -> BTreeSet<GlobalId> {
        ids.iter()
            .copied()
            .filter(|id| self.registry.frontiers.instance(*id).is_some())
            .collect()
    }
}
