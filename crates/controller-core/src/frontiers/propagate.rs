//! One pass of read-capability propagation, and the effects it produces.
//!
//! A pass queues [`ChangeBatch`]es on entries, applies them largest id first, forwards
//! every resulting change of a since to that entry's dependencies, and at the end
//! compares each touched entry's frontiers with what they were before the pass.
//! Dependents usually have larger ids than their dependencies, so largest-first settles
//! a dependent before its dependencies and each id is applied once; the worklist stays
//! correct for any order, because an id that receives more changes is applied again.
//!
//! The pending changes and the before-snapshot live on the entries themselves (see
//! `CollectionFrontierState::pending`), so a pass allocates no map per touched id.
//! Every pass must end in [`FrontierState::finish`], which clears that bookkeeping.

use std::collections::BinaryHeap;

use strata_controller_api::{ChangeBatch, GlobalId, StorageTimestamp};

use super::collection::CollectionFrontierState;
use super::{Effect, FrontierState};

/// The work and bookkeeping of one pass.
#[derive(Debug)]
pub(super) struct Pass {
    /// Ids with pending changes; the largest pops first.
    queue: BinaryHeap<GlobalId>,
    /// Ids whose frontiers were snapshot, in the order first touched.
    touched: Vec<GlobalId>,
    /// Ids whose implied capabilities follow their upper at the end of the pass.
    deferred: Vec<GlobalId>,
}

impl Pass {
    /// An empty pass.
    pub(super) fn new() -> Self {
        Pass {
            queue: BinaryHeap::new(),
            touched: Vec::new(),
            deferred: Vec::new(),
        }
    }

    /// Remembers the entry's frontiers before the pass changes anything about it, so
    /// that the end of the pass reports it even if only its upper or drop state moved.
    pub(super) fn touch<T: StorageTimestamp>(
        &mut self,
        id: GlobalId,
        entry: &mut CollectionFrontierState<T>,
    ) {
        if entry.before.is_none() {
            entry.before = Some((entry.since().to_owned(), entry.upper.clone()));
            self.touched.push(id);
        }
    }

    /// Leaves deriving the entry's implied capabilities from its upper to the end of
    /// the pass.
    pub(super) fn defer_derivation<T: StorageTimestamp>(
        &mut self,
        id: GlobalId,
        entry: &mut CollectionFrontierState<T>,
    ) {
        if !entry.derive_pending {
            entry.derive_pending = true;
            self.deferred.push(id);
        }
    }

    /// Queues a change to the entry's read capabilities.
    pub(super) fn push<T: StorageTimestamp>(
        &mut self,
        id: GlobalId,
        entry: &mut CollectionFrontierState<T>,
        mut changes: ChangeBatch<T>,
    ) {
        if changes.is_empty() {
            return;
        }
        self.touch(id, entry);
        entry.pending.extend(changes.drain());
        if !entry.queued {
            entry.queued = true;
            self.queue.push(id);
        }
    }
}

impl<T: StorageTimestamp> FrontierState<T> {
    /// Applies every queued change, propagates since changes to dependencies, and
    /// returns the effects of the whole pass.
    pub(super) fn finish(&mut self, mut pass: Pass) -> Vec<Effect<T>> {
        self.rederive_advanced(&mut pass);
        self.propagate(&mut pass);
        self.effects(pass)
    }

    /// Derives the implied capabilities that waited for the end of the pass, once per
    /// entry (see `advance_upper`).
    fn rederive_advanced(&mut self, pass: &mut Pass) {
        for id in std::mem::take(&mut pass.deferred) {
            if let Some(entry) = self.collections.get_mut(&id)
                && entry.derive_pending
            {
                entry.derive_pending = false;
                let changes = entry.rederive_capabilities();
                pass.push(id, entry, changes);
            }
        }
    }

    fn propagate(&mut self, pass: &mut Pass) {
        let mut since_changes = Vec::new();
        let mut dependencies = Vec::new();
        while let Some(id) = pass.queue.pop() {
            // Changes only target registered ids: an entry is forgotten only once its
            // since is `[]`, and then it holds nothing and nothing holds it.
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            entry.queued = false;
            since_changes.clear();
            since_changes.extend(entry.read_capabilities.update_iter(entry.pending.drain()));
            if since_changes.is_empty() {
                continue;
            }
            dependencies.clear();
            dependencies.extend_from_slice(&entry.dependencies);
            for dependency in &dependencies {
                if let Some(held) = self.collections.get_mut(dependency) {
                    let mut changes = ChangeBatch::new();
                    changes.extend(since_changes.iter().copied());
                    pass.push(*dependency, held, changes);
                }
            }
        }
    }

    fn effects(&mut self, mut pass: Pass) -> Vec<Effect<T>> {
        pass.touched.sort_unstable();
        let mut effects = Vec::new();
        for id in pass.touched {
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            entry.upper_moved = false;
            let Some((since_before, upper_before)) = entry.before.take() else {
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
