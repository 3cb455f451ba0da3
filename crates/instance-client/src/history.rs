//! [`CommandHistory`]: the reducible log of commands replayed to every new or
//! reconnecting replica.
//!
//! Reduction is a pure function ([`reduce`]) over plain data, plus the history's
//! knowledge of which objects are still *live* (see below).
//!
//! # Live objects and the length bound
//!
//! An object stays live for the history until the instance knows that every replica
//! has confirmed its drop: from the `RunIngestion` or `RunSink` that names it until each
//! id it owns has been compacted to `[]` and then passed to
//! [`CommandHistory::forget_dropped`] (the [`Instance`](crate::Instance) does that when
//! a `DroppedId` becomes final). While a drop is unconfirmed, reductions keep its final
//! `AllowCompaction(id, [])`, so a reconnecting replica still learns of the drop; once
//! it is forgotten they leave it out.
//!
//! [`CommandHistory::live`] counts the live objects, weighted: an ingestion counts once
//! for itself and once per collection it writes (its id, its remap collection and its
//! exports), a sink once. A reduced history holds at most `live + 4` commands (one
//! `Run*` per live object, one compaction per live collection, and Hello, configuration
//! and the two flags).
//!
//! # The trigger, and why it is amortised O(1)
//!
//! After every [`CommandHistory::push`] and [`CommandHistory::forget_dropped`] the
//! history reduces if `len > 2 * live + REDUCE_SLACK`, so at all times
//! `len <= 2 * live + 32`.
//!
//! A reduction costs O(len) (times a log factor for the maps). When it runs,
//! `len >= 2 * live + 33`, and it leaves at most `live + 4` commands, so it removes at
//! least `live + 29` of them: more than half of what it read. Its work is therefore at
//! most twice the number of commands it removes, and as each pushed command is removed
//! at most once, the total work of all triggered reductions is at most twice the number
//! of pushes, however `live` moves in between (a mass drop followed by its
//! confirmations included). A reduction that would remove little cannot trigger: it
//! only runs when at least half the history is garbage.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{Antichain, GlobalId, StorageTimestamp};

use crate::protocol::{ReplicaParameters, RunIngestionCommand, RunSinkCommand, StorageCommand};

mod live;

use live::LiveSet;

/// Slack added to the reduction trigger, so tiny histories do not reduce on every push.
/// It must exceed 8 for the amortisation argument in the module docs.
const REDUCE_SLACK: usize = 32;

/// The log of commands sent to an instance, kept reducible.
///
/// # Invariants
///
/// - Replaying [`CommandHistory::iter`] to a fresh replica leaves it running the same
///   objects with the same compaction frontiers, configuration and flags as replaying
///   every command ever pushed.
/// - The final compaction of a dropped id stays until the id is passed to
///   [`CommandHistory::forget_dropped`].
/// - After every push or forget, `len() <= 2 * live() + 32`; a reduced history holds at
///   most `live() + 4` commands. See the module docs for `live` and the amortisation.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Antichain, GlobalId, Timestamp};
/// use strata_instance_client::{CommandHistory, StorageCommand};
///
/// let mut history = CommandHistory::<Timestamp>::new();
/// history.push(StorageCommand::AllowWrites);
/// history.push(StorageCommand::InitializationComplete);
/// history.push(StorageCommand::AllowWrites);
/// // A compaction of an id that nothing runs is dropped.
/// history.push(StorageCommand::AllowCompaction { id: GlobalId::User(9), frontier: Antichain::new() });
/// history.reduce();
/// let kinds: Vec<_> = history.iter().map(|c| c.kind()).collect();
/// assert_eq!(kinds, ["initialization-complete", "allow-writes"]);
/// ```
#[derive(Debug, Clone)]
pub struct CommandHistory<T> {
    commands: Vec<StorageCommand<T>>,
    live: LiveSet,
    /// Commands read by reductions so far: the measure of their total work.
    reduction_work: u64,
}

impl<T: StorageTimestamp> Default for CommandHistory<T> {
    fn default() -> Self {
        CommandHistory::new()
    }
}

