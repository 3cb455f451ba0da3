use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_controller_api::{Antichain, GlobalId, Timestamp};

use super::{CommandHistory, REDUCE_SLACK, join_frontiers, reduce};
use crate::protocol::{ReplicaParameters, RunIngestionCommand, RunSinkCommand, StorageCommand};
use crate::testing::{compact, config, frontier, ingestion, sink};

type Cmd = StorageCommand<Timestamp>;

fn hello(epoch: u64) -> Cmd {
    StorageCommand::Hello {
        nonce: epoch * 10,
        epoch,
    }
}

fn check(input: Vec<Cmd>, expected: Vec<Cmd>) {
    assert_eq!(reduce(input), expected);
}

#[test]
fn keeps_the_last_hello() {
    check(vec![hello(1), hello(2)], vec![hello(2)]);
}

#[test]
fn merges_configuration() {
    let merged = ReplicaParameters {
        params: [
            ("a".to_owned(), "3".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]
        .into_iter()
        .collect(),
    };
    check(
        vec![config("a", "1"), config("b", "2"), config("a", "3")],
        vec![StorageCommand::UpdateConfiguration(merged)],
    );
}

#[test]
fn keeps_the_latest_ingestion_per_id() {
    let mut altered = ingestion(1, 2, &[3]);
    altered.description.as_of = Some(frontier(Some(5)));
    check(
        vec![
            StorageCommand::RunIngestion(ingestion(1, 2, &[])),
            StorageCommand::RunIngestion(altered.clone()),
        ],
        vec![StorageCommand::RunIngestion(altered)],
    );
}

#[test]
fn keeps_live_ingestion_compactions() {
    let run = StorageCommand::RunIngestion(ingestion(1, 2, &[3]));
    check(
        vec![
            run.clone(),
            compact(1, Some(4)),
            compact(1, Some(7)),
            compact(2, Some(5)),
        ],
        vec![run, compact(1, Some(7)), compact(2, Some(5))],
    );
}

#[test]
fn keeps_an_ingestion_while_its_own_id_lives() {
    let run = StorageCommand::RunIngestion(ingestion(1, 2, &[3]));
    check(
        vec![run.clone(), compact(3, None), compact(2, Some(4))],
        vec![run, compact(2, Some(4)), compact(3, None)],
    );
}

#[test]
fn drops_an_ingestion_once_its_own_id_is_compacted_to_empty() {
    // As a replica does: the ingestion's final compaction stops all of it. The final
    // compactions of its collections stay (until confirmed); other compactions go.
    let run = StorageCommand::RunIngestion(ingestion(1, 2, &[3]));
    check(
        vec![run, compact(2, Some(4)), compact(1, None), compact(3, None)],
        vec![compact(1, None), compact(3, None)],
    );
}

#[test]
fn drops_an_ingestion_compacted_to_empty_and_keeps_final_compactions() {
    check(
        vec![
            StorageCommand::RunIngestion(ingestion(1, 2, &[3])),
            compact(1, Some(3)),
            compact(1, None),
            compact(2, None),
            compact(3, None),
        ],
        vec![compact(1, None), compact(2, None), compact(3, None)],
    );
}

#[test]
fn final_compactions_of_dropped_objects_survive_one_reduction() {
    let once = reduce(vec![
        StorageCommand::RunSink(sink(5, 1, 0)),
        compact(5, None),
    ]);
    assert_eq!(once, vec![compact(5, None)]);
    check(once, vec![]);
}

#[test]
fn absorbs_a_live_sink_compaction_into_its_as_of() {
    let mut absorbed = sink(5, 1, 0);
    absorbed.description.as_of = frontier(Some(9));
    check(
        vec![StorageCommand::RunSink(sink(5, 1, 0)), compact(5, Some(9))],
        vec![StorageCommand::RunSink(absorbed)],
    );
}

#[test]
fn drops_a_sink_compacted_to_empty() {
    check(
        vec![
            StorageCommand::RunSink(sink(5, 1, 0)),
            compact(5, Some(2)),
            compact(5, None),
        ],
        vec![compact(5, None)],
    );
}

#[test]
fn drops_stray_compactions() {
    check(vec![compact(9, Some(1)), compact(8, None)], vec![]);
}

#[test]
fn flags_once_each_in_order_after_everything_else() {
    let run = StorageCommand::RunSink(sink(5, 1, 0));
    check(
        vec![
            StorageCommand::AllowWrites,
            StorageCommand::InitializationComplete,
            run.clone(),
            StorageCommand::AllowWrites,
            StorageCommand::InitializationComplete,
        ],
        vec![
            run,
            StorageCommand::InitializationComplete,
            StorageCommand::AllowWrites,
        ],
    );
}

#[test]
fn replay_order_is_hello_config_ingestions_sinks_compactions_flags() {
    let ing = StorageCommand::RunIngestion(ingestion(1, 2, &[]));
    let snk = StorageCommand::RunSink(sink(5, 1, 0));
    check(
        vec![
            StorageCommand::InitializationComplete,
            compact(1, Some(3)),
            snk.clone(),
            ing.clone(),
            config("a", "b"),
            hello(1),
        ],
        vec![
            hello(1),
            config("a", "b"),
            ing,
            snk,
            compact(1, Some(3)),
            StorageCommand::InitializationComplete,
        ],
    );
}

#[test]
fn frontier_join_is_the_least_upper_bound() {
    assert_eq!(
        join_frontiers(&frontier(Some(3)), &frontier(Some(5))),
        frontier(Some(5))
    );
    assert_eq!(
        join_frontiers(&frontier(Some(3)), &frontier(None)),
        frontier(None)
    );
    assert_eq!(
        join_frontiers(&frontier(None), &frontier(Some(3))),
        frontier(None)
    );
}

fn ids(range: std::ops::Range<u64>) -> Vec<GlobalId> {
    range.map(GlobalId::User).collect()
}

/// Pushes `command` and checks the bound right after.
fn push_checked(history: &mut CommandHistory<Timestamp>, command: Cmd) {
    history.push(command);
    assert!(
        history.len() <= 2 * history.live() + REDUCE_SLACK,
        "len {} live {}",
        history.len(),
        history.live()
    );
}

#[test]
fn final_compactions_stay_until_forgotten() {
    let mut history = CommandHistory::new();
    history.push(StorageCommand::RunSink(sink(5, 1, 0)));
    history.push(compact(5, None));
    assert_eq!(history.live(), 1);
    for _ in 0..3 {
        history.reduce();
        assert_eq!(
            history.iter().cloned().collect::<Vec<_>>(),
            vec![compact(5, None)]
        );
    }
    history.forget_dropped([GlobalId::User(5)]);
    assert_eq!(history.live(), 0);
    history.reduce();
    assert!(history.is_empty());
}

#[test]
fn forgetting_an_undropped_id_is_ignored() {
    let mut history = CommandHistory::new();
    let run = StorageCommand::RunSink(sink(5, 1, 0));
    history.push(run.clone());
    history.forget_dropped([GlobalId::User(5), GlobalId::User(77)]);
    assert_eq!(history.live(), 1);
    history.reduce();
    assert_eq!(history.iter().cloned().collect::<Vec<_>>(), vec![run]);
}

#[test]
fn a_running_ingestion_keeps_the_final_compaction_of_a_forgotten_export() {
    let mut history = CommandHistory::new();
    let run = StorageCommand::RunIngestion(ingestion(1, 2, &[3]));
    history.push(run.clone());
    history.push(compact(3, None));
    history.forget_dropped(ids(3..4));
    history.reduce();
    // Replaying the ingestion starts export 3 again, so it must still be compacted away.
    assert_eq!(
        history.iter().cloned().collect::<Vec<_>>(),
        vec![run, compact(3, None)]
    );
    assert_eq!(history.live(), 4);
    history.push(compact(1, None));
    history.push(compact(2, None));
    history.forget_dropped(ids(1..2));
    history.reduce();
    // Dropped entirely; the unconfirmed remap collection's final compaction stays.
    assert_eq!(
        history.iter().cloned().collect::<Vec<_>>(),
        vec![compact(2, None)]
    );
    history.forget_dropped(ids(2..3));
    assert_eq!(history.live(), 0);
    history.reduce();
    assert!(history.is_empty());
}

#[test]
fn length_stays_bounded_under_heavy_churn() {
    let mut history = CommandHistory::new();
    history.push(hello(1));
    history.push(StorageCommand::InitializationComplete);
    for round in 0..10_000u64 {
        let base = 10 + round * 3;
        push_checked(
            &mut history,
            StorageCommand::RunIngestion(ingestion(base, base + 1, &[base + 2])),
        );
        for id in base..base + 3 {
            push_checked(&mut history, compact(id, Some(round)));
            push_checked(&mut history, compact(id, None));
        }
        history.forget_dropped(ids(base..base + 3));
        // Nothing stays live once confirmed.
        assert_eq!(history.live(), 0);
        assert!(history.len() <= REDUCE_SLACK, "len {}", history.len());
    }
    history.reduce();
    assert_eq!(history.len(), 2);
}

/// Mass drops of `k` objects at once, confirmed in batches, between phases of steady
/// compactions of single-collection ingestions (the densest live history: two commands
/// per live collection). Checks the bound after every push and forget, and that the
/// reductions' total work stays within twice the pushes.
#[test]
fn mass_drops_stay_bounded_and_reductions_stay_amortised() {
    let mut history = CommandHistory::new();
    let mut pushes = 0u64;
    let mut next = 1u64;
    for wave in 0..20u64 {
        let k = 50 + 100 * (wave % 4);
        let first = next;
        next += k;
        for id in first..next {
            // `remap == id`: one collection, so the reduced history is as dense as it gets.
            push_checked(
                &mut history,
                StorageCommand::RunIngestion(ingestion(id, id, &[])),
            );
            pushes += 1;
        }
        for t in 0..5 {
            for id in first..next {
                push_checked(&mut history, compact(id, Some(t)));
                pushes += 1;
            }
        }
        for id in first..next {
            push_checked(&mut history, compact(id, None));
            pushes += 1;
        }
        assert_eq!(
            history.live(),
            2 * k as usize,
            "unconfirmed drops stay live"
        );
        for batch in ids(first..next).chunks(7) {
            history.forget_dropped(batch.iter().copied());
            assert!(history.len() <= 2 * history.live() + REDUCE_SLACK);
        }
        assert_eq!(history.live(), 0);
        assert!(history.len() <= REDUCE_SLACK);
        assert!(
            history.reduction_work <= 2 * pushes,
            "work {} pushes {pushes}",
            history.reduction_work
        );
    }
}

/// What a replica ends up running after a replay: the model the reduction must agree
/// with. Compactions of unknown ids are ignored, as a replica does.
#[derive(Debug, Default, PartialEq)]
struct Model {
    hello: Option<Cmd>,
    config: BTreeMap<String, String>,
    ingestions: BTreeMap<GlobalId, RunIngestionCommand<Timestamp>>,
    sinks: BTreeMap<GlobalId, RunSinkCommand<Timestamp>>,
    frontiers: BTreeMap<GlobalId, Antichain<Timestamp>>,
    initialization_complete: bool,
    allow_writes: bool,
}

impl Model {
    fn replay<'a>(commands: impl IntoIterator<Item = &'a Cmd>) -> Model {
        let mut m = Model::default();
        for command in commands {
            m.apply(command.clone());
        }
        // Only the collections of live ingestions have a frontier that matters.
        let owned: std::collections::BTreeSet<GlobalId> = m
            .ingestions
            .values()
            .flat_map(|r| r.collection_ids())
            .chain(m.sinks.keys().copied())
            .collect();
        m.frontiers.retain(|id, _| owned.contains(id));
        // A sink's effective since is its as_of joined with its compactions.
        for (id, run) in &mut m.sinks {
            if let Some(f) = m.frontiers.remove(id) {
                run.description.as_of = join_frontiers(&run.description.as_of, &f);
            }
        }
        m
    }

    fn apply(&mut self, command: Cmd) {
        match command {
            StorageCommand::Hello { .. } => self.hello = Some(command),
            StorageCommand::InitializationComplete => self.initialization_complete = true,
            StorageCommand::AllowWrites => self.allow_writes = true,
            StorageCommand::UpdateConfiguration(p) => self.config.extend(p.params),
            StorageCommand::RunIngestion(run) => {
                self.ingestions.insert(run.id, run);
            }
            StorageCommand::RunSink(run) => {
                self.frontiers.remove(&run.id);
                self.sinks.insert(run.id, run);
            }
            StorageCommand::AllowCompaction { id, frontier } => {
                let owner = self
                    .ingestions
                    .values()
                    .find(|r| r.collection_ids().contains(&id))
                    .map(|r| r.id);
                if owner.is_none() && !self.sinks.contains_key(&id) {
                    return;
                }
                let joined = match self.frontiers.get(&id) {
                    Some(old) => join_frontiers(old, &frontier),
                    None => frontier,
                };
                self.frontiers.insert(id, joined);
                if let Some(owner) = owner {
                    let ids = self.ingestions[&owner].collection_ids();
                    if self.frontiers.get(&owner).is_some_and(|f| f.is_empty()) {
                        self.ingestions.remove(&owner);
                        for c in ids {
                            self.frontiers.remove(&c);
                        }
                    }
                } else if self.frontiers.get(&id).is_some_and(|f| f.is_empty()) {
                    self.sinks.remove(&id);
                    self.frontiers.remove(&id);
                }
            }
        }
    }

    fn summary(&self) -> String {
        let sinks: Vec<_> = self
            .sinks
            .iter()
            .map(|(id, r)| format!("{id}@{:?}", r.description.as_of.elements()))
            .collect();
        let ings: Vec<_> = self
            .ingestions
            .iter()
            .map(|(id, r)| format!("{id}:{:?}", r.description.as_of))
            .collect();
        format!(
            "ing {ings:?} sinks {sinks:?} frontiers {:?} cfg {:?} {} {} {:?}",
            self.frontiers,
            self.config,
            self.initialization_complete,
            self.allow_writes,
            self.hello
        )
    }

    /// Commands needed to describe the live objects.
    fn live_commands(&self) -> usize {
        self.ingestions.len() + self.frontiers.len() + self.sinks.len() + 4
    }
}

