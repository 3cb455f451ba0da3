//! `cargo xtask bench controller`: controller-core against bare baselines, as ratios
//! measured in the same run.
//!
//! Micro-benchmark (criterion group `frontier_state`): 1M read-capability and upper
//! updates over 10k collections with dependencies, through [`FrontierState`]
//! (`strata`), against applying the same changes to one bare `MutableAntichain` per
//! collection (`baseline`: no propagation, validation or effects).
//!
//! End-to-end comparisons (measured here, reported through `strata-bench-support`):
//! - 1M upper reports (`FrontierUppers`) over 10k ingestion collections from a stand-in
//!   replica through the instance and `process`, against the same uppers applied to
//!   bare `MutableAntichain`s (`controller_responses`);
//! - the I/O comparisons of `controller_io`;
//! - the end-to-end lag (p50, p99) from a generator emitting offset `n` to the
//!   controller seeing the upper pass it, against the same emission to the data
//!   shard's upper in persist passing it (`controller_lag`);
//! - the cost of single operations at 1k tables against the same at 100k
//!   (`controller_scale`), with idle store traffic and memory per table.
//!
//! `--quick` shrinks sizes 10x. Run without `--bench` (as `cargo test --all-targets`
//! does), criterion runs the group once at a tiny size and the end-to-end parts are
//! skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use strata_bench_support::micro::criterion::{BatchSize, Criterion};
use strata_bench_support::micro::{self, Group, compare};
use strata_bench_support::{Mode, XorShift};
use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, MutableAntichain, ReadPolicy, StorageTimestamp,
    Timestamp,
};
use strata_controller_core::frontiers::{CollectionConfig, FrontierState};

mod controller_io;
mod controller_lag;
mod controller_responses;
mod controller_scale;

/// Updates applied per call, like one batch of replica responses or hold changes.
const BATCH: usize = 100;

struct Sizes {
    collections: u64,
    updates: usize,
}

/// One call's worth of updates.
#[derive(Clone)]
struct Batch {
    uppers: Vec<(GlobalId, Antichain<Timestamp>)>,
    holds: BTreeMap<GlobalId, ChangeBatch<Timestamp>>,
}

/// Collections come in groups of 10: a base, an ingestion on an instance that depends
/// on the base, and eight exports/views that depend on the ingestion.
fn dependencies(i: u64) -> Vec<GlobalId> {
    let group = (i - 1) / 10 * 10;
    match group_member(i) {
        1 => vec![],
        2 => vec![GlobalId::User(group + 1)],
        _ => vec![GlobalId::User(group + 2)],
    }
}

/// The position of id `i` in its group, 1..=10; groups are 1..=10, 11..=20, and so on.
fn group_member(i: u64) -> u64 {
    (i - 1) % 10 + 1
}

/// Every collection carries one external hold, starting at 0. Updates either advance
/// an upper by 1..=3, or move a hold forward to a time near its collection's upper.
fn workload(sizes: &Sizes) -> Vec<Batch> {
    let n = sizes.collections;
    let mut rng = XorShift::new(0x5eed_1234_abcd_0001);
    let mut uppers = vec![0u64; n as usize + 1];
    let mut holds = vec![0u64; n as usize + 1];
    let mut batches = Vec::with_capacity(sizes.updates / BATCH + 1);
    let mut remaining = sizes.updates;
    while remaining > 0 {
        let mut batch = Batch {
            uppers: Vec::new(),
            holds: BTreeMap::new(),
        };
        for _ in 0..BATCH.min(remaining) {
            let r = rng.next_u64();
            let i = 1 + (r >> 8) % n;
            let id = GlobalId::User(i);
            if r & 1 == 0 {
                uppers[i as usize] += 1 + (r >> 40) % 3;
                batch
                    .uppers
                    .push((id, Antichain::from_elem(Timestamp::new(uppers[i as usize]))));
            } else {
                let old = holds[i as usize];
                let new = old.max(uppers[i as usize].saturating_sub((r >> 40) % 4));
                holds[i as usize] = new;
                let changes = batch.holds.entry(id).or_default();
                changes.update(Timestamp::new(new), 1);
                changes.update(Timestamp::new(old), -1);
            }
        }
        remaining -= BATCH.min(remaining);
        batches.push(batch);
    }
    batches
}

