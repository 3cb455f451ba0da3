//! Property tests: `FrontierState` against the reference model in `strata-testkit`.
//!
//! Random sequences of registrations over a small DAG, upper reports, policy changes,
//! read hold acquire/downgrade/release, drops and drop confirmations go to both. After
//! every step each collection's since must equal the model's, never regress and never
//! pass an outstanding hold; the effects must be consistent with the state.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, ReadPolicy, StorageError, Timestamp,
};
use strata_controller_core::frontiers::{CollectionConfig, Effect, FrontierState};
use strata_testkit::model::frontiers::{HoldId, from_antichain, to_antichain};
use strata_testkit::model::{FrontierModel, ModelConfig};
use timely::PartialOrder;

const N: u64 = 6;
type T = Timestamp;

fn f(t: Option<u64>) -> Antichain<T> {
    t.into_iter().map(Timestamp::new).collect()
}

/// One collection of the DAG: registration parameters.
#[derive(Debug, Clone)]
struct Spec {
    since: u64,
    upper: u64,
    dependencies: Vec<GlobalId>,
    read_policy: ReadPolicy<T>,
    hold_step_back: bool,
    on_instance: bool,
    has_shard: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Register(u64),
    Upper(Vec<(u64, Option<u64>)>),
    Policy(u64, ReadPolicy<T>),
    Acquire(u64),
    AcquireAt(u64, u64),
    Downgrade(Vec<(usize, Option<u64>)>),
    BogusRelease(u64, u64),
    Drop(u64),
    DropUnvalidated(Vec<u64>),
    Confirm(u64),
    SetDependencies(u64, Vec<u64>),
}

fn time() -> impl Strategy<Value = u64> {
    0u64..30
}

fn policy() -> impl Strategy<Value = ReadPolicy<T>> {
    let t = Timestamp::new;
    prop_oneof![
        time().prop_map(move |s| ReadPolicy::NoPolicy {
            initial_since: Antichain::from_elem(t(s))
        }),
        time().prop_map(move |s| ReadPolicy::ValidFrom(Antichain::from_elem(t(s)))),
        Just(ReadPolicy::ValidFrom(Antichain::new())),
        Just(ReadPolicy::step_back()),
        (0u64..8, 0u64..4).prop_map(move |(l, g)| ReadPolicy::lag_writes_by(t(l), t(g))),
        time().prop_map(move |s| ReadPolicy::Multiple(vec![
            ReadPolicy::step_back(),
            ReadPolicy::ValidFrom(Antichain::from_elem(t(s)))
        ])),
    ]
}