/// One step of a plausible controller: ids are never reused, compactions only advance.
#[derive(Debug, Clone)]
enum Op {
    CreateIngestion {
        exports: u8,
    },
    CreateSink,
    Alter(u8),
    Advance(u8, u64),
    Drop(u8),
    DropOne(u8),
    /// Drop every live object at once.
    MassDrop,
    /// Every replica confirmed the oldest few unconfirmed drops.
    Confirm(u8),
    ConfirmAll,
    Config(u8, u8),
    Hello,
    Init,
    Writes,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(|exports| Op::CreateIngestion { exports }),
        2 => Just(Op::CreateSink),
        1 => any::<u8>().prop_map(Op::Alter),
        4 => (any::<u8>(), 1u64..5).prop_map(|(o, d)| Op::Advance(o, d)),
        3 => any::<u8>().prop_map(Op::Drop),
        1 => any::<u8>().prop_map(Op::DropOne),
        1 => Just(Op::MassDrop),
        2 => any::<u8>().prop_map(Op::Confirm),
        1 => Just(Op::ConfirmAll),
        1 => (0u8..4, any::<u8>()).prop_map(|(k, v)| Op::Config(k, v)),
        1 => Just(Op::Hello),
        1 => Just(Op::Init),
        1 => Just(Op::Writes),
    ]
}

