//! Frontier and read-hold arithmetic: a pure, sans-I/O state machine.
//!
//! [`FrontierState`] keeps, per registered id, the upper, the read policy and the
//! capability it implies, an optional controller hold policy and its capability, the
//! outstanding read capabilities, the storage dependencies, the instance the object
//! runs on (if any) and whether it is dropped. Inputs are plain method calls; every
//! call that can move a frontier returns the [`Effect`]s the caller must carry out.
//!
//! # Rules
//!
//! - **since** is the lower bound of the read capabilities: the implied capability,
//!   the hold capability, every external read hold, and the since of every entry that
//!   depends on this one. It never regresses and never passes an outstanding hold.
//! - **upper** only advances; reports that do not advance it, and reports for unknown
//!   or dropped ids, are ignored.
//! - A policy's advice only ever advances its capability; advice behind it is ignored.
//! - A change of an entry's since is forwarded to each of its dependencies, largest
//!   id first. [`FrontierState::set_dependencies`] moves these holds to other entries.
//! - **drop** releases both capabilities through the empty frontier, and an object on
//!   an instance gets `AllowCompaction([])` at once. When the since reaches `[]` (and,
//!   on an instance, the replicas confirmed the drop), the id is forgotten and
//!   [`Effect::Finalize`] is emitted.
//! - Inputs from callers are validated before anything changes: an invalid call
//!   returns a [`StorageError`] and leaves the state as it was.
//!
//! One registry holds collections and shard-less objects (exports) alike. Ingestions
//! and exports are ordinary entries with a `step_back` hold policy and an instance, so
//! there is no second store of "derived sinces": an object holds its dependencies at
//! its own since, and its instance is told that since in `AllowCompaction`.
//!
//! # Examples
//!
//! ```
//! use strata_controller_api::{Antichain, ChangeBatch, GlobalId, ReadPolicy, Timestamp};
//! use strata_controller_core::frontiers::{CollectionConfig, Effect, FrontierState};
//!
//! let t = |ms| Antichain::from_elem(Timestamp::new(ms));
//! let table = GlobalId::User(1);
//! let mut state = FrontierState::new();
//! let config = CollectionConfig::new(t(0), t(0)).with_read_policy(ReadPolicy::step_back());
//! state.register(table, config).unwrap();
//!
//! // A reader holds the table at its since, 0.
//! let holds = state.acquire_read_holds(&[table]).unwrap();
//! assert_eq!(holds, vec![(table, t(0))]);
//!
//! // The upper advances; the policy would allow 9, but the hold keeps the since at 0.
//! let effects = state.update_write_frontiers(&[(table, t(10))]);
//! assert_eq!(effects, vec![Effect::RecordFrontiers { id: table, since: t(0), upper: t(10) }]);
//!
//! // Releasing the hold lets the since catch up with the policy.
//! let mut release = std::collections::BTreeMap::new();
//! release.insert(table, ChangeBatch::new_from(Timestamp::new(0), -1));
//! let effects = state.update_read_capabilities(release).unwrap();
//! assert_eq!(effects[0], Effect::DowngradeSince { id: table, since: t(9) });
//! ```

mod collection;
mod dependencies;
mod effect;
mod propagate;
mod query;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, MutableAntichain, ReadPolicy, StorageError,
    StorageTimestamp, frontier_advances, set_frontier,
};
use timely::PartialOrder;

use collection::{CollectionFrontierState, HoldChangeError, MAX_HOLDS};
pub use effect::{CollectionConfig, CollectionFrontiers, Effect};
use propagate::Pass;

/// The frontiers and read capabilities of every registered collection.
///
/// # Invariants
///
/// - Every dependency of an entry whose since is not `[]` is registered: an entry is
///   forgotten only when its since is `[]`, which a holding dependent does not allow.
///   (A dropped object waiting for its replicas has since `[]` and holds nothing.)
/// - Dependencies form a DAG: registration names only existing entries, and
///   [`FrontierState::set_dependencies`] refuses cycles.
/// - For each entry, its since is not beyond any dependent's since.
///
/// # Cost
///
/// A change of one since costs one [`MutableAntichain`] update per entry it reaches
/// through dependencies; each call allocates one small map of pending changes.
#[derive(Debug)]
pub struct FrontierState<T> {
    collections: FxHashMap<GlobalId, CollectionFrontierState<T>>,
}