impl<T: StorageTimestamp> CommandHistory<T> {
    /// An empty history.
    pub fn new() -> Self {
        CommandHistory {
            commands: Vec::new(),
            live: LiveSet::default(),
            reduction_work: 0,
        }
    }

    /// Appends a command, reducing when the history has grown past its trigger.
    pub fn push(&mut self, command: StorageCommand<T>) {
        self.live.observe(&command);
        self.commands.push(command);
        self.reduce_if_needed();
    }

    /// Records that every replica has confirmed the drop of each of `ids` (ids that
    /// were compacted to `[]`). Their final compactions are left out from the next
    /// reduction on, and an object stops being live once all its ids are forgotten.
    /// Ids that are unknown, or not compacted to `[]`, are ignored.
    pub fn forget_dropped(&mut self, ids: impl IntoIterator<Item = GlobalId>) {
        for id in ids {
            self.live.forget(id);
        }
        self.reduce_if_needed();
    }

    /// Reduces the history now. See [`reduce`] for what it keeps; on top of that, the
    /// final compactions of dropped ids stay until [`CommandHistory::forget_dropped`].
    pub fn reduce(&mut self) {
        let commands = std::mem::take(&mut self.commands);
        self.reduction_work += commands.len() as u64;
        let live = &self.live;
        self.commands = reduce_with(commands, |id, _| live.is_pending(id));
    }

    fn reduce_if_needed(&mut self) {
        if self.commands.len() > self.trigger() {
            self.reduce();
        }
    }

    /// The length past which the history reduces: `2 * live + REDUCE_SLACK`. See the
    /// module docs for why this keeps the reduction work amortised O(1) per push.
    fn trigger(&self) -> usize {
        2 * self.live.weight() + REDUCE_SLACK
    }

    /// The weighted count of live objects that bounds the length; see the module docs.
    pub fn live(&self) -> usize {
        self.live.weight()
    }

    /// The commands, in replay order once reduced.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &StorageCommand<T>> {
        self.commands.iter()
    }

    /// The number of commands held.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether no command is held.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// The frontier that is beyond both `a` and `b`: their least upper bound.
pub fn join_frontiers<T: StorageTimestamp>(a: &Antichain<T>, b: &Antichain<T>) -> Antichain<T> {
    let mut out = Antichain::new();
    for x in a.elements() {
        for y in b.elements() {
            out.insert(x.join(y));
        }
    }
    out
}

/// Everything a history says, folded: the state that [`reduce`] writes back out.
struct Folded<T> {
    hello: Option<StorageCommand<T>>,
    config: Option<ReplicaParameters>,
    ingestions: BTreeMap<GlobalId, RunIngestionCommand<T>>,
    sinks: BTreeMap<GlobalId, RunSinkCommand<T>>,
    compactions: BTreeMap<GlobalId, Antichain<T>>,
    initialization_complete: bool,
    allow_writes: bool,
}

fn fold<T: StorageTimestamp>(commands: Vec<StorageCommand<T>>) -> Folded<T> {
    let mut f = Folded {
        hello: None,
        config: None,
        ingestions: BTreeMap::new(),
        sinks: BTreeMap::new(),
        compactions: BTreeMap::new(),
        initialization_complete: false,
        allow_writes: false,
    };
    for command in commands {
        match command {
            hello @ StorageCommand::Hello { .. } => f.hello = Some(hello),
            StorageCommand::InitializationComplete => f.initialization_complete = true,
            StorageCommand::AllowWrites => f.allow_writes = true,
            StorageCommand::UpdateConfiguration(params) => f
                .config
                .get_or_insert_with(ReplicaParameters::default)
                .update(params),
            StorageCommand::RunIngestion(run) => {
                f.ingestions.insert(run.id, run);
            }
            StorageCommand::RunSink(run) => {
                // A sink (re)starts at its description's as_of; earlier compactions only
                // matter if they dropped it.
                if f.compactions.get(&run.id).is_some_and(|c| !c.is_empty()) {
                    f.compactions.remove(&run.id);
                }
                f.sinks.insert(run.id, run);
            }
            StorageCommand::AllowCompaction { id, frontier } => {
                let joined = match f.compactions.get(&id) {
                    Some(old) => join_frontiers(old, &frontier),
                    None => frontier,
                };
                f.compactions.insert(id, joined);
            }
        }
    }
    f
}

