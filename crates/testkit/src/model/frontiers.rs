//! [`FrontierModel`]: the simplest statement of frontier and read-hold semantics.
//!
//! A frontier is an `Option<T>`: `Some(t)` is `[t]` and `None` is `[]`, the top. Only
//! totally ordered timestamps are modelled, which is all Strata uses. Nothing is
//! incremental: every since is recomputed from scratch, from the list of outstanding
//! holds, the policies' capabilities and the dependency edges, whenever it is asked for.

use std::collections::BTreeMap;

use strata_controller_api::{Antichain, GlobalId, ReadPolicy, StorageTimestamp};

/// A frontier of a totally ordered time: `None` is the empty frontier `[]`.
pub type Frontier<T> = Option<T>;

/// The lesser of two frontiers (`[]` is the greatest).
pub fn meet<T: Ord>(a: Frontier<T>, b: Frontier<T>) -> Frontier<T> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(a.min(b)),
    }
}

/// The greater of two frontiers (`[]` is the greatest).
pub fn join<T: Ord>(a: Frontier<T>, b: Frontier<T>) -> Frontier<T> {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    }
}

/// Converts a frontier of a totally ordered time, which has at most one element.
pub fn from_antichain<T: StorageTimestamp>(frontier: &Antichain<T>) -> Frontier<T> {
    frontier.iter().min().copied()
}

/// Converts back to an antichain.
pub fn to_antichain<T: StorageTimestamp>(frontier: Frontier<T>) -> Antichain<T> {
    frontier.into_iter().collect()
}

/// A refusal, named after the rule that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelError {
    /// The id is registered already.
    Reused(GlobalId),
    /// The id is unknown, finalized or dropped.
    Missing(GlobalId),
    /// A hold before the since.
    BeforeSince(GlobalId),
    /// The dependencies would form a cycle.
    Cycle(GlobalId),
}

/// The identity of one outstanding read hold in the model.
pub type HoldId = u64;

/// How to register an entry in the model.
#[derive(Debug, Clone)]
pub struct ModelConfig<T> {
    /// The requested since.
    pub since: Frontier<T>,
    /// The initial upper.
    pub upper: Frontier<T>,
    /// The entries this one holds at its since.
    pub dependencies: Vec<GlobalId>,
    /// The caller's policy.
    pub read_policy: ReadPolicy<T>,
    /// The controller's own policy, if any.
    pub hold_policy: Option<ReadPolicy<T>>,
    /// Whether finalization waits for a drop confirmation (an object on an instance).
    pub on_instance: bool,
    /// Whether the entry has a shard; one without (a sink) is complete once its upper
    /// is `[]`, and then holds nothing.
    pub has_shard: bool,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    upper: Frontier<T>,
    read_policy: ReadPolicy<T>,
    hold_policy: Option<ReadPolicy<T>>,
    implied: Frontier<T>,
    held: Frontier<T>,
    dependencies: Vec<GlobalId>,
    on_instance: bool,
    has_shard: bool,
    dropped: bool,
    confirmed: bool,
}

/// The reference model of frontier and read-hold semantics.
#[derive(Debug, Clone, Default)]
pub struct FrontierModel<T> {
    entries: BTreeMap<GlobalId, Entry<T>>,
    holds: BTreeMap<HoldId, (GlobalId, T)>,
    next_hold: HoldId,
    finalized: Vec<GlobalId>,
}

impl<T: StorageTimestamp> FrontierModel<T> {
    /// An empty model.
    pub fn new() -> Self {
        FrontierModel {
            entries: BTreeMap::new(),
            holds: BTreeMap::new(),
            next_hold: 0,
            finalized: Vec::new(),
        }
    }

    /// The since of `id`: the meet of its policies' capabilities, its outstanding
    /// holds, and the since of every entry that depends on it.
    pub fn since(&self, id: GlobalId) -> Option<Frontier<T>> {
        let entry = self.entries.get(&id)?;
        let mut since = meet(entry.implied, entry.held);
        for (holder, time) in self.holds.values() {
            if *holder == id {
                since = meet(since, Some(*time));
            }
        }
        for (other, dependent) in &self.entries {
            if dependent.dependencies.contains(&id) {
                since = meet(since, self.since(*other).flatten());
            }
        }
        Some(since)
    }

    /// The upper of `id`.
    pub fn upper(&self, id: GlobalId) -> Option<Frontier<T>> {
        self.entries.get(&id).map(|entry| entry.upper)
    }

    /// Whether `id` is registered (dropped or not).
    pub fn contains(&self, id: GlobalId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Whether `id` is registered and dropped.
    pub fn is_dropped(&self, id: GlobalId) -> bool {
        self.entries.get(&id).is_some_and(|entry| entry.dropped)
    }

    /// Every registered id, ascending.
    pub fn ids(&self) -> Vec<GlobalId> {
        self.entries.keys().copied().collect()
    }

    /// Every id finalized so far, in order.
    pub fn finalized(&self) -> &[GlobalId] {
        &self.finalized
    }

    /// Every outstanding hold: its id, the entry it holds, and the time it holds.
    pub fn holds(&self) -> Vec<(HoldId, GlobalId, T)> {
        self.holds
            .iter()
            .map(|(h, (id, t))| (*h, *id, *t))
            .collect()
    }

    /// One outstanding hold.
    pub fn hold(&self, hold: HoldId) -> Option<(GlobalId, T)> {
        self.holds.get(&hold).copied()
    }

    /// Registers `id`.
    pub fn register(&mut self, id: GlobalId, config: ModelConfig<T>) -> Result<(), ModelError> {
        if self.entries.contains_key(&id) {
            return Err(ModelError::Reused(id));
        }
        let mut since = config.since;
        for dependency in &config.dependencies {
            self.live(*dependency)?;
            since = join(since, self.since(*dependency).flatten());
        }
        let held = if config.hold_policy.is_some() {
            since
        } else {
            None
        };
        let entry = Entry {
            upper: config.upper,
            read_policy: config.read_policy,
            hold_policy: config.hold_policy,
            implied: since,
            held,
            dependencies: config.dependencies,
            on_instance: config.on_instance,
            has_shard: config.has_shard,
            dropped: false,
            confirmed: false,
        };
        self.entries.insert(id, entry);
        self.settle();
        Ok(())
    }

    /// Replaces the dependencies of a live entry. Each new dependency must be live, not
    /// have a since beyond the entry's, and not depend (transitively) on the entry.
    pub fn set_dependencies(
        &mut self,
        id: GlobalId,
        dependencies: Vec<GlobalId>,
    ) -> Result<(), ModelError> {
        self.live(id)?;
        let since = self.since(id).flatten();
        for dependency in &dependencies {
            self.live(*dependency)?;
            if join(self.since(*dependency).flatten(), since) != since {
                return Err(ModelError::BeforeSince(*dependency));
            }
            if self.depends_on(*dependency, id) {
                return Err(ModelError::Cycle(*dependency));
            }
        }
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.dependencies = dependencies;
        }
        self.settle();
        Ok(())
    }

