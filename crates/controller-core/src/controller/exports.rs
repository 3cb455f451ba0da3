//! [`Exports`]: the registry side of sinks. An export is a shard-less registry entry
//! that holds its `from` collection at its own since; running it on replicas arrives
//! with the ingestions and exports issue.

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
                    .with_hold_policy(ReadPolicy::step_back());
            let effects = self.registry.frontiers.register(id, config)?;
            self.registry.exports.insert(id, description);
            self.execute(effects);
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
        let effects = self
            .registry
            .frontiers
            .set_dependencies(id, vec![new_description.from])?;
        self.registry.exports.insert(id, new_description);
        self.execute(effects);
        Ok(())
    }

    async fn alter_export_connections(
        &mut self,
        exports: BTreeMap<GlobalId, SinkConnection>,
    ) -> Result<(), StorageError<T>> {
        for id in exports.keys() {
            if !self.registry.exports.contains_key(id) {
                return Err(StorageError::IdentifierMissing(*id));
            }
        }
        for (id, connection) in exports {
            if let Some(export) = self.registry.exports.get_mut(&id) {
                export.connection = connection;
            }
        }
        Ok(())
    }

    fn drop_sinks(&mut self, ids: Vec<GlobalId>) -> Result<(), StorageError<T>> {
        self.drain_internal();
        for id in &ids {
            if !self.registry.exports.contains_key(id) || self.registry.frontiers.is_dropped(*id) {
                return Err(StorageError::IdentifierMissing(*id));
            }
        }
        let effects = self.registry.frontiers.drop_collections(&ids)?;
        self.execute(effects);
        Ok(())
    }
}