fn spec(index: u64) -> impl Strategy<Value = Spec> {
    let dependencies =
        proptest::collection::btree_set(1..index.max(2), 0..=(index.min(3) as usize - 1).min(2));
    (
        time(),
        time(),
        dependencies,
        policy(),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            move |(since, upper, deps, read_policy, hold_step_back, on_instance, has_shard)| Spec {
                since: since / 3,
                upper,
                dependencies: deps
                    .into_iter()
                    .filter(|d| *d < index)
                    .map(GlobalId::User)
                    .collect(),
                read_policy,
                hold_step_back,
                on_instance,
                has_shard,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1..=N;
    prop_oneof![
        2 => id.clone().prop_map(Op::Register),
        4 => proptest::collection::vec((id.clone(), prop::option::weighted(0.95, time())), 1..4).prop_map(Op::Upper),
        1 => (id.clone(), policy()).prop_map(|(i, p)| Op::Policy(i, p)),
        2 => id.clone().prop_map(Op::Acquire),
        1 => (id.clone(), time()).prop_map(|(i, t)| Op::AcquireAt(i, t)),
        3 => proptest::collection::vec((any::<usize>(), prop::option::weighted(0.6, time())), 1..4).prop_map(Op::Downgrade),
        1 => (id.clone(), time()).prop_map(|(i, t)| Op::BogusRelease(i, t)),
        1 => id.clone().prop_map(Op::Drop),
        1 => proptest::collection::vec(id.clone(), 1..4).prop_map(Op::DropUnvalidated),
        1 => id.clone().prop_map(Op::Confirm),
        1 => (id.clone(), proptest::collection::vec(id, 0..3)).prop_map(|(i, d)| Op::SetDependencies(i, d)),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<Spec>, Vec<Op>)> {
    let specs: Vec<_> = (1..=N).map(spec).collect();
    (specs, proptest::collection::vec(op(), 1..80))
}

/// Drives the real state and the model side by side.
struct Harness {
    real: FrontierState<T>,
    model: FrontierModel<T>,
    specs: Vec<Spec>,
    /// Outstanding holds: the model's handle, the id, and the frontier held.
    holds: Vec<(HoldId, GlobalId, Antichain<T>)>,
}

fn config(spec: &Spec) -> CollectionConfig<T> {
    let mut config = CollectionConfig::new(f(Some(spec.since)), f(Some(spec.upper)))
        .with_dependencies(spec.dependencies.clone())
        .with_read_policy(spec.read_policy.clone());
    if spec.hold_step_back {
        config = config.with_hold_policy(ReadPolicy::step_back());
    }
    if spec.on_instance {
        config = config.on_instance(InstanceId(1));
    }
    if !spec.has_shard {
        config = config.without_shard();
    }
    config
}

fn model_config(spec: &Spec) -> ModelConfig<T> {
    ModelConfig {
        since: Some(Timestamp::new(spec.since)),
        upper: Some(Timestamp::new(spec.upper)),
        dependencies: spec.dependencies.clone(),
        read_policy: spec.read_policy.clone(),
        hold_policy: spec.hold_step_back.then(ReadPolicy::step_back),
        on_instance: spec.on_instance,
        has_shard: spec.has_shard,
    }
}

fn batch(
    id: GlobalId,
    changes: impl IntoIterator<Item = (T, i64)>,
) -> BTreeMap<GlobalId, ChangeBatch<T>> {
    let mut batch = ChangeBatch::new();
    batch.extend(changes.into_iter());
    BTreeMap::from([(id, batch)])
}

impl Harness {
    fn new(specs: Vec<Spec>) -> Self {
        Harness {
            real: FrontierState::new(),
            model: FrontierModel::new(),
            specs,
            holds: Vec::new(),
        }
    }

    fn spec(&self, i: u64) -> &Spec {
        &self.specs[(i - 1) as usize]
    }

    /// Applies one op to both; checks they agree on success. Returns the effects.
    fn step(&mut self, op: &Op) -> Result<Vec<Effect<T>>, TestCaseError> {
        let id = |i: u64| GlobalId::User(i);
        let (real, model_ok): (Result<Vec<Effect<T>>, StorageError<T>>, bool) = match op {
            Op::Register(i) => {
                let spec = self.spec(*i).clone();
                let model = self.model.register(id(*i), model_config(&spec)).is_ok();
                (self.real.register(id(*i), config(&spec)), model)
            }
            Op::Upper(reports) => {
                for (i, t) in reports {
                    self.model.report_upper(id(*i), t.map(Timestamp::new));
                }
                let reports: Vec<_> = reports.iter().map(|(i, t)| (id(*i), f(*t))).collect();
                if reports.len() % 2 == 0 {
                    (Ok(self.real.update_write_frontiers(&reports)), true)
                } else {
                    // The same reports as two batches of one pass, as the controller
                    // applies an instance's backlog: what is kept is what is live.
                    let live: Vec<_> = reports
                        .iter()
                        .filter(|(id, _)| self.real.is_live(*id))
                        .cloned()
                        .collect();
                    let (first, second) = reports.split_at(reports.len() / 2);
                    let mut batches = vec![first.to_vec(), second.to_vec()];
                    let effects = self.real.apply_write_frontiers(&mut batches);
                    prop_assert_eq!(batches.concat(), live);
                    (Ok(effects), true)
                }
            }
            Op::Policy(i, p) => {
                let model = self.model.set_read_policy(id(*i), p.clone()).is_ok();
                (
                    self.real.set_read_policies(vec![(id(*i), p.clone())]),
                    model,
                )
            }
            Op::Acquire(i) => return self.acquire(id(*i)),
            Op::AcquireAt(i, t) => {
                let model = self.model.acquire_at(id(*i), Timestamp::new(*t));
                let real = self.real.acquire_read_hold_at(id(*i), &f(Some(*t)));
                if let Ok(hold) = model {
                    self.holds.push((hold, id(*i), f(Some(*t))));
                }
                (real.map(|()| vec![]), model.is_ok())
            }
            Op::Downgrade(picks) => return self.downgrade(picks),
            Op::BogusRelease(i, t) => {
                let held = self
                    .holds
                    .iter()
                    .any(|(_, h, at)| *h == id(*i) && at.as_option() == Some(&Timestamp::new(*t)));
                if held {
                    return Ok(vec![]);
                }
                // A release without a matching hold is refused and changes nothing.
                (
                    self.real
                        .update_read_capabilities(batch(id(*i), [(Timestamp::new(*t), -1)])),
                    false,
                )
            }
            Op::Drop(i) => (
                self.real.drop_collections(&[id(*i)]),
                self.model.drop_collection(id(*i)).is_ok(),
            ),
            Op::DropUnvalidated(ids) => {
                for i in ids {
                    let _ = self.model.drop_collection(id(*i));
                }
                let ids: Vec<_> = ids.iter().map(|i| id(*i)).collect();
                (Ok(self.real.drop_collections_unvalidated(&ids)), true)
            }
            Op::SetDependencies(i, dependencies) => {
                let dependencies: Vec<_> = dependencies.iter().map(|d| id(*d)).collect();
                let model = self.model.set_dependencies(id(*i), dependencies.clone());
                (
                    self.real.set_dependencies(id(*i), dependencies),
                    model.is_ok(),
                )
            }
            Op::Confirm(i) => {
                self.model.confirm_dropped(id(*i));
                (Ok(self.real.confirm_dropped(&[id(*i)])), true)
            }
        };
        prop_assert_eq!(real.is_ok(), model_ok, "{:?}: real {:?}", op, real);
        Ok(real.unwrap_or_default())
    }

    fn acquire(&mut self, id: GlobalId) -> Result<Vec<Effect<T>>, TestCaseError> {
        let model = self.model.acquire(id);
        let real = self.real.acquire_read_holds(&[id]);
        prop_assert_eq!(real.is_ok(), model.is_ok());
        if let (Ok(real), Ok(Some(hold))) = (real, model) {
            let (_, frontier) = real[0].clone();
            prop_assert_eq!(
                from_antichain(&frontier),
                self.model.hold(hold).map(|(_, t)| t)
            );
            self.holds.push((hold, id, frontier));
        }
        Ok(vec![])
    }

    /// Downgrades (or releases, for `None`) several distinct holds in one call.
    fn downgrade(
        &mut self,
        picks: &[(usize, Option<u64>)],
    ) -> Result<Vec<Effect<T>>, TestCaseError> {
        if self.holds.is_empty() {
            return Ok(vec![]);
        }
        let mut chosen: BTreeMap<usize, Antichain<T>> = BTreeMap::new();
        let mut updates: BTreeMap<GlobalId, ChangeBatch<T>> = BTreeMap::new();
        for (k, t) in picks {
            let k = k % self.holds.len();
            if chosen.contains_key(&k) {
                continue;
            }
            let (_, id, old) = &self.holds[k];
            // Outstanding holds are never at `[]`: a hold downgraded to `[]` is removed.
            let held = *old.as_option().unwrap();
            let new = t.map_or_else(Antichain::new, |t| {
                Antichain::from_elem(held.max(Timestamp::new(t)))
            });
            let changes = updates.entry(*id).or_default();
            changes.extend(
                new.iter()
                    .map(|t| (*t, 1))
                    .chain(old.iter().map(|t| (*t, -1))),
            );
            chosen.insert(k, new);
        }
        let effects = self.real.update_read_capabilities(updates);
        prop_assert!(effects.is_ok(), "downgrade of {:?}: {:?}", chosen, effects);
        // Descending, so that removing a hold does not move the ones still to visit.
        for (k, new) in chosen.into_iter().rev() {
            self.model.downgrade(self.holds[k].0, from_antichain(&new));
            if new.is_empty() {
                self.holds.swap_remove(k);
            } else {
                self.holds[k].2 = new;
            }
        }
        Ok(effects.unwrap_or_default())
    }

    /// The state agrees with the model, and the holds and dependencies bound the sinces.
    fn check_state(&self) -> Result<(), TestCaseError> {
        for i in 1..=N {
            let id = GlobalId::User(i);
            prop_assert_eq!(
                self.real.contains(id),
                self.model.contains(id),
                "{} registered",
                id
            );
            prop_assert_eq!(
                self.real.is_dropped(id),
                self.model.is_dropped(id),
                "{} dropped",
                id
            );
            let real_since = self.real.since(id).map(|s| s.to_owned());
            prop_assert_eq!(
                real_since,
                self.model.since(id).map(to_antichain),
                "since of {}",
                id
            );
            prop_assert_eq!(
                self.real.upper(id).cloned(),
                self.model.upper(id).map(to_antichain),
                "upper of {}",
                id
            );
            // A dependent whose since is `[]` holds nothing, and its dependencies may be gone.
            let holding = self.real.since(id).is_some_and(|s| !s.is_empty());
            for dependency in self
                .real
                .dependencies(id)
                .unwrap_or_default()
                .iter()
                .filter(|_| holding)
            {
                let (d, s) = (
                    self.real.since(*dependency).unwrap(),
                    self.real.since(id).unwrap(),
                );
                prop_assert!(
                    PartialOrder::less_equal(&d, &s),
                    "{} since {:?} beyond dependent {} {:?}",
                    dependency,
                    d,
                    id,
                    s
                );
            }
        }
        for (_, id, held) in &self.holds {
            let since = self.real.since(*id).unwrap();
            prop_assert!(
                PartialOrder::less_equal(&since, &held.borrow()),
                "{} since {:?} passed hold {:?}",
                id,
                since,
                held
            );
        }
        Ok(())
    }
}

/// What the effects so far say about each id.
#[derive(Default)]
struct Observed {
    /// Since per id, as the shard would have it after applying every DowngradeSince.
    shard_since: BTreeMap<GlobalId, Antichain<T>>,
    allowed: BTreeMap<GlobalId, Antichain<T>>,
    recorded: BTreeMap<GlobalId, (Antichain<T>, Antichain<T>)>,
    dropped: BTreeSet<GlobalId>,
    finalized: Vec<GlobalId>,
}

impl Observed {
    fn registered(&mut self, id: GlobalId, spec: &Spec) {
        self.shard_since.insert(id, f(Some(spec.since)));
        self.allowed.remove(&id);
        self.dropped.remove(&id);
    }

    fn apply(&mut self, harness: &Harness, effects: &[Effect<T>]) -> Result<(), TestCaseError> {
        for effect in effects {
            let id = effect.id();
            match effect {
                Effect::DowngradeSince { since, .. } => {
                    let spec = harness.spec(index(id));
                    prop_assert!(spec.has_shard, "DowngradeSince for shard-less {}", id);
                    let old = self
                        .shard_since
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| f(Some(0)));
                    prop_assert!(
                        old != *since && PartialOrder::less_equal(&old, since),
                        "{} since {:?} -> {:?}",
                        id,
                        old,
                        since
                    );
                    self.shard_since.insert(id, since.clone());
                }
                Effect::AllowCompaction { frontier, .. } => {
                    prop_assert!(
                        harness.spec(index(id)).on_instance,
                        "AllowCompaction for {} not on an instance",
                        id
                    );
                    if let Some(old) = self.allowed.get(&id) {
                        prop_assert!(
                            old != frontier && PartialOrder::less_equal(old, frontier),
                            "{} compaction {:?} -> {:?}",
                            id,
                            old,
                            frontier
                        );
                    }
                    self.allowed.insert(id, frontier.clone());
                }
                Effect::RecordFrontiers { since, upper, .. } => {
                    self.recorded.insert(id, (since.clone(), upper.clone()));
                }
                Effect::Finalize { .. } => {
                    prop_assert!(
                        self.dropped.contains(&id),
                        "Finalize of {} before its drop",
                        id
                    );
                    prop_assert!(
                        !harness.real.contains(id),
                        "Finalize of {} that is still registered",
                        id
                    );
                    if harness.spec(index(id)).has_shard {
                        prop_assert!(
                            self.shard_since.get(&id).is_some_and(|s| s.is_empty()),
                            "{} finalized before since []",
                            id
                        );
                    }
                    self.dropped.remove(&id);
                    self.finalized.push(id);
                }
            }
        }
        Ok(())
    }

    /// After a step: the effects have told the caller everything about the state.
    fn check(&self, harness: &Harness) -> Result<(), TestCaseError> {
        for id in harness.real.ids() {
            let since = harness.real.since(id).unwrap().to_owned();
            let spec = harness.spec(index(id));
            if spec.has_shard {
                prop_assert_eq!(
                    self.shard_since.get(&id),
                    Some(&since),
                    "shard since of {}",
                    id
                );
            }
            let upper = harness.real.upper(id).unwrap().clone();
            prop_assert_eq!(
                self.recorded.get(&id),
                Some(&(since.clone(), upper)),
                "recorded frontiers of {}",
                id
            );
            if spec.on_instance && harness.real.is_dropped(id) {
                prop_assert_eq!(
                    self.allowed.get(&id),
                    Some(&Antichain::new()),
                    "{} dropped without AllowCompaction([])",
                    id
                );
            }
        }
        // The same ids, each as often; within one call the order may differ.
        let (mut ours, mut model) = (self.finalized.clone(), harness.model.finalized().to_vec());
        ours.sort();
        model.sort();
        prop_assert_eq!(ours, model, "finalized ids");
        Ok(())
    }
}

fn index(id: GlobalId) -> u64 {
    match id {
        GlobalId::User(i) => i,
        other => panic!("unexpected id {other}"),
    }
}

fn run(specs: Vec<Spec>, ops: Vec<Op>, check_effects: bool) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(specs);
    let mut observed = Observed::default();
    let mut previous: BTreeMap<GlobalId, Antichain<T>> = BTreeMap::new();
    for op in &ops {
        let new_registration =
            matches!(op, Op::Register(i) if !harness.real.contains(GlobalId::User(*i)));
        let live_drop: Vec<GlobalId> = op_ids(op)
            .into_iter()
            .filter(|id| harness.real.contains(*id) && !harness.real.is_dropped(*id))
            .collect();
        let effects = harness.step(op)?;
        if let (Op::Register(i), true) = (op, new_registration) {
            observed.registered(GlobalId::User(*i), harness.spec(*i));
            previous.remove(&GlobalId::User(*i));
        }
        observed.dropped.extend(live_drop);
        harness.check_state()?;
        if check_effects {
            observed.apply(&harness, &effects)?;
            observed.check(&harness)?;
        }
        for id in harness.real.ids() {
            let since = harness.real.since(id).unwrap().to_owned();
            if let Some(old) = previous.get(&id) {
                prop_assert!(
                    PartialOrder::less_equal(old, &since),
                    "since of {} regressed: {:?} -> {:?}",
                    id,
                    old,
                    since
                );
            }
            previous.insert(id, since);
        }
    }
    Ok(())
}

fn op_ids(op: &Op) -> Vec<GlobalId> {
    match op {
        Op::Drop(i) => vec![GlobalId::User(*i)],
        Op::DropUnvalidated(ids) => ids.iter().map(|i| GlobalId::User(*i)).collect(),
        _ => vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn since_matches_the_model((specs, ops) in scenario()) {
        run(specs, ops, false)?;
    }

    #[test]
    fn effects_are_consistent((specs, ops) in scenario()) {
        run(specs, ops, true)?;
    }
}