    /// Whether `to` is `from` or reachable from it through dependencies.
    fn depends_on(&self, from: GlobalId, to: GlobalId) -> bool {
        from == to
            || self
                .entries
                .get(&from)
                .is_some_and(|entry| entry.dependencies.iter().any(|d| self.depends_on(*d, to)))
    }

    /// An upper report: ignored unless it advances a live entry's upper.
    pub fn report_upper(&mut self, id: GlobalId, upper: Frontier<T>) {
        if let Some(entry) = self.entries.get_mut(&id)
            && !entry.dropped
            && join(entry.upper, upper) == upper
        {
            entry.upper = upper;
        }
        self.settle();
    }

    /// Replaces the read policy of a live entry.
    pub fn set_read_policy(
        &mut self,
        id: GlobalId,
        policy: ReadPolicy<T>,
    ) -> Result<(), ModelError> {
        self.live(id)?;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.read_policy = policy;
        }
        self.settle();
        Ok(())
    }

    /// Takes a hold on a live entry at its since. `Ok(None)` when the since is `[]`,
    /// as there is then nothing to hold.
    pub fn acquire(&mut self, id: GlobalId) -> Result<Option<HoldId>, ModelError> {
        self.live(id)?;
        Ok(self
            .since(id)
            .flatten()
            .map(|since| self.insert_hold(id, since)))
    }

    /// Takes a hold on a live entry at `time`, which must not be before the since.
    pub fn acquire_at(&mut self, id: GlobalId, time: T) -> Result<HoldId, ModelError> {
        self.live(id)?;
        match self.since(id).flatten() {
            Some(since) if since <= time => Ok(self.insert_hold(id, time)),
            _ => Err(ModelError::BeforeSince(id)),
        }
    }

    /// Moves a hold forward to `time` (or releases it, for `None`); a time behind the
    /// hold leaves it where it is.
    pub fn downgrade(&mut self, hold: HoldId, time: Frontier<T>) {
        match (self.holds.get_mut(&hold), time) {
            (Some(_), None) => {
                self.holds.remove(&hold);
            }
            (Some((_, held)), Some(time)) => *held = (*held).max(time),
            (None, _) => {}
        }
        self.settle();
    }

    /// Releases a hold.
    pub fn release(&mut self, hold: HoldId) {
        self.downgrade(hold, None);
    }

    /// Drops a live entry.
    pub fn drop_collection(&mut self, id: GlobalId) -> Result<(), ModelError> {
        self.live(id)?;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.dropped = true;
            entry.implied = None;
            entry.held = None;
        }
        self.settle();
        Ok(())
    }

    /// Confirms the drop of an entry on an instance; anything else is ignored.
    pub fn confirm_dropped(&mut self, id: GlobalId) {
        if let Some(entry) = self.entries.get_mut(&id)
            && entry.dropped
            && entry.on_instance
        {
            entry.confirmed = true;
        }
        self.settle();
    }

    fn live(&self, id: GlobalId) -> Result<(), ModelError> {
        match self.entries.get(&id) {
            Some(entry) if !entry.dropped => Ok(()),
            _ => Err(ModelError::Missing(id)),
        }
    }

    fn insert_hold(&mut self, id: GlobalId, time: T) -> HoldId {
        let hold = self.next_hold;
        self.next_hold += 1;
        self.holds.insert(hold, (id, time));
        hold
    }

    /// Advances every live entry's capabilities to its policies' advice, then forgets
    /// every dropped entry whose since is `[]` (and whose drop, on an instance, is
    /// confirmed).
    fn settle(&mut self) {
        for entry in self.entries.values_mut().filter(|entry| !entry.dropped) {
            if !entry.has_shard && entry.upper.is_none() {
                // Complete: it will read nothing more.
                entry.implied = None;
                entry.held = None;
                continue;
            }
            let upper = to_antichain(entry.upper);
            entry.implied = join(
                entry.implied,
                from_antichain(&entry.read_policy.frontier(upper.borrow())),
            );
            if let Some(policy) = &entry.hold_policy {
                entry.held = join(entry.held, from_antichain(&policy.frontier(upper.borrow())));
            }
        }
        let finalizable: Vec<GlobalId> = self
            .entries
            .iter()
            .filter(|(id, entry)| {
                entry.dropped
                    && (!entry.on_instance || entry.confirmed)
                    && self.since(**id) == Some(None)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in finalizable {
            self.entries.remove(&id);
            self.finalized.push(id);
        }
    }
}