impl<T: StorageTimestamp> Default for FrontierState<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: StorageTimestamp> FrontierState<T> {
    /// An empty state.
    pub fn new() -> Self {
        FrontierState {
            collections: FxHashMap::default(),
        }
    }

    /// Registers `id` and holds its dependencies at its since.
    ///
    /// The since becomes the join of `config.since` and every dependency's since (a
    /// dependency's since may never be beyond its dependent's), then each policy
    /// advances its capability from `config.upper`. Returns `DowngradeSince` when the
    /// since ended up beyond `config.since`, and always `RecordFrontiers`.
    ///
    /// # Errors
    ///
    /// - [`StorageError::CollectionIdReused`] if `id` is registered (even if dropped);
    /// - [`StorageError::IdentifierMissing`] if a dependency is unknown or dropped.
    pub fn register(
        &mut self,
        id: GlobalId,
        config: CollectionConfig<T>,
    ) -> Result<Vec<Effect<T>>, StorageError<T>> {
        if self.collections.contains_key(&id) {
            return Err(StorageError::CollectionIdReused(id));
        }
        let mut dependencies = config.dependencies;
        dependencies.sort_unstable();
        dependencies.dedup();
        let mut since = config.since.clone();
        for dependency in &dependencies {
            let entry = self.live(*dependency)?;
            if PartialOrder::less_equal(&since.borrow(), &entry.since()) {
                since = entry.since().to_owned();
            }
        }
        let hold_capability = if config.hold_policy.is_some() {
            since.clone()
        } else {
            Antichain::new()
        };
        let mut read_capabilities = MutableAntichain::new();
        read_capabilities.update_iter(since.iter().chain(hold_capability.iter()).map(|t| (*t, 1)));
        let mut entry = CollectionFrontierState {
            upper: config.upper,
            read_policy: config.read_policy,
            implied_capability: since.clone(),
            hold_policy: config.hold_policy,
            hold_capability,
            read_capabilities,
            external_holds: BTreeMap::new(),
            dependencies,
            instance: config.instance,
            has_shard: config.has_shard,
            dropped: false,
            drop_confirmed: false,
            empty_compaction_sent: false,
            pending: ChangeBatch::new(),
            queued: false,
            before: None,
            upper_moved: false,
            derive_pending: false,
            allowed_compaction: since,
        };
        let mut changes = entry.rederive_capabilities();
        entry.read_capabilities.update_iter(changes.drain());
        entry.allowed_compaction = entry.since().to_owned();

        let mut pass = Pass::new();
        let mut held_at = ChangeBatch::new();
        held_at.extend(entry.since().iter().map(|t| (*t, 1)));
        for dependency in &entry.dependencies {
            if let Some(held) = self.collections.get_mut(dependency) {
                pass.push(*dependency, held, held_at.clone());
            }
        }
        let since = entry.since().to_owned();
        let upper = entry.upper.clone();
        let has_shard = entry.has_shard;
        self.collections.insert(id, entry);
        // Holding at or beyond each dependency's since moves no frontier.
        let mut effects = self.finish(pass);
        if has_shard && since != config.since {
            effects.push(Effect::DowngradeSince {
                id,
                since: since.clone(),
            });
        }
        effects.push(Effect::RecordFrontiers { id, since, upper });
        Ok(effects)
    }

    /// Applies upper reports. An upper only advances; a report that does not advance
    /// it, or that names an unknown or dropped id, is ignored.
    pub fn update_write_frontiers(
        &mut self,
        updates: &[(GlobalId, Antichain<T>)],
    ) -> Vec<Effect<T>> {
        let mut pass = Pass::new();
        for (id, upper) in updates {
            self.advance_live_upper(&mut pass, *id, upper);
        }
        self.finish(pass)
    }

