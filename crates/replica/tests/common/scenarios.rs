//! Acceptance scenarios, run against any shard backend (a factory makes one handle per
//! simulated process).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_controller_api::{Antichain, GlobalId, Row, Timestamp};
use strata_instance_client::{
    RunIngestionCommand, RunSinkCommand, StorageCommand, StorageResponse,
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
pub fn assert_monotone(responses: &[StorageResponse<Timestamp>]) -> usize {
    let mut last: BTreeMap<GlobalId, Antichain<Timestamp>> = BTreeMap::new();
    let mut reports = 0;
    for response in responses {
        if let StorageResponse::FrontierUpper { id, upper } = response {
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

/// Runs `cmd` with `restarts` replicas that each start on faulty shards and are
/// aborted at a random point, then one that finishes. Checks exactly-once against
/// `clean` and monotone uppers.
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
        // ingestion is past the previous abort point, plus a small random delay.
        let target = (previous + 1 + rng.below(limit / restarts / 2)).min(limit);
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

    eprintln!("ingested offsets after each abort: {midpoints:?}");
    assert!(injected > 0, "no fault was injected");
    assert!(
        midpoints.iter().any(|o| *o > 0 && *o < limit),
        "no abort hit a running ingestion: {midpoints:?}"
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

/// Whether the source of `sink` ingested `cmd` up to `limit` and the sink's committed
/// `frontier` reached the upper of the collection it exports (no progress is left).
fn sink_caught_up(
    shards: &dyn Shards,
    cmd: &RunIngestionCommand<Timestamp>,
    sink: &RunSinkCommand<Timestamp>,
    limit: u64,
    frontier: Option<u64>,
) -> bool {
    if ingested_offset(shards, cmd) < limit {
        return false;
    }
    let upper = shards
        .upper(sink.from_metadata.data_shard)
        .ok()
        .and_then(|u| frontier_time(&u));
    upper.is_some_and(|u| frontier >= Some(u.as_millis()))
}

/// Runs `cmd` to `limit` while a sink of `from` is killed `kills` times at random
/// points (and crashes between data and progress at random); then checks the output.
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
    // The source advances in steps, one per kill over the first half of the kills, so
    // there is always new input for the sink to make progress on between kills.
    let step = limit.div_ceil((kills / 2).max(1));
    let mut source: Option<(strata_replica::Replica, Responses)> = None;
    let mut rng = Rng(0xfeed);
    let mut lens = Vec::new();
    let mut previous = 0;
    for epoch in 1..=kills {
        let source_limit = (step * epoch).min(limit);
        if ingested_offset(shards.as_ref(), cmd) < source_limit {
            if let Some((old, _)) = source.take() {
                old.shutdown();
            }
            let mut source_config = frozen_config(1, source_limit);
            source_config.retry_backoff = Duration::from_millis(1);
            let (mut next, rx) = start(source_config, Arc::clone(&shards));
            send(
                &mut next,
                &history(epoch, vec![StorageCommand::RunIngestion(cmd.clone())]),
            );
            source = Some((next, rx));
        }
        let mut config = frozen_config(1, limit);
        config.faults = Some(Arc::new(RandomCrash(Mutex::new(Rng(epoch * 31 + 7)))));
        let faulty = Faulty::new(make(), epoch * 104_729, 20);
        let (mut replica, _rx) = start(config, Arc::new(faulty));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunSink(sink.clone())]),
        );
        // Kill at a random point of observed progress (never of wall time): once the
        // sink committed more than at the previous kill (or has caught up with the
        // source's current step), plus a small random delay.
        wait_for("sink progress past the previous kill", || {
            let (updates, frontier) = output();
            updates.len() > previous
                || sink_caught_up(shards.as_ref(), cmd, sink, source_limit, frontier)
        });
        std::thread::sleep(Duration::from_micros(rng.below(500)));
        replica.shutdown(); // kill
        previous = output().0.len();
        lens.push(previous);
    }
    wait_for("source", || ingested_offset(shards.as_ref(), cmd) >= limit);
    if let Some((source, _)) = source.take() {
        source.shutdown();
    }

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
    assert!(
        lens.windows(2).any(|w| w[0] != w[1]),
        "the sink never made progress between kills"
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