/// What the test feeds a history.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Push a command; the live weight the model expects afterwards.
    Push(Cmd, usize),
    /// Every replica confirmed these drops.
    Forget(Vec<GlobalId>),
}

/// The live-object model: an object is live until each id it owns is confirmed
/// dropped; an ingestion weighs one plus its collections, a sink one.
#[derive(Debug, Default)]
struct Weights {
    /// Per live object: its ids, its unconfirmed ids and its weight.
    objects: BTreeMap<GlobalId, (Vec<GlobalId>, Vec<GlobalId>, usize)>,
}

impl Weights {
    fn run(&mut self, object: GlobalId, ids: Vec<GlobalId>, weight: usize) {
        let remaining = match self.objects.get(&object) {
            Some((old, remaining, _)) => ids
                .iter()
                .filter(|id| remaining.contains(id) || !old.contains(id))
                .copied()
                .collect(),
            None => ids.clone(),
        };
        self.objects.insert(object, (ids, remaining, weight));
    }

    fn confirm(&mut self, id: GlobalId) {
        for (_, remaining, _) in self.objects.values_mut() {
            remaining.retain(|r| *r != id);
        }
        self.objects
            .retain(|_, (_, remaining, _)| !remaining.is_empty());
    }

    fn total(&self) -> usize {
        self.objects.values().map(|(_, _, w)| w).sum()
    }
}

