//! The one collection store: for each collection, its description and shard, plus the
//! pure [`FrontierState`] that holds every frontier, capability, policy and dependency.
//!
//! # Invariants
//!
//! - Every id in `collections` or `exports` is registered in `frontiers`; an id leaves
//!   them when `frontiers` emits `Finalize` for it.
//! - Nothing else in the controller stores collection state.

use std::collections::BTreeMap;

use strata_controller_api::{
    CollectionDescription, CollectionMetadata, ExportDescription, GlobalId, ShardId, StorageError,
    StorageTimestamp,
};

use crate::frontiers::FrontierState;

/// What the registry knows about a collection besides its frontiers.
#[derive(Debug, Clone)]
pub(crate) struct CollectionState<T> {
    /// The description it was created with (the table's current schema for tables).
    pub(crate) description: CollectionDescription<T>,
    /// The data shard.
    pub(crate) shard: ShardId,
    /// Whether writes are allowed in read-only mode.
    pub(crate) migrated: bool,
    /// Whether the table is registered with the txns shard (so its upper is the txns
    /// upper). Always false for non-tables.
    pub(crate) txns_registered: bool,
}

/// The collection store. See the module docs.
#[derive(Debug)]
pub(crate) struct Registry<T> {
    pub(crate) collections: BTreeMap<GlobalId, CollectionState<T>>,
    pub(crate) exports: BTreeMap<GlobalId, ExportDescription<T>>,
    pub(crate) frontiers: FrontierState<T>,
}

impl<T: StorageTimestamp> Registry<T> {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Registry {
            collections: BTreeMap::new(),
            exports: BTreeMap::new(),
            frontiers: FrontierState::new(),
        }
    }

    /// How many collections and exports are registered (dropped ones included until
    /// they are finalized).
    pub(crate) fn len(&self) -> usize {
        self.frontiers.len()
    }

    /// The live (not dropped) collection `id`.
    pub(crate) fn live(&self, id: GlobalId) -> Result<&CollectionState<T>, StorageError<T>> {
        match self.collections.get(&id) {
            Some(state) if !self.frontiers.is_dropped(id) => Ok(state),
            _ => Err(StorageError::IdentifierMissing(id)),
        }
    }

    /// Collection `id`, live or dropped and not yet finalized: what a snapshot under a
    /// read hold may still read.
    pub(crate) fn readable(&self, id: GlobalId) -> Result<&CollectionState<T>, StorageError<T>> {
        self.collections
            .get(&id)
            .ok_or(StorageError::IdentifierMissing(id))
    }

    /// The live table `id`: `IdentifierMissing` if unknown, `IdentifierInvalid` if not a
    /// table.
    pub(crate) fn live_table(&self, id: GlobalId) -> Result<&CollectionState<T>, StorageError<T>> {
        let state = self.live(id)?;
        if state.description.is_table() {
            Ok(state)
        } else {
            Err(StorageError::IdentifierInvalid(id))
        }
    }

    /// Whether `id` is a table registered with the txns shard.
    pub(crate) fn is_txns_table(&self, id: GlobalId) -> bool {
        self.collections.get(&id).is_some_and(|c| c.txns_registered)
    }

    /// Every table whose upper follows the txns shard.
    pub(crate) fn txns_tables(&self) -> impl Iterator<Item = GlobalId> + '_ {
        self.collections
            .iter()
            .filter(|(_, c)| c.txns_registered)
            .map(|(id, _)| *id)
    }

    /// Where `id`'s data lives.
    pub(crate) fn metadata(
        &self,
        id: GlobalId,
        location: &str,
        txns_shard: ShardId,
    ) -> Result<CollectionMetadata, StorageError<T>> {
        let state = self.live(id)?;
        Ok(CollectionMetadata {
            persist_location: location.to_owned(),
            data_shard: state.shard,
            remap_shard: None,
            txns_shard: state.description.is_table().then_some(txns_shard),
            relation_desc: state.description.desc.clone(),
        })
    }
}