fn setup_state(n: u64) -> FrontierState<Timestamp> {
    let mut state = FrontierState::new();
    let zero = || Antichain::from_elem(Timestamp::new(0));
    for i in 1..=n {
        let mut config = CollectionConfig::new(zero(), zero())
            .with_dependencies(dependencies(i))
            .with_read_policy(ReadPolicy::step_back());
        if group_member(i) == 2 {
            config = config
                .with_hold_policy(ReadPolicy::step_back())
                .on_instance(InstanceId(1));
        }
        state.register(GlobalId::User(i), config).unwrap();
        state
            .acquire_read_hold_at(GlobalId::User(i), &zero())
            .unwrap();
    }
    state
}

fn run_state(
    mut state: FrontierState<Timestamp>,
    batches: Vec<Batch>,
) -> (FrontierState<Timestamp>, usize) {
    let mut effects = 0;
    for batch in batches {
        effects += state.update_write_frontiers(&batch.uppers).len();
        effects += state.update_read_capabilities(batch.holds).unwrap().len();
    }
    (state, black_box(effects))
}

/// The baseline's state: one `MutableAntichain` per collection, holding the implied
/// capability and the external hold, and each collection's implied capability.
struct Bare {
    frontiers: Vec<MutableAntichain<Timestamp>>,
    implied: Vec<Timestamp>,
}

fn setup_bare(n: u64) -> Bare {
    let zero = Timestamp::new(0);
    let frontiers = (0..=n)
        .map(|_| {
            let mut f = MutableAntichain::new();
            f.update_iter([(zero, 2)]);
            f
        })
        .collect();
    Bare {
        frontiers,
        implied: vec![zero; n as usize + 1],
    }
}

/// The baseline: upper reports move the implied capability one step behind.
fn run_bare(mut bare: Bare, batches: Vec<Batch>) -> (Bare, usize) {
    let zero = Timestamp::new(0);
    let mut changed = 0;
    let index = |id: &GlobalId| match id {
        GlobalId::User(i) => *i as usize,
        _ => 0,
    };
    for batch in batches {
        for (id, upper) in &batch.uppers {
            let i = index(id);
            let advice = upper
                .as_option()
                .and_then(|t| t.step_back())
                .unwrap_or(zero);
            if advice > bare.implied[i] {
                changed += bare.frontiers[i]
                    .update_iter([(advice, 1), (bare.implied[i], -1)])
                    .count();
                bare.implied[i] = advice;
            }
        }
        for (id, mut changes) in batch.holds {
            changed += bare.frontiers[index(&id)]
                .update_iter(changes.drain())
                .count();
        }
    }
    (bare, black_box(changed))
}

fn frontier_state(c: &mut Criterion, mode: Mode) {
    let sizes = Sizes {
        collections: mode.scale(10_000, 10),
        updates: mode.scale(1_000_000, 1_000) as usize,
    };
    let batches = workload(&sizes);
    let n = sizes.collections;
    let spec = Group {
        group: "frontier_state",
        name: "frontier_state_read_capability_and_upper_updates",
        baseline_name: "bare_mutable_antichain_updates",
        per: "update",
        elements: sizes.updates as u64,
    };
    compare(
        c,
        mode,
        &spec,
        |b| {
            b.iter_batched(
                || (setup_state(n), batches.clone()),
                |(state, batches)| run_state(state, batches),
                BatchSize::LargeInput,
            )
        },
        |b| {
            b.iter_batched(
                || (setup_bare(n), batches.clone()),
                |(bare, batches)| run_bare(bare, batches),
                BatchSize::LargeInput,
            )
        },
    );
}

fn main() {
    let mode = Mode::current();
    // `STRATA_BENCH_ONLY=responses` (or `io`, `lag`, `scale`, `micro`) runs one part, for a
    // profiler.
    let only = std::env::var("STRATA_BENCH_ONLY").ok();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("micro") {
        micro::run(mode, &[frontier_state]);
    }
    if !mode.is_bench() {
        return;
    }
    if runs("io") {
        controller_io::run(controller_io::IoSizes {
            tables: mode.scale(10_000, 10),
            callers: 32,
            writes_per_caller: mode.pick(1, 5, 20),
        });
    }
    if runs("responses") {
        controller_responses::run(controller_responses::ResponseSizes {
            collections: mode.scale(10_000, 10),
            responses: mode.scale(1_000_000, 1_000) as usize,
        });
    }
    if runs("scale") {
        controller_scale::run(controller_scale::ScaleSizes {
            small: 1_000,
            large: mode.pick(1_000, 10_000, 100_000),
            writes: mode.pick(3, 21, 101),
            // One lease renewal period (a quarter of the 60 s default lease) and a bit.
            idle_window: std::time::Duration::from_secs(16),
        });
    }
    if runs("lag") {
        controller_lag::run(controller_lag::LagSizes {
            offsets: mode.scale(2_000, 30),
            tick_interval_ms: 5,
        });
    }
}