/// Turns ops into steps, tracking live objects, their frontiers and unconfirmed drops.
fn steps(ops: &[Op]) -> Vec<Step> {
    let mut next = 1u64;
    let mut live: Vec<(GlobalId, Vec<GlobalId>, bool)> = Vec::new();
    let mut since: BTreeMap<GlobalId, u64> = BTreeMap::new();
    let mut weights = Weights::default();
    let mut unconfirmed: Vec<GlobalId> = Vec::new();
    let mut out = Vec::new();
    let push = |out: &mut Vec<Step>, weights: &mut Weights, command: Cmd| {
        match &command {
            StorageCommand::RunIngestion(run) => {
                let ids: Vec<_> = run.collection_ids().into_iter().collect();
                let weight = 1 + ids.len();
                weights.run(run.id, ids, weight);
            }
            StorageCommand::RunSink(run) => weights.run(run.id, vec![run.id], 1),
            _ => {}
        }
        out.push(Step::Push(command, weights.total()));
    };
    let drop_collections =
        |out: &mut Vec<Step>, unconfirmed: &mut Vec<GlobalId>, w: &mut Weights, cs: Vec<_>| {
            for c in cs {
                unconfirmed.push(c);
                let frontier = Antichain::new();
                out.push(Step::Push(
                    StorageCommand::AllowCompaction { id: c, frontier },
                    w.total(),
                ));
            }
        };
    for op in ops {
        match op {
            Op::CreateIngestion { exports } => {
                let id = next;
                let exports: Vec<u64> = (0..u64::from(*exports)).map(|e| id + 2 + e).collect();
                next += 3 + exports.len() as u64;
                let run = ingestion(id, id + 1, &exports);
                live.push((run.id, run.collection_ids().into_iter().collect(), true));
                push(&mut out, &mut weights, StorageCommand::RunIngestion(run));
            }
            Op::CreateSink => {
                live.push((GlobalId::User(next), vec![GlobalId::User(next)], false));
                push(
                    &mut out,
                    &mut weights,
                    StorageCommand::RunSink(sink(next, 1, 0)),
                );
                next += 1;
            }
            Op::Alter(i) if !live.is_empty() => {
                let (id, collections, is_ingestion) = &live[*i as usize % live.len()];
                let GlobalId::User(n) = *id else {
                    unreachable!()
                };
                let command = if *is_ingestion {
                    let exports: Vec<u64> = collections
                        .iter()
                        .filter_map(|c| match c {
                            GlobalId::User(c) if *c > n + 1 => Some(*c),
                            _ => None,
                        })
                        .collect();
                    let mut run = ingestion(n, n + 1, &exports);
                    run.description.as_of = Some(frontier(Some(u64::from(*i))));
                    StorageCommand::RunIngestion(run)
                } else {
                    StorageCommand::RunSink(sink(n, 2, u64::from(*i)))
                };
                push(&mut out, &mut weights, command);
            }
            Op::Advance(i, d) if !live.is_empty() => {
                let (_, collections, _) = &live[*i as usize % live.len()];
                let c = collections[*i as usize % collections.len()];
                let t = since.entry(c).or_default();
                *t += d;
                let command = StorageCommand::AllowCompaction {
                    id: c,
                    frontier: frontier(Some(*t)),
                };
                push(&mut out, &mut weights, command);
            }
            Op::Drop(i) if !live.is_empty() => {
                let (_, collections, _) = live.remove(*i as usize % live.len());
                drop_collections(&mut out, &mut unconfirmed, &mut weights, collections);
            }
            Op::MassDrop => {
                for (_, collections, _) in std::mem::take(&mut live) {
                    drop_collections(&mut out, &mut unconfirmed, &mut weights, collections);
                }
            }
            Op::DropOne(i) if !live.is_empty() => {
                let object = *i as usize % live.len();
                let (owner, collections, _) = &mut live[object];
                let owner = *owner;
                let c = collections.remove(*i as usize % collections.len());
                // An ingestion whose own id is dropped is gone as a whole: the host never
                // runs or alters it again (its other collections may never be dropped).
                if collections.is_empty() || c == owner {
                    live.remove(object);
                }
                drop_collections(&mut out, &mut unconfirmed, &mut weights, vec![c]);
            }
            Op::Confirm(n) if !unconfirmed.is_empty() => {
                let n = (*n as usize % unconfirmed.len()) + 1;
                let confirmed: Vec<GlobalId> = unconfirmed.drain(..n).collect();
                confirmed.iter().for_each(|id| weights.confirm(*id));
                out.push(Step::Forget(confirmed));
            }
            Op::ConfirmAll => {
                let confirmed = std::mem::take(&mut unconfirmed);
                confirmed.iter().for_each(|id| weights.confirm(*id));
                out.push(Step::Forget(confirmed));
            }
            Op::Config(k, v) => {
                push(
                    &mut out,
                    &mut weights,
                    config(&format!("k{k}"), &v.to_string()),
                );
            }
            Op::Hello => {
                let epoch = out.len() as u64;
                push(&mut out, &mut weights, hello(epoch));
            }
            Op::Init => push(
                &mut out,
                &mut weights,
                StorageCommand::InitializationComplete,
            ),
            Op::Writes => push(&mut out, &mut weights, StorageCommand::AllowWrites),
            _ => {}
        }
    }
    out
}