/// Reduces a sequence of commands to an equivalent, shorter one, in replay order:
/// Hello, configuration, ingestions, sinks, compactions, then `InitializationComplete`
/// and `AllowWrites`.
///
/// It keeps:
/// - the last `Hello`, and one merged `UpdateConfiguration`;
/// - the latest `RunIngestion` per id, unless its own id is compacted to `[]` (which
///   stops all of it on a replica); the final compactions of its collections (its id,
///   exports and remap collection) are kept either way, so a replica still running a
///   dropped ingestion learns of the drop;
/// - the latest `RunSink` per id, with the compactions sent after it absorbed into its
///   `as_of` (a `RunSink` restarts a sink at its `as_of`); a sink compacted to `[]` is
///   left out and its final compaction kept;
/// - no other compactions: an id that nothing in `commands` runs needs none (so this
///   function alone keeps the final compactions of dropped objects for one reduction;
///   a [`CommandHistory`] keeps them until their drop is confirmed);
/// - `InitializationComplete` and `AllowWrites` once each, if they were ever sent.
///
/// Compactions of one id are joined, as a replica never lets a since regress.
pub fn reduce<T: StorageTimestamp>(commands: Vec<StorageCommand<T>>) -> Vec<StorageCommand<T>> {
    reduce_with(commands, |_, has_run| has_run)
}

/// [`reduce`], asking `keep_final(id, has_run)` whether to keep a compaction of `id` to
/// `[]` that no kept `Run*` needs; `has_run` says whether `commands` runs `id`'s object.
fn reduce_with<T: StorageTimestamp>(
    commands: Vec<StorageCommand<T>>,
    keep_final: impl Fn(GlobalId, bool) -> bool,
) -> Vec<StorageCommand<T>> {
    let f = fold(commands);
    let mut out = Vec::new();
    out.extend(f.hello);
    if let Some(config) = f.config.filter(|c| !c.is_empty()) {
        out.push(StorageCommand::UpdateConfiguration(config));
    }
    let mut kept_compactions = BTreeSet::new();
    let mut ran = BTreeSet::new();
    for (id, run) in f.ingestions {
        let collections = run.collection_ids();
        let is_final = |c: &GlobalId| f.compactions.get(c).is_some_and(|f| f.is_empty());
        // The ingestion's own final compaction stops all of it, as a replica does: what
        // stays is the final compactions of its collections still awaiting confirmation.
        let present = collections.iter().filter(|c| f.compactions.contains_key(c));
        if is_final(&id) {
            kept_compactions.extend(present.filter(|c| is_final(c) && keep_final(**c, true)));
        } else {
            kept_compactions.extend(present);
            debug_assert_eq!(id, run.id);
            out.push(StorageCommand::RunIngestion(run));
        }
        ran.extend(collections);
    }
    for (id, mut run) in f.sinks {
        ran.insert(id);
        match f.compactions.get(&id) {
            Some(frontier) if frontier.is_empty() => {
                if keep_final(id, true) {
                    kept_compactions.insert(id);
                }
            }
            Some(frontier) => {
                run.description.as_of = join_frontiers(&run.description.as_of, frontier);
                out.push(StorageCommand::RunSink(run));
            }
            None => out.push(StorageCommand::RunSink(run)),
        }
    }
    for (id, frontier) in f.compactions {
        let stray_final = frontier.is_empty() && !ran.contains(&id) && keep_final(id, false);
        if kept_compactions.contains(&id) || stray_final {
            out.push(StorageCommand::AllowCompaction { id, frontier });
        }
    }
    if f.initialization_complete {
        out.push(StorageCommand::InitializationComplete);
    }
    if f.allow_writes {
        out.push(StorageCommand::AllowWrites);
    }
    out
}

#[cfg(test)]
mod tests;
