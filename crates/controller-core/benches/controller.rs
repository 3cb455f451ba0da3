//! `cargo xtask bench controller`: controller-core against bare baselines, as ratios
//! measured in the same run.
//!
//! Comparisons:
//! - 1M read-capability and upper updates over 10k collections with dependencies,
//!   through [`FrontierState`], against applying the same changes to one bare
//!   `MutableAntichain` per collection (no propagation, validation or effects);
//! - 1M `FrontierUpper` responses over 10k ingestion collections from a stand-in
//!   replica through the instance and `process`, against the same uppers applied to
//!   bare `MutableAntichain`s (`controller_responses`);
//! - the I/O comparisons of `controller_io`;
//! - the end-to-end lag (p50, p99) from a generator emitting offset `n` to the
//!   controller seeing the upper pass it, against the same emission to the data
//!   shard's upper in persist passing it (`controller_lag`).
//!
//! Each metric is appended as one JSON line to the file named by `STRATA_BENCH_OUT`;
//! percentile metrics add `samples`, the number of measurements behind them.
//! `STRATA_BENCH_QUICK=1` shrinks sizes 10x. Run without `--bench` (as `cargo test`
//! does), the suite only smoke-tests itself at a tiny size and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use strata_controller_api::{
    Antichain, ChangeBatch, GlobalId, InstanceId, MutableAntichain, ReadPolicy, StorageTimestamp,
    Timestamp,
};
use strata_controller_core::frontiers::{CollectionConfig, FrontierState};

mod controller_io;
mod controller_lag;
mod controller_responses;

/// Updates applied per call, like one batch of replica responses or hold changes.
const BATCH: usize = 100;
/// Measurement rounds per side; the fastest counts.
const ROUNDS: usize = 3;

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

/// A small deterministic generator (xorshift), so both sides see the same updates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every collection carries one external hold, starting at 0. Updates either advance
/// an upper by 1..=3, or move a hold forward to a time near its collection's upper.
fn workload(sizes: &Sizes) -> Vec<Batch> {
    let n = sizes.collections;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
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
            let r = rng.next();
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

fn run_state(n: u64, batches: Vec<Batch>) -> (Duration, usize) {
    let mut state = setup_state(n);
    let mut effects = 0;
    let start = Instant::now();
    for batch in batches {
        effects += state.update_write_frontiers(&batch.uppers).len();
        effects += state.update_read_capabilities(batch.holds).unwrap().len();
    }
    (start.elapsed(), black_box(effects))
}

/// The baseline: one `MutableAntichain` per collection, holding the implied capability
/// and the external hold; upper reports move the capability one step behind.
fn run_bare(n: u64, batches: Vec<Batch>) -> (Duration, usize) {
    let zero = Timestamp::new(0);
    let mut frontiers: Vec<MutableAntichain<Timestamp>> = (0..=n)
        .map(|_| {
            let mut f = MutableAntichain::new();
            f.update_iter([(zero, 2)]);
            f
        })
        .collect();
    let mut implied = vec![zero; n as usize + 1];
    let mut changed = 0;
    let index = |id: &GlobalId| match id {
        GlobalId::User(i) => *i as usize,
        _ => 0,
    };
    let start = Instant::now();
    for batch in batches {
        for (id, upper) in &batch.uppers {
            let i = index(id);
            let advice = upper
                .as_option()
                .and_then(|t| t.step_back())
                .unwrap_or(zero);
            if advice > implied[i] {
                changed += frontiers[i]
                    .update_iter([(advice, 1), (implied[i], -1)])
                    .count();
                implied[i] = advice;
            }
        }
        for (id, mut changes) in batch.holds {
            changed += frontiers[index(&id)].update_iter(changes.drain()).count();
        }
    }
    (start.elapsed(), black_box(changed))
}

fn report(name: &str, value: f64, unit: &str, baseline_name: &str, baseline_value: f64) {
    emit(serde_json::json!({
        "name": name,
        "value": value,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline_value": baseline_value,
        "ratio": value / baseline_value,
    }));
}

/// [`report`] for a percentile: also records how many `samples` it was taken over.
fn report_samples(
    name: &str,
    value: f64,
    unit: &str,
    baseline_name: &str,
    baseline_value: f64,
    samples: usize,
) {
    emit(serde_json::json!({
        "name": name,
        "value": value,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline_value": baseline_value,
        "ratio": value / baseline_value,
        "samples": samples,
    }));
}

fn emit(line: serde_json::Value) {
    eprintln!("{line}");
    if let Ok(path) = std::env::var("STRATA_BENCH_OUT") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let quick = std::env::var("STRATA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale = if !bench {
        1000
    } else if quick {
        10
    } else {
        1
    };
    let sizes = Sizes {
        collections: 10_000 / scale,
        updates: 1_000_000 / scale as usize,
    };
    let batches = workload(&sizes);

    let (mut best_state, mut best_bare) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        best_state = best_state.min(run_state(sizes.collections, batches.clone()).0);
        best_bare = best_bare.min(run_bare(sizes.collections, batches.clone()).0);
    }
    if !bench {
        return;
    }
    let per_update = |d: Duration| d.as_nanos() as f64 / sizes.updates as f64;
    report(
        "frontier_state_read_capability_and_upper_updates",
        per_update(best_state),
        "ns/update",
        "bare_mutable_antichain_updates",
        per_update(best_bare),
    );
    let io = controller_io::IoSizes {
        tables: 10_000 / scale,
        callers: 32,
        writes_per_caller: if quick { 5 } else { 20 },
    };
    controller_io::run(io, bench, report);
    let responses = controller_responses::ResponseSizes {
        collections: 10_000 / scale,
        responses: 1_000_000 / scale as usize,
    };
    controller_responses::run(responses, bench, report);
    let lag = controller_lag::LagSizes {
        offsets: (2_000 / scale).max(30),
        tick_interval_ms: 5,
    };
    controller_lag::run(lag, bench, report_samples);
}