proptest! {
    // 10x the cases under `cargo xtask test --soak`.
    #![proptest_config(ProptestConfig::with_cases(128 * crate::testing::soak_factor()))]

    #[test]
    fn reduced_replay_matches_full_replay(ops in proptest::collection::vec(arb_op(), 0..300)) {
        let steps = steps(&ops);
        let mut all: Vec<Cmd> = Vec::new();
        let mut history = CommandHistory::new();
        let mut pushes = 0u64;
        for step in steps {
            match step {
                Step::Push(command, weight) => {
                    all.push(command.clone());
                    history.push(command);
                    pushes += 1;
                    prop_assert_eq!(history.live(), weight);
                    prop_assert!(
                        history.len() <= 2 * weight + REDUCE_SLACK,
                        "len {} > 2 * {} + {}", history.len(), weight, REDUCE_SLACK
                    );
                }
                Step::Forget(ids) => {
                    history.forget_dropped(ids);
                    prop_assert!(history.len() <= 2 * history.live() + REDUCE_SLACK);
                }
            }
            if all.len().is_multiple_of(37) {
                let (a, b) = (Model::replay(history.iter()), Model::replay(&all));
                prop_assert!(a == b, "diverged after {}:\n{}\n{}", all.len(), a.summary(), b.summary());
            }
        }
        prop_assert!(history.reduction_work <= 2 * pushes, "work {} pushes {pushes}", history.reduction_work);
        let full = Model::replay(&all);
        prop_assert!(Model::replay(history.iter()) == full, "diverged at the end");
        history.reduce();
        prop_assert!(Model::replay(history.iter()) == full, "diverged after a reduction");
        history.reduce();
        prop_assert!(Model::replay(history.iter()) == full, "diverged after two reductions");
        // Reductions never exceed the live weight plus Hello, configuration and flags.
        prop_assert!(history.len() <= history.live() + 4);
    }

    /// Once every drop is confirmed, a reduced history describes only live objects.
    #[test]
    fn confirmed_drops_leave_only_live_objects(ops in proptest::collection::vec(arb_op(), 0..300)) {
        let mut all: Vec<Cmd> = Vec::new();
        let mut history = CommandHistory::new();
        let mut dropped = Vec::new();
        for step in steps(&ops) {
            match step {
                Step::Push(command, _) => {
                    if let StorageCommand::AllowCompaction { id, frontier } = &command
                        && frontier.is_empty()
                    {
                        dropped.push(*id);
                    }
                    all.push(command.clone());
                    history.push(command);
                }
                Step::Forget(ids) => history.forget_dropped(ids),
            }
        }
        history.forget_dropped(dropped);
        history.reduce();
        let full = Model::replay(&all);
        prop_assert!(Model::replay(history.iter()) == full, "diverged");
        prop_assert!(history.len() <= full.live_commands(), "{} > {}", history.len(), full.live_commands());
    }
}
