//! Acceptance scenarios, run against any shard backend (a factory makes one handle per
//! simulated process).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_controller_api::{Antichain, GlobalId, Row, SourceConnection, Timestamp};
use strata_instance_client::{
    ReplicaResponse, RunIngestionCommand, RunSinkCommand, StorageCommand,
};
use strata_replica::shard::faults::Faulty;
use strata_replica::shard::{Shards, frontier_time};
use strata_replica::sink::file::{Progress, progress_path, read_output};
use strata_replica::{FaultHook, FaultPoint};
use timely::PartialOrder;

use super::*;

pub type Factory<'a> = &'a dyn Fn() -> Arc<dyn Shards>;
pub type Contents = BTreeMap<GlobalId, Vec<(Row, i64)>>;

/// One replica runs `cmd` to `limit` without faults.
pub fn run_clean(
    make: Factory<'_>,
    cmd: &RunIngestionCommand<Timestamp>,
    workers: usize,
    limit: u64,
) -> Contents {
    let shards = make();
    let (mut replica, _rx) = start(frozen_config(workers, limit), Arc::clone(&shards));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("clean run", || {
        ingested_offset(shards.as_ref(), cmd) >= limit
    });
    replica.shutdown();
    contents(shards.as_ref(), cmd)
}

/// Per id, the uppers reported over all connections never go backwards. Returns how
/// many uppers were reported.
pub fn assert_monotone(responses: &[ReplicaResponse<Timestamp>]) -> usize {
    let mut last: BTreeMap<GlobalId, Antichain<Timestamp>> = BTreeMap::new();
    let mut reports = 0;
    for response in responses {
        let ReplicaResponse::FrontierUppers(uppers) = response else {
            continue;
        };
        for (id, upper) in uppers {
            if let Some(previous) = last.get(id) {
                assert!(
                    PartialOrder::less_equal(previous, upper),
                    "upper of {id} regressed: {previous:?} -> {upper:?}"
                );
            }
            last.insert(*id, upper.clone());
            reports += 1;
        }
    }
    reports
}

/// Aborts [`exactly_once_under_aborts`] must land mid-run: while the shards are short
/// of the final offset.
pub const MID_RUN_ABORTS: usize = 20;

/// Runs `cmd` with `restarts` replicas that each start on faulty shards and are
/// aborted at a random point, then one that finishes. Checks exactly-once against
/// `clean`, monotone uppers, and that at least [`MID_RUN_ABORTS`] aborts landed while
/// the ingestion was short of `limit` (so `limit` must leave room for them).
pub fn exactly_once_under_aborts(
    make: Factory<'_>,
    cmd: &RunIngestionCommand<Timestamp>,
    limit: u64,
    restarts: u64,
    clean: &Contents,
) {
    let mut rng = Rng(0x5eed);
    let mut responses = Vec::new();
    let (mut injected, mut midpoints) = (0, Vec::new());
    let watch = make();
    let mut previous = 0;
    for epoch in 1..=restarts {
        let faulty = Faulty::new(make(), epoch * 7919, 12);
        let (mut replica, rx) = start(frozen_config(2, limit), Arc::new(faulty.clone()));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunIngestion(cmd.clone())]),
        );
        // Abort at a random point of observed progress (never of wall time): once the
        // ingestion is past the previous abort point by a few offsets (about a round),
        // plus a small random delay.
        let target = (previous + 1 + rng.below(8)).min(limit);
        wait_for("progress past the previous abort", || {
            ingested_offset(watch.as_ref(), cmd) >= target
        });
        std::thread::sleep(Duration::from_micros(rng.below(500)));
        replica.shutdown(); // abort
        injected += faulty.injected();
        responses.extend(drain(&rx));
        previous = ingested_offset(watch.as_ref(), cmd);
        midpoints.push(previous);
    }
    let shards = make();
    let (mut replica, rx) = start(frozen_config(2, limit), Arc::clone(&shards));
    send(
        &mut replica,
        &history(
            restarts + 1,
            vec![StorageCommand::RunIngestion(cmd.clone())],
        ),
    );
    wait_for("final run", || {
        ingested_offset(shards.as_ref(), cmd) >= limit
    });
    replica.shutdown();
    responses.extend(drain(&rx));

    // Offsets only grow: one read after an abort bounds the one at the abort.
    let mid_run = midpoints.iter().filter(|o| **o < limit).count();
    eprintln!("ingested offsets after each abort: {midpoints:?}; {mid_run} of {restarts} mid-run");
    assert!(injected > 0, "no fault was injected");
    assert!(
        mid_run >= MID_RUN_ABORTS,
        "only {mid_run} aborts hit a running ingestion: {midpoints:?}"
    );
    assert_eq!(
        &contents(shards.as_ref(), cmd),
        clean,
        "contents differ from a clean run"
    );
    assert!(assert_monotone(&responses) > 0);
}