    /// Like [`Self::update_write_frontiers`] for several batches of reports in one
    /// pass, and removes from each batch the reports about unknown or dropped ids, so
    /// that what is left is what a caller should hear of. One pass over a backlog of
    /// batches reports each id's frontiers once, however many batches moved them.
    pub fn apply_write_frontiers<'a>(
        &mut self,
        batches: impl IntoIterator<Item = &'a mut Vec<(GlobalId, Antichain<T>)>>,
    ) -> Vec<Effect<T>>
    where
        T: 'a,
    {
        let mut pass = Pass::new();
        for updates in batches {
            updates.retain(|(id, upper)| self.advance_live_upper(&mut pass, *id, upper));
        }
        self.finish(pass)
    }

    /// Applies one upper report to `id` in `pass` if it is live; returns whether it is.
    fn advance_live_upper(&mut self, pass: &mut Pass, id: GlobalId, upper: &Antichain<T>) -> bool {
        match self.collections.get_mut(&id) {
            Some(entry) if !entry.dropped => {
                advance_upper(pass, id, entry, upper);
                true
            }
            _ => false,
        }
    }

    /// Replaces read policies. The implied capability advances to the new policy's
    /// advice if that is beyond it, and otherwise stays until the upper catches up.
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] if any id is unknown or dropped; then no
    /// policy changes.
    pub fn set_read_policies(
        &mut self,
        policies: Vec<(GlobalId, ReadPolicy<T>)>,
    ) -> Result<Vec<Effect<T>>, StorageError<T>> {
        for (id, _) in &policies {
            self.live(*id)?;
        }
        let mut pass = Pass::new();
        for (id, policy) in policies {
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            pass.touch(id, entry);
            entry.read_policy = policy;
            let changes = entry.rederive_capabilities();
            pass.push(id, entry, changes);
        }
        Ok(self.finish(pass))
    }

    /// Applies changes to external read holds, as read holds send them when they are
    /// acquired, cloned, downgraded or dropped.
    ///
    /// # Errors
    ///
    /// Nothing changes if any batch is invalid:
    /// - [`StorageError::IdentifierMissing`]: a non-empty batch for an unknown id;
    /// - [`StorageError::ReadBeforeSince`]: a new hold at a time before the since;
    /// - [`StorageError::InvalidUsage`]: a release without a matching hold, or more
    ///   than `i64::MAX / 4` holds at one time.
    pub fn update_read_capabilities(
        &mut self,
        mut updates: BTreeMap<GlobalId, ChangeBatch<T>>,
    ) -> Result<Vec<Effect<T>>, StorageError<T>> {
        for (id, batch) in &mut updates {
            if batch.is_empty() {
                continue;
            }
            let entry = self
                .collections
                .get(id)
                .ok_or(StorageError::IdentifierMissing(*id))?;
            for (time, diff) in batch.iter() {
                entry
                    .check_hold_change(time, *diff)
                    .map_err(|error| match error {
                        HoldChangeError::BeforeSince => StorageError::ReadBeforeSince {
                            id: *id,
                            since: entry.since().to_owned(),
                        },
                        HoldChangeError::Unmatched => StorageError::InvalidUsage(format!(
                            "read hold change of {diff} at {time} for {id} has no matching hold"
                        )),
                        HoldChangeError::TooMany => StorageError::InvalidUsage(format!(
                            "read hold change of {diff} at {time} for {id} exceeds {MAX_HOLDS} holds"
                        )),
                    })?;
            }
        }
        let mut pass = Pass::new();
        for (id, mut batch) in updates {
            let Some(entry) = self.collections.get_mut(&id) else {
                continue;
            };
            for (time, diff) in batch.iter() {
                entry.record_hold_change(*time, *diff);
            }
            pass.push(id, entry, batch);
        }
        Ok(self.finish(pass))
    }

    /// Acquires one read hold per id, at the id's current since, and returns the
    /// frontiers held. A hold at the since moves no frontier, so there are no effects.
    /// The caller releases a hold with [`Self::update_read_capabilities`].
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] if any id is unknown or dropped; then no
    /// hold is taken.
    pub fn acquire_read_holds(
        &mut self,
        ids: &[GlobalId],
    ) -> Result<Vec<(GlobalId, Antichain<T>)>, StorageError<T>> {
        for id in ids {
            self.live(*id)?;
        }
        let mut holds = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(entry) = self.collections.get_mut(id) else {
                continue;
            };
            let since = entry.since().to_owned();
            add_hold(entry, &since);
            holds.push((*id, since));
        }
        Ok(holds)
    }

    /// Acquires a read hold on `id` at `frontier`, which must not be before the since.
    ///
    /// # Errors
    ///
    /// - [`StorageError::IdentifierMissing`] if `id` is unknown or dropped;
    /// - [`StorageError::ReadBeforeSince`] if `frontier` is before the since.
    pub fn acquire_read_hold_at(
        &mut self,
        id: GlobalId,
        frontier: &Antichain<T>,
    ) -> Result<(), StorageError<T>> {
        self.check_readable(id, frontier)?;
        if let Some(entry) = self.collections.get_mut(&id) {
            add_hold(entry, frontier);
        }
        Ok(())
    }

    /// Drops collections: their policies release through the empty frontier, which
    /// propagates to their dependencies.
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] if any id is unknown or already dropped;
    /// then nothing is dropped.
    pub fn drop_collections(
        &mut self,
        ids: &[GlobalId],
    ) -> Result<Vec<Effect<T>>, StorageError<T>> {
        for id in ids {
            self.live(*id)?;
        }
        Ok(self.drop_collections_unvalidated(ids))
    }

    /// Like [`Self::drop_collections`], but ignores unknown and already dropped ids.
    pub fn drop_collections_unvalidated(&mut self, ids: &[GlobalId]) -> Vec<Effect<T>> {
        let mut pass = Pass::new();
        for id in ids {
            let Some(entry) = self.collections.get_mut(id) else {
                continue;
            };
            if entry.dropped {
                continue;
            }
            pass.touch(*id, entry);
            let changes = entry.release_policies();
            pass.push(*id, entry, changes);
        }
        self.finish(pass)
    }

    /// Records that every replica running a dropped object has confirmed the drop,
    /// which lets its shard be finalized once its since is `[]`. Ids that are unknown,
    /// not dropped or not on an instance are ignored: such confirmations are late or
    /// spurious replica messages.
    pub fn confirm_dropped(&mut self, ids: &[GlobalId]) -> Vec<Effect<T>> {
        let mut pass = Pass::new();
        for id in ids {
            let Some(entry) = self.collections.get_mut(id) else {
                continue;
            };
            if entry.dropped && entry.instance.is_some() {
                pass.touch(*id, entry);
                entry.drop_confirmed = true;
            }
        }
        self.finish(pass)
    }

    /// Marks the live entry `id` as running on `instance`, as a remap collection does
    /// once its ingestion exists. From then on its since changes go out as
    /// `AllowCompaction`, starting from its current since. Unknown or dropped ids, and
    /// entries already on an instance, are left as they are; returns whether it changed.
    pub fn set_instance(&mut self, id: GlobalId, instance: InstanceId) -> bool {
        match self.collections.get_mut(&id) {
            Some(entry) if !entry.dropped && entry.instance.is_none() => {
                entry.instance = Some(instance);
                entry.allowed_compaction = entry.since().to_owned();
                true
            }
            _ => false,
        }
    }

    /// The entry for `id` if it is registered and not dropped.
    fn live(&self, id: GlobalId) -> Result<&CollectionFrontierState<T>, StorageError<T>> {
        match self.collections.get(&id) {
            Some(entry) if !entry.dropped => Ok(entry),
            _ => Err(StorageError::IdentifierMissing(id)),
        }
    }
}

