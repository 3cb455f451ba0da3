//! [`CommandHistory`]: the reducible log of commands replayed to every new or
//! reconnecting replica.
//!
//! Reduction is a pure function ([`reduce`]) over plain data. A history calls it when
//! its length exceeds twice the length it had after the previous reduction plus a
//! constant, so each push costs amortised O(1) reduction work.

use std::collections::{BTreeMap, BTreeSet};

use strata_controller_api::{Antichain, GlobalId, StorageTimestamp};

use crate::protocol::{RunIngestionCommand, RunSinkCommand, StorageCommand, StorageParameters};

/// Slack added to the reduction trigger, so tiny histories do not reduce on every push.
const REDUCE_SLACK: usize = 32;

/// The log of commands sent to an instance, kept reducible.
///
/// # Invariants
///
/// - Replaying [`CommandHistory::iter`] to a fresh replica leaves it running the same
///   objects with the same compaction frontiers, configuration and flags as replaying
///   every command ever pushed.
/// - After a reduction the history holds the commands of the live objects (at most
///   one `RunIngestion` or `RunSink` per object and one compaction per collection),
///   at most four more (Hello, configuration and the two flags), and the final
///   compactions of objects dropped since the previous reduction.
/// - At any time `len() <= 2 * live + tombstones + 32`, where `live` and `tombstones`
///   are those two parts as of the last reduction. A window between reductions is at
///   most `live + 32` commands long, so the tombstones are bounded by it too.
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
    /// Commands for live objects after the last reduction.
    reduced_live: usize,
    /// Final compactions of dropped objects kept by the last reduction.
    reduced_tombstones: usize,
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
            reduced_live: 0,
            reduced_tombstones: 0,
        }
    }

    /// Appends a command, reducing when the history has grown past its trigger.
    pub fn push(&mut self, command: StorageCommand<T>) {
        self.commands.push(command);
        if self.commands.len() > self.trigger() {
            self.reduce();
        }
    }

    /// Reduces the history now. See the module docs for what it keeps.
    pub fn reduce(&mut self) {
        let commands = std::mem::take(&mut self.commands);
        let (reduced, tombstones) = reduce_counting(commands);
        self.commands = reduced;
        self.reduced_tombstones = tombstones;
        self.reduced_live = self.commands.len() - tombstones;
    }

    /// The length past which a push reduces: twice the live commands of the last
    /// reduction, plus the final compactions it kept (which the next reduction drops),
    /// plus a constant. Between reductions the history therefore at least doubles its
    /// live part, which makes the reduction work per push amortised O(1).
    fn trigger(&self) -> usize {
        2 * self.reduced_live + self.reduced_tombstones + REDUCE_SLACK
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
    config: Option<StorageParameters>,
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
                .get_or_insert_with(StorageParameters::default)
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
/// - the latest `RunIngestion` per id, unless every collection it writes (its id, its
///   exports and its remap collection) is compacted to `[]`; the compactions of those
///   collections are kept either way, so a replica still running a dropped ingestion
///   learns of the drop;
/// - the latest `RunSink` per id, with the compactions sent after it absorbed into its
///   `as_of` (a `RunSink` restarts a sink at its `as_of`); a sink compacted to `[]` is
///   left out and its final compaction kept;
/// - no other compactions: an id that nothing running writes needs none (the final
///   compactions of dropped objects are therefore kept by one reduction only);
/// - `InitializationComplete` and `AllowWrites` once each, if they were ever sent.
///
/// Compactions of one id are joined, as a replica never lets a since regress.
pub fn reduce<T: StorageTimestamp>(commands: Vec<StorageCommand<T>>) -> Vec<StorageCommand<T>> {
    reduce_counting(commands).0
}

/// [`reduce`], also returning how many final compactions of dropped objects it kept.
fn reduce_counting<T: StorageTimestamp>(
    commands: Vec<StorageCommand<T>>,
) -> (Vec<StorageCommand<T>>, usize) {
    let f = fold(commands);
    let mut tombstones = 0;
    let mut out = Vec::new();
    out.extend(f.hello);
    if let Some(config) = f.config.filter(|c| !c.is_empty()) {
        out.push(StorageCommand::UpdateConfiguration(config));
    }
    let mut kept_compactions = BTreeSet::new();
    for (id, run) in f.ingestions {
        let collections = run.collection_ids();
        let dropped = collections.iter().all(|c| {
            f.compactions
                .get(c)
                .is_some_and(|frontier| frontier.is_empty())
        });
        kept_compactions.extend(collections.iter().filter(|c| f.compactions.contains_key(c)));
        if dropped {
            tombstones += collections.len();
        } else {
            debug_assert_eq!(id, run.id);
            out.push(StorageCommand::RunIngestion(run));
        }
    }
    for (id, mut run) in f.sinks {
        match f.compactions.get(&id) {
            Some(frontier) if frontier.is_empty() => {
                kept_compactions.insert(id);
                tombstones += 1;
            }
            Some(frontier) => {
                run.description.as_of = join_frontiers(&run.description.as_of, frontier);
                out.push(StorageCommand::RunSink(run));
            }
            None => out.push(StorageCommand::RunSink(run)),
        }
    }
    for (id, frontier) in f.compactions {
        if kept_compactions.contains(&id) {
            out.push(StorageCommand::AllowCompaction { id, frontier });
        }
    }
    if f.initialization_complete {
        out.push(StorageCommand::InitializationComplete);
    }
    if f.allow_writes {
        out.push(StorageCommand::AllowWrites);
    }
    (out, tombstones)
}

#[cfg(test)]
mod tests;
