//! One pass of read-capability propagation, and the effects it produces.
//!
//! A pass collects pending [`ChangeBatch`]es per id, applies them largest id first,
//! forwards every resulting change of a since to that entry's dependencies, and at the
//! end compares each touched entry's frontiers with what they were before the pass.
//! Dependents usually have larger ids than their dependencies, so largest-first settles
//! a dependent before its dependencies and each id is applied once; the worklist stays
//! correct for any order, because an id that receives more changes is applied again.

use std::collections::BTreeMap;

use strata_controller_api::{Antichain, ChangeBatch, GlobalId, StorageTimestamp};

use super::collection::CollectionFrontierState;
use super::{Effect, FrontierState};

/// The work and bookkeeping of one pass.
#[derive(Debug)]
pub(super) struct Pass<T> {
    /// Changes still to apply to read capabilities, per id.
    changes: BTreeMap<GlobalId, ChangeBatch<T>>,
    /// The since and upper of every touched id, as they were when first touched.
    before: BTreeMap<GlobalId, (Antichain<T>, Antichain<T>)>,
}

impl<T: StorageTimestamp> Pass<T> {
    /// An empty pass.
    pub(super) fn new() -> Self {
        Pass {
            changes: BTreeMap::new(),
            before: BTreeMap::new(),
        }
    }

    /// Remembers the entry's frontiers before the pass changes anything about it, so
    /// that the end of the pass reports it even if only its upper or drop state moved.
    pub(super) fn touch(&mut self, id: GlobalId, entry: &CollectionFrontierState<T>) {
        self.before
            .entry(id)
            .or_insert_with(|| (entry.since().to_owned(), entry.upper.clone()));
    }

    /// Queues a change to the entry's read capabilities.
    pub(super) fn push(&mut self, id: GlobalId, mut changes: ChangeBatch<T>) {
        if changes.is_empty() {
            return;
        }
        self.changes.entry(id).or_default().extend(changes.drain());
    }
}

impl<T: StorageTimestamp> FrontierState<T> {
    /// Applies every queued change, propagates since changes to dependencies, and
    /// returns the effects of the whole pass.
    pub(super) fn finish(&mut self, mut pass: Pass<T>) -> Vec<Effect<T>> {
        self.propagate(&mut pass);
        self.effects(pass)
    }

    fn propagate(&mut self, pass: &mut Pass<T>) {
        let mut since_changes = Vec::new();
        while let Some((id, mut batch)) = pass.changes.pop_last() {
            // Changes only target registered ids: an entry is forgotten only once its
            // since is `[]`, and then it holds nothing and nothing holds it.
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            pass.before
                .entry(id)
                .or_insert_with(|| (entry.since().to_owned(), entry.upper.clone()));
            since_changes.clear();
            since_changes.extend(entry.read_capabilities.update_iter(batch.drain()));
            if since_changes.is_empty() {
                continue;
            }
            for dependency in &entry.dependencies {
                let queued = pass.changes.entry(*dependency).or_default();
                queued.extend(since_changes.iter().copied());
            }
        }
    }

    fn effects(&mut self, pass: Pass<T>) -> Vec<Effect<T>> {
        let mut effects = Vec::new();
        for (id, (since_before, upper_before)) in pass.before {
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            let since_moved = entry.since() != since_before.borrow();
            if since_moved && entry.has_shard {
                effects.push(Effect::DowngradeSince {
                    id,
                    since: entry.since().to_owned(),
                });
            }
            if let Some((instance, frontier)) = entry.take_compaction() {
                effects.push(Effect::AllowCompaction {
                    instance,
                    id,
                    frontier,
                });
            }
            if since_moved || entry.upper != upper_before {
                let since = entry.since().to_owned();
                effects.push(Effect::RecordFrontiers {
                    id,
                    since,
                    upper: entry.upper.clone(),
                });
            }
            if entry.finalizable() {
                self.collections.remove(&id);
                effects.push(Effect::Finalize { id });
            }
        }
        effects
    }
}