/// Two replicas (separate shard handles) run `cmd` at once.
pub fn racing_replicas(
    make: Factory<'_>,
    cmd: &RunIngestionCommand<Timestamp>,
    limit: u64,
) -> Contents {
    let (mut a, _ra) = start(frozen_config(1, limit), make());
    let (mut b, _rb) = start(frozen_config(2, limit), make());
    let commands = history(1, vec![StorageCommand::RunIngestion(cmd.clone())]);
    send(&mut a, &commands);
    send(&mut b, &commands);
    let shards = make();
    wait_for("racing replicas", || {
        ingested_offset(shards.as_ref(), cmd) >= limit
    });
    a.shutdown();
    b.shutdown();
    contents(shards.as_ref(), cmd)
}

/// Crashes a sink after its data write, but before its progress marker, at random.
pub struct RandomCrash(pub Mutex<Rng>);

impl FaultHook for RandomCrash {
    fn fail_at(&self, point: FaultPoint) -> bool {
        point == FaultPoint::SinkAfterData && self.0.lock().unwrap().below(3) == 0
    }
}

fn consolidate_timed(updates: impl IntoIterator<Item = (Row, u64, i64)>) -> Vec<((Row, u64), i64)> {
    let mut acc = BTreeMap::new();
    for (row, time, diff) in updates {
        *acc.entry((row, time)).or_insert(0i64) += diff;
    }
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// What a sink has committed: its updates and its frontier (`None` before anything).
pub type SinkOutput = (Vec<(Row, u64, i64)>, Option<u64>);

/// Reads a file sink's committed output, and checks nothing uncommitted is left.
pub fn file_output(path: &std::path::Path) -> SinkOutput {
    let Ok(bytes) = std::fs::read(progress_path(path)) else {
        return (Vec::new(), None);
    };
    let progress: Progress = serde_json::from_slice(&bytes).unwrap();
    (
        read_output(path).unwrap(),
        Some(progress.frontier.unwrap_or(u64::MAX)),
    )
}

/// How often the source of [`sink_exactly_once_under_kills`] binds a tick of offsets.
const SOURCE_TICK_MS: u64 = 5;

/// Starts a source replica that ingests `cmd` with no offset limit, one tick every
/// [`SOURCE_TICK_MS`], so it keeps advancing until it is shut down.
fn start_paced_source(
    shards: &Arc<dyn Shards>,
    cmd: &RunIngestionCommand<Timestamp>,
) -> (strata_replica::Replica, Responses) {
    let mut paced = cmd.clone();
    let SourceConnection::LoadGenerator {
        tick_interval_ms, ..
    } = &mut paced.description.connection
    else {
        unreachable!("the scenarios run load generators")
    };
    *tick_interval_ms = SOURCE_TICK_MS;
    let mut config = frozen_config(1, 0);
    config.offset_limit = None;
    config.retry_backoff = Duration::from_millis(1);
    let (mut source, rx) = start(config, Arc::clone(shards));
    send(
        &mut source,
        &history(1, vec![StorageCommand::RunIngestion(paced)]),
    );
    (source, rx)
}

/// The fewest kills [`sink_exactly_once_under_kills`] must land while the source
/// advances.
pub const KILLS_WHILE_THE_SOURCE_ADVANCES: usize = 20;

/// Runs a sink of `from` while its source ingests `cmd`, killing the sink `kills` times
/// at random points (and crashing it between data and progress at random), until the
/// source has ingested at least `limit` offsets; then checks the output.
///
/// Every kill lands while the source advances: one source replica runs throughout,
/// with no offset limit and one tick every [`SOURCE_TICK_MS`], and each kill waits
/// until the sink committed more than at the previous kill and the source moved since
/// the sink started. The scenario counts, and asserts, the kills at which the source
/// had advanced during the sink's life and advanced again after the kill.
pub fn sink_exactly_once_under_kills(
    make: Factory<'_>,
    cmd: &RunIngestionCommand<Timestamp>,
    sink: &RunSinkCommand<Timestamp>,
    limit: u64,
    kills: u64,
    output: &dyn Fn() -> SinkOutput,
) {
    let from_shard = sink.from_metadata.data_shard;
    let shards = make();
    let source = start_paced_source(&shards, cmd);
    let mut rng = Rng(0xfeed);
    // Per kill: the source's offset when the sink started, and right after the kill.
    let (mut lens, mut at_kills) = (Vec::new(), Vec::new());
    let mut previous = 0;
    for epoch in 1..=kills {
        let mut config = frozen_config(1, limit);
        config.offset_limit = None;
        config.faults = Some(Arc::new(RandomCrash(Mutex::new(Rng(epoch * 31 + 7)))));
        let faulty = Faulty::new(make(), epoch * 104_729, 20);
        let before = ingested_offset(shards.as_ref(), cmd);
        let (mut replica, _rx) = start(config, Arc::new(faulty));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunSink(sink.clone())]),
        );
        // Kill at a random point of observed progress (never of wall time): once the
        // sink committed more than at the previous kill and the source moved, plus a
        // small random delay.
        wait_for("sink and source progress", || {
            output().0.len() > previous && ingested_offset(shards.as_ref(), cmd) > before
        });
        std::thread::sleep(Duration::from_micros(rng.below(500)));
        replica.shutdown(); // kill
        at_kills.push((before, ingested_offset(shards.as_ref(), cmd)));
        previous = output().0.len();
        lens.push(previous);
    }
    // The source keeps going after the last kill, up to at least `limit`.
    let last = at_kills.last().map_or(0, |(_, after)| *after);
    wait_for("source", || {
        let offset = ingested_offset(shards.as_ref(), cmd);
        offset > last && offset >= limit
    });
    source.0.shutdown();
    // A kill landed while the source advanced if the source moved during the sink's
    // life and moved again after the kill (by the next kill, or the end), with the
    // same source replica running all along.
    let afterwards: Vec<u64> = at_kills
        .iter()
        .skip(1)
        .map(|(_, after)| *after)
        .chain([ingested_offset(shards.as_ref(), cmd)])
        .collect();
    let advancing = at_kills
        .iter()
        .zip(&afterwards)
        .filter(|((before, at), later)| before < at && at < *later)
        .count();

    let (mut replica, _rx) = start(frozen_config(1, limit), Arc::clone(&shards));
    send(
        &mut replica,
        &history(kills + 1, vec![StorageCommand::RunSink(sink.clone())]),
    );
    let upper = frontier_time(&shards.upper(from_shard).unwrap())
        .unwrap()
        .as_millis();
    wait_for("sink to catch up", || output().1 >= Some(upper));
    replica.shutdown();

    eprintln!("committed sink updates after each kill: {lens:?}");
    eprintln!(
        "source offsets (at sink start, after the kill): {at_kills:?}; \
         kills while the source advances: {advancing} of {kills}"
    );
    assert!(
        advancing >= KILLS_WHILE_THE_SOURCE_ADVANCES,
        "only {advancing} kills landed while the source advanced: {at_kills:?}"
    );
    assert!(
        lens.windows(2).all(|w| w[0] < w[1]),
        "the sink did not make progress between every two kills: {lens:?}"
    );
    let (output, _) = output();
    // The output holds exactly the collection's updates, per (row, time), and ignoring
    // times it consolidates to the contents at the final frontier.
    let (updates, _) = shards.listen_from(from_shard, Timestamp::new(0)).unwrap();
    let expected = consolidate_timed(updates.into_iter().map(|(r, t, d)| (r, t.as_millis(), d)));
    assert_eq!(consolidate_timed(output.clone()), expected);
    let rows = strata_replica::shard::consolidate_rows(output.into_iter().map(|(r, _, d)| (r, d)));
    let at_final = shards
        .snapshot(from_shard, Timestamp::new(upper - 1))
        .unwrap()
        .unwrap();
    assert_eq!(
        rows,
        at_final
            .into_iter()
            .map(|(r, _, d)| (r, d))
            .collect::<Vec<_>>()
    );
}
