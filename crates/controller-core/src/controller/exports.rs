//! [`Exports`]: sinks. An export is a shard-less registry entry on its instance that
//! holds its `from` collection at its own since (one step behind its upper); it runs on
//! the instance unless the controller is read-only (see `ingestions`).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use strata_controller_api::{
    ExportDescription, Exports, GlobalId, ReadPolicy, SinkConnection, StorageError,
    StorageTimestamp,
};
use timely::PartialOrder;

use super::Controller;
use crate::frontiers::CollectionConfig;

impl<T: StorageTimestamp> Controller<T> {
    /// Validates a create call; returns the exports that are new. Changes nothing.
    fn validate_exports(
        &self,
        exports: Vec<(GlobalId, ExportDescription<T>)>,
    ) -> Result<Vec<(GlobalId, ExportDescription<T>)>, StorageError<T>> {
        let mut seen = BTreeSet::new();
        let mut new = Vec::new();
        for (id, description) in exports {
            if !seen.insert(id) {
                return Err(StorageError::DuplicateId(id));
            }
            match self.registry.exports.get(&id) {
                Some(existing) if *existing == description => continue,
                Some(_) => return Err(StorageError::SinkIdReused(id)),
                None if self.registry.frontiers.contains(id) => {
                    return Err(StorageError::SinkIdReused(id));
                }
                None => {}
            }
            self.registry.live(description.from)?;
            if !self.instances.contains_key(&description.instance_id) {
                return Err(StorageError::InstanceMissing(description.instance_id));
            }
            let since = self
                .registry
                .frontiers
                .since(description.from)
                .map(|s| s.to_owned())
                .unwrap_or_default();
            if !PartialOrder::less_equal(&since, &description.as_of) {
                return Err(StorageError::ReadBeforeSince {
                    id: description.from,
                    since,
                });
            }
            new.push((id, description));
        }
        Ok(new)
    }
}

#[async_trait]
impl<T: StorageTimestamp> Exports<T> for Controller<T> {
    async fn create_exports(
        &mut self,
        exports: Vec<(GlobalId, ExportDescription<T>)>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_fenced()?;
        for (id, description) in self.validate_exports(exports)? {
            let config =
                CollectionConfig::new(description.as_of.clone(), description.as_of.clone())
                    .without_shard()
                    .with_dependencies(vec![description.from])
                    .with_read_policy(ReadPolicy::step_back())
                    .with_hold_policy(ReadPolicy::step_back())
                    .on_instance(description.instance_id);
            let effects = self.registry.frontiers.register(id, config)?;
            self.registry.exports.insert(id, description);
            self.execute(effects);
            self.run_export(id)?;
        }
        Ok(())
    }

    async fn alter_export(
        &mut self,
        id: GlobalId,
        new_description: ExportDescription<T>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        if !self.registry.exports.contains_key(&id) || self.registry.frontiers.is_dropped(id) {
            return Err(StorageError::IdentifierMissing(id));
        }
        self.registry.live(new_description.from)?;
        if !self.instances.contains_key(&new_description.instance_id) {
            return Err(StorageError::InstanceMissing(new_description.instance_id));
        }
        // The sink resumes at its upper, so the new input must still be readable there.
        let since = self
            .registry
            .frontiers
            .since(new_description.from)
            .map(|s| s.to_owned())
            .unwrap_or_default();
        let upper = self
            .registry
            .frontiers
            .upper(id)
            .cloned()
            .unwrap_or_default();
        if !PartialOrder::less_equal(&since, &upper) {
            return Err(StorageError::ReadBeforeSince {
                id: new_description.from,
                since,
            });
        }
        let effects = self
            .registry
            .frontiers
            .set_dependencies(id, vec![new_description.from])?;
        self.registry.exports.insert(id, new_description);
        self.execute(effects);
        self.run_export(id)
    }

    async fn alter_export_connections(
        &mut self,
        exports: BTreeMap<GlobalId, SinkConnection>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        for id in exports.keys() {
            match self.registry.exports.get(id) {
                Some(export) if !self.registry.frontiers.is_dropped(*id) => {
                    if !self.instances.contains_key(&export.instance_id) {
                        return Err(StorageError::InstanceMissing(export.instance_id));
                    }
                }
                _ => return Err(StorageError::IdentifierMissing(*id)),
            }
        }
        let mut changed = Vec::new();
        for (id, connection) in exports {
            if let Some(export) = self.registry.exports.get_mut(&id)
                && export.connection != connection
            {
                export.connection = connection;
                changed.push(id);
            }
        }
        for id in changed {
            self.run_export(id)?;
        }
        Ok(())
    }

    fn drop_sinks(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>> {
        self.drain_internal();
        for id in &ids {
            self.export(*id)?;
        }
        self.drop_live_sinks(ids)
    }

    fn drop_sinks_unvalidated(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_fenced()?;
        let live = ids
            .into_iter()
            .filter(|id| self.export(*id).is_ok())
            .collect();
        self.drop_live_sinks(live)
    }

    fn export(&self, id: GlobalId) -> Result<ExportDescription<T>, StorageError<T>> {
        match self.registry.exports.get(&id) {
            Some(export) if !self.registry.frontiers.is_dropped(id) => Ok(export.clone()),
            _ => Err(StorageError::IdentifierMissing(id)),
        }
    }
}

impl<T: StorageTimestamp> Controller<T> {
    /// Drops `ids`, which are live exports (deduplicated here).
    fn drop_live_sinks(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>> {
        let ids: Vec<GlobalId> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // A sink whose upper reached `[]` was stopped when it completed (see
        // `frontiers`): its replicas' confirmation came, or will come, before the drop,
        // so the controller confirms it now.
        let stopped: BTreeSet<GlobalId> = ids
            .iter()
            .copied()
            .filter(|id| self.registry.frontiers.is_stopped(*id))
            .collect();
        let effects = self.registry.frontiers.drop_collections(&ids)?;
        self.execute(effects);
        self.introspection_dropped(&ids);
        if self.read_only {
            // The sinks never ran (see `run_export`): no replica will confirm.
            let confirmed = self.awaiting_replicas(&ids);
            self.confirm_drops(confirmed);
        } else {
            self.confirm_drops(stopped);
        }
        Ok(())
    }
}
