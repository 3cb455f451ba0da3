//! [`LiveSet`]: the objects a [`CommandHistory`](super::CommandHistory) still has to
//! describe, counted incrementally.
//!
//! An object (an ingestion or a sink) is live from the `Run*` that names it until every
//! id it owns (an ingestion's collections: its id, remap collection and exports; a
//! sink's id) has been compacted to `[]` *and* forgotten with
//! [`LiveSet::forget`], which the instance calls once every replica has confirmed
//! the drop. Until then a reconnecting replica may still run the object, so the history
//! keeps the final compactions of its dropped ids.
//!
//! The weight of a live ingestion is one plus its number of collections (its
//! `RunIngestion` plus one compaction per collection); a live sink weighs one (its
//! `RunSink`, which absorbs its compactions, or else its final compaction). A reduced
//! history never holds more commands than the total weight plus four.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::GlobalId;

use crate::protocol::StorageCommand;

/// One live object.
#[derive(Debug, Clone)]
struct LiveObject {
    /// The ids it owns, per its latest `Run*`.
    ids: BTreeSet<GlobalId>,
    /// The ids not yet forgotten; the object dies when this empties.
    remaining: BTreeSet<GlobalId>,
    /// Its weight, as counted in [`LiveSet::weight`].
    weight: usize,
}

/// The live objects of a history. See the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct LiveSet {
    objects: BTreeMap<GlobalId, LiveObject>,
    /// Per id not yet forgotten, the live objects that own it.
    owners: BTreeMap<GlobalId, BTreeSet<GlobalId>>,
    /// Owned ids that have been compacted to `[]`: the ones that may be forgotten.
    dropped: BTreeSet<GlobalId>,
    weight: usize,
}

impl LiveSet {
    /// Updates the set for a command being pushed.
    pub(super) fn observe<T>(&mut self, command: &StorageCommand<T>) {
        match command {
            StorageCommand::RunIngestion(run) => {
                let ids = run.collection_ids();
                let weight = 1 + ids.len();
                self.run(run.id, ids, weight);
            }
            StorageCommand::RunSink(run) => self.run(run.id, BTreeSet::from([run.id]), 1),
            StorageCommand::AllowCompaction { id, frontier }
                if frontier.is_empty() && self.owners.contains_key(id) =>
            {
                self.dropped.insert(*id);
            }
            _ => {}
        }
    }

    /// A `Run*` of `object` owning `ids`: starts it, or replaces its ids (an alter).
    /// Ids it no longer owns stop counting; ids already forgotten stay forgotten.
    fn run(&mut self, object: GlobalId, ids: BTreeSet<GlobalId>, weight: usize) {
        let mut forgotten = BTreeSet::new();
        if let Some(old) = self.objects.remove(&object) {
            self.weight -= old.weight;
            for id in old.ids.difference(&ids) {
                self.disown(*id, object);
            }
            forgotten = old.ids.difference(&old.remaining).copied().collect();
        }
        let remaining: BTreeSet<GlobalId> = ids.difference(&forgotten).copied().collect();
        if remaining.is_empty() {
            return;
        }
        for id in &remaining {
            self.owners.entry(*id).or_default().insert(object);
        }
        self.weight += weight;
        self.objects.insert(
            object,
            LiveObject {
                ids,
                remaining,
                weight,
            },
        );
    }

    fn disown(&mut self, id: GlobalId, object: GlobalId) {
        if let Some(owners) = self.owners.get_mut(&id) {
            owners.remove(&object);
            if owners.is_empty() {
                self.owners.remove(&id);
                self.dropped.remove(&id);
            }
        }
    }

    /// Every replica confirmed that `id` is dropped. Ignored unless `id` is owned by a
    /// live object and was compacted to `[]`.
    pub(super) fn forget(&mut self, id: GlobalId) {
        if !self.dropped.remove(&id) {
            return;
        }
        for object in self.owners.remove(&id).unwrap_or_default() {
            let Some(live) = self.objects.get_mut(&object) else {
                continue;
            };
            live.remaining.remove(&id);
            if live.remaining.is_empty() {
                self.weight -= live.weight;
                self.objects.remove(&object);
            }
        }
    }

    /// Whether `id` belongs to a live object and has not been forgotten: its final
    /// compaction must then stay in the history.
    pub(super) fn is_pending(&self, id: GlobalId) -> bool {
        self.owners.contains_key(&id)
    }

    /// The total weight of the live objects.
    pub(super) fn weight(&self) -> usize {
        self.weight
    }
}