/// Moves a live entry's upper to `upper` if that advances it. The first advance in a
/// pass derives the implied capabilities at once; later ones (a backlog of reports)
/// leave that to the end of the pass, once: policies are monotone in a non-empty
/// upper, so deriving from the last one is the same as deriving after each. A policy
/// gives no advice for the empty upper, so before an upper closes, the capabilities
/// catch up with the last open one.
fn advance_upper<T: StorageTimestamp>(
    pass: &mut Pass,
    id: GlobalId,
    entry: &mut CollectionFrontierState<T>,
    upper: &Antichain<T>,
) {
    if !frontier_advances(&entry.upper, upper) {
        return;
    }
    pass.touch(id, entry);
    if !entry.upper_moved {
        entry.upper_moved = true;
        set_frontier(&mut entry.upper, upper);
        let changes = entry.rederive_capabilities();
        pass.push(id, entry, changes);
        return;
    }
    if upper.is_empty() && entry.derive_pending {
        let changes = entry.rederive_capabilities();
        pass.push(id, entry, changes);
    }
    set_frontier(&mut entry.upper, upper);
    pass.defer_derivation(id, entry);
}

/// Adds one external hold at `frontier`, which is not before the entry's since, so the
/// since does not move.
fn add_hold<T: StorageTimestamp>(entry: &mut CollectionFrontierState<T>, frontier: &Antichain<T>) {
    for time in frontier.iter() {
        entry.record_hold_change(*time, 1);
    }
    entry
        .read_capabilities
        .update_iter(frontier.iter().map(|t| (*t, 1)));
}
