//! Registered source connectors through a real replica: a connector that consumes its
//! upstream (each offset handed out once per reader, forgotten once durable) is
//! exactly-once under aborts and store faults; a connector that breaks its contract,
//! stalls or is unknown is reported, never written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use common::*;
use strata_controller_api::{
    ConnectorConfig, Datum, GlobalId, RelationDesc, Row, ScalarType, SourceConnection,
    SourceOutput, Timestamp,
};
use strata_instance_client::{ReplicaResponse, RunIngestionCommand, Status, StorageCommand};
use strata_replica::connector::{
    ConnectorError, ConnectorRegistry, Offset, Pacing, ReaderShare, SourceConnector,
    SourceProgress, SourceReader, SourceStatus, SourceUpdate, SourceWaker,
};
use strata_replica::shard::faults::Faulty;
use strata_replica::shard::memory::MemShards;
use strata_replica::shard::{Shards, consolidate_rows};

/// What the test upstream does besides handing out its log.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    /// Every `n`th poll fails (0: never).
    fail_every: u64,
    /// Hand out an update one past the range asked for.
    stray: bool,
    /// The status every poll reports (`Running` if unset).
    status: Option<SourceStatus>,
}

#[derive(Debug, Default)]
struct LogState {
    /// Transaction `o` is at offset `o`.
    transactions: Vec<Vec<(i64, i64)>>,
    /// Everything below this was declared durable and is forgotten.
    released: Offset,
    opens: Vec<Offset>,
    polls: u64,
    behaviour: Behaviour,
}

/// An upstream log shared by every reader, like a replication slot: it forgets what
/// was declared durable and refuses to be re-read from before it.
#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<LogState>>);

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with(transactions: u64, behaviour: Behaviour) -> Log {
        let log = Log::default();
        {
            let mut state = log.lock();
            state.behaviour = behaviour;
            for t in 0..transactions {
                let t = i64::try_from(t).unwrap();
                let mut changes = vec![(t, 1)];
                if t % 5 == 4 {
                    // Retract an earlier row in the same transaction.
                    changes.push((t - 2, -1));
                }
                state.transactions.push(changes);
            }
        }
        log
    }

    fn contents(&self) -> Vec<(Row, i64)> {
        let state = self.lock();
        consolidate_rows(
            state
                .transactions
                .iter()
                .flatten()
                .map(|(x, diff)| (row(*x), *diff)),
        )
    }
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x)])
}

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

#[derive(Debug)]
struct LogConnector(Log);

impl SourceConnector for LogConnector {
    fn kind(&self) -> &str {
        "log"
    }

    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        vec![(SourceOutput::Primary, desc())]
    }

    fn pacing(&self) -> Pacing {
        Pacing {
            tick_interval: std::time::Duration::from_millis(1),
            // Small rounds, so aborts land between many of them.
            offsets_per_tick: Some(3),
        }
    }

    fn open(
        &self,
        resume: Offset,
        share: ReaderShare,
        _waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        assert_eq!(
            share,
            ReaderShare::WHOLE,
            "a non-parallel source has one reader"
        );
        let mut state = self.0.lock();
        state.opens.push(resume);
        if resume < state.released {
            return Err(ConnectorError::Upstream {
                kind: "log".into(),
                reason: format!("offset {resume} was released at {}", state.released),
            });
        }
        Ok(Box::new(LogReader {
            log: self.0.clone(),
            next: resume,
            buffer: VecDeque::new(),
        }))
    }
}

struct LogReader {
    log: Log,
    next: Offset,
    buffer: VecDeque<(Offset, Vec<(i64, i64)>)>,
}

impl SourceReader for LogReader {
    fn poll(&mut self) -> Result<SourceProgress, ConnectorError> {
        let mut state = self.log.lock();
        state.polls += 1;
        let fail_every = state.behaviour.fail_every;
        if fail_every > 0 && state.polls.is_multiple_of(fail_every) {
            return Err(ConnectorError::Upstream {
                kind: "log".into(),
                reason: "injected: the connection dropped".into(),
            });
        }
        let start = usize::try_from(self.next).unwrap();
        for (o, changes) in state.transactions.iter().enumerate().skip(start) {
            self.buffer.push_back((o as Offset, changes.clone()));
        }
        self.next = self.next.max(state.transactions.len() as Offset);
        Ok(SourceProgress {
            frontier: self.next,
            upstream: Some(self.next),
            status: state
                .behaviour
                .status
                .clone()
                .unwrap_or(SourceStatus::Running),
        })
    }

    fn read(
        &mut self,
        range: Range<Offset>,
        emit: &mut dyn FnMut(SourceUpdate),
    ) -> Result<(), ConnectorError> {
        let stray = self.log.lock().behaviour.stray;
        // Each transaction is handed out once: a reader cannot go back.
        while self.buffer.front().is_some_and(|(o, _)| *o < range.end) {
            let Some((offset, changes)) = self.buffer.pop_front() else {
                break;
            };
            assert!(
                offset >= range.start,
                "offset {offset} was skipped: asked {range:?}"
            );
            for (x, diff) in changes {
                emit(SourceUpdate {
                    offset,
                    output: SourceOutput::Primary,
                    row: row(x),
                    diff,
                });
            }
        }
        if stray {
            emit(SourceUpdate {
                offset: range.end,
                output: SourceOutput::Primary,
                row: row(-1),
                diff: 1,
            });
        }
        Ok(())
    }

    fn durable(&mut self, offset: Offset) {
        let mut state = self.log.lock();
        state.released = state.released.max(offset);
    }
}

fn registry(log: &Log) -> ConnectorRegistry {
    let mut registry = ConnectorRegistry::default();
    let log = log.clone();
    registry
        .register_source("log", move |_: &ConnectorConfig| {
            Ok(Arc::new(LogConnector(log.clone())) as Arc<dyn SourceConnector>)
        })
        .unwrap();
    registry
}

/// An ingestion of connector `kind` with id `User(base)`, remap `User(base + 1)`.
fn ingestion(base: u64, kind: &str) -> RunIngestionCommand<Timestamp> {
    ingestion_of(
        base,
        SourceConnection::Connector(ConnectorConfig::new(kind)),
        vec![(SourceOutput::Primary, desc())],
    )
}

fn config(log: &Log) -> strata_replica::ReplicaConfig {
    let mut config = frozen_config(2, u64::MAX);
    config.offset_limit = None;
    config.connectors = registry(log);
    config
}

fn statuses(responses: &[ReplicaResponse<Timestamp>]) -> Vec<(Status, String)> {
    responses
        .iter()
        .filter_map(|r| match r {
            ReplicaResponse::StatusUpdate(u) => {
                Some((u.status, u.error.clone().unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_consuming_source_is_exactly_once_under_aborts_store_faults_and_upstream_errors() {
    const TRANSACTIONS: u64 = 240;
    let log = Log::with(
        TRANSACTIONS,
        Behaviour {
            fail_every: 7,
            ..Behaviour::default()
        },
    );
    let cmd = ingestion(500, "log");
    let memory = MemShards::new();
    let watch: Arc<dyn Shards> = Arc::new(memory.clone());
    let mut rng = Rng(0xC0FFEE);
    let (mut previous, mut mid_run, mut injected) = (0, 0, 0);
    for epoch in 1..=12 {
        let faulty = Faulty::new(memory.clone(), epoch * 104_729, 10);
        let (mut replica, _rx) = start(config(&log), Arc::new(faulty.clone()));
        send(
            &mut replica,
            &history(epoch, vec![StorageCommand::RunIngestion(cmd.clone())]),
        );
        let target = (previous + 1 + rng.below(12)).min(TRANSACTIONS);
        wait_for("progress past the previous abort", || {
            ingested_offset(watch.as_ref(), &cmd) >= target
        });
        replica.shutdown();
        injected += faulty.injected();
        previous = ingested_offset(watch.as_ref(), &cmd);
        // The upstream never forgets what the data shards do not hold.
        let released = log.lock().released;
        assert!(
            released <= previous,
            "released {released}, but the shards hold only {previous}"
        );
        if previous < TRANSACTIONS {
            mid_run += 1;
        }
    }
    let (mut replica, _rx) = start(config(&log), Arc::clone(&watch));
    send(
        &mut replica,
        &history(13, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("the final run", || {
        ingested_offset(watch.as_ref(), &cmd) >= TRANSACTIONS
    });
    replica.shutdown();

    let state = log.lock();
    eprintln!(
        "opens at {:?}; {} polls; {injected} store faults; {mid_run} aborts mid-run",
        state.opens, state.polls
    );
    assert!(injected > 0, "no store fault was injected");
    assert!(
        mid_run >= 6,
        "only {mid_run} aborts hit a running ingestion"
    );
    // Reopened after aborts and upstream errors, each time where the shards left off.
    assert!(state.opens.len() > 13, "{:?}", state.opens);
    drop(state);
    let got = contents(watch.as_ref(), &cmd);
    assert_eq!(got[&GlobalId::User(500)], log.contents());
}

#[test]
fn a_stray_offset_is_a_contract_error_and_writes_nothing() {
    let log = Log::with(
        10,
        Behaviour {
            stray: true,
            ..Behaviour::default()
        },
    );
    let cmd = ingestion(600, "log");
    let memory = MemShards::new();
    let (mut replica, rx) = start(config(&log), Arc::new(memory.clone()));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    let mut seen = Vec::new();
    wait_for("a contract error", || {
        seen.extend(drain(&rx));
        statuses(&seen)
            .iter()
            .any(|(s, e)| *s == Status::Stalled && e.contains("broke the connector contract"))
    });
    replica.shutdown();
    assert!(contents(&memory, &cmd)[&GlobalId::User(600)].is_empty());
    assert_eq!(log.lock().released, 0, "nothing was durable");
}

#[test]
fn a_stalled_or_ceased_source_reports_its_reason() {
    for (status, expected) in [
        (
            SourceStatus::Stalled("upstream unreachable, retrying".into()),
            "upstream unreachable, retrying",
        ),
        (
            SourceStatus::Ceased("the table was truncated".into()),
            "the source ceased: the table was truncated",
        ),
    ] {
        let log = Log::with(
            5,
            Behaviour {
                status: Some(status),
                ..Behaviour::default()
            },
        );
        let cmd = ingestion(700, "log");
        let memory = MemShards::new();
        let (mut replica, rx) = start(config(&log), Arc::new(memory.clone()));
        send(
            &mut replica,
            &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
        );
        let mut seen = Vec::new();
        wait_for(expected, || {
            seen.extend(drain(&rx));
            statuses(&seen)
                .iter()
                .any(|(s, e)| *s == Status::Stalled && e == expected)
        });
        replica.shutdown();
        assert!(contents(&memory, &cmd)[&GlobalId::User(700)].is_empty());
    }
}

#[test]
fn an_unknown_kind_stalls_and_names_the_known_ones() {
    let log = Log::default();
    let cmd = ingestion(800, "kafka");
    let (mut replica, rx) = start(config(&log), Arc::new(MemShards::new()));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    let mut seen = Vec::new();
    wait_for("the unknown kind's status", || {
        seen.extend(drain(&rx));
        !statuses(&seen).is_empty()
    });
    replica.shutdown();
    let (status, error) = &statuses(&seen)[0];
    assert_eq!(*status, Status::Stalled);
    assert!(
        error.contains("\"kafka\"") && error.contains("load-generator") && error.contains("log"),
        "{error}"
    );
}

#[test]
fn a_subsource_added_to_a_running_consuming_source_stalls_instead_of_rewriting() {
    let log = Log::with(30, Behaviour::default());
    let cmd = ingestion(900, "log");
    let memory = MemShards::new();
    let watch: Arc<dyn Shards> = Arc::new(memory.clone());
    let (replica, _rx) = start(config(&log), Arc::new(memory.clone()));
    let mut replica = replica;
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("the first run", || {
        ingested_offset(watch.as_ref(), &cmd) >= 30
    });
    replica.shutdown();
    let before = contents(&memory, &cmd);

    // The same source with a second collection of the same output, on a new shard.
    let mut grown = cmd.clone();
    let added = GlobalId::User(909);
    grown
        .description
        .source_exports
        .insert(added, SourceOutput::Primary);
    let mut meta = grown.storage_metadata[&GlobalId::User(900)].clone();
    meta.data_shard = shard(99, 9);
    grown.storage_metadata.insert(added, meta);
    let opens_before = log.lock().opens.len();
    let (mut replica, rx) = start(config(&log), Arc::new(memory.clone()));
    send(
        &mut replica,
        &history(2, vec![StorageCommand::RunIngestion(grown.clone())]),
    );
    let mut seen = Vec::new();
    wait_for("the replay refusal", || {
        seen.extend(drain(&rx));
        statuses(&seen)
            .iter()
            .any(|(s, e)| *s == Status::Stalled && e.contains("cannot re-read its start"))
    });
    replica.shutdown();
    // Nothing was re-read from the start, and nothing was rewritten.
    assert_eq!(log.lock().opens.len(), opens_before, "a reader was opened");
    let after = contents(&memory, &grown);
    assert_eq!(after[&GlobalId::User(900)], before[&GlobalId::User(900)]);
    assert!(after[&added].is_empty());
}

#[test]
fn a_connector_whose_upstream_is_down_at_planning_starts_once_it_is_up() {
    let log = Log::with(20, Behaviour::default());
    // The factory fails on its upstream three times, then works.
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(3));
    let mut registry = ConnectorRegistry::default();
    {
        let (log, failures) = (log.clone(), Arc::clone(&failures));
        registry
            .register_source("flaky", move |_: &ConnectorConfig| {
                let left = failures.load(std::sync::atomic::Ordering::SeqCst);
                if left > 0 {
                    failures.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                    return Err(ConnectorError::Upstream {
                        kind: "flaky".into(),
                        reason: "connection refused".into(),
                    });
                }
                Ok(Arc::new(LogConnector(log.clone())) as Arc<dyn SourceConnector>)
            })
            .unwrap();
    }
    let mut config = config(&log);
    config.connectors = registry;
    let cmd = ingestion(950, "flaky");
    let memory = MemShards::new();
    let (mut replica, rx) = start(config, Arc::new(memory.clone()));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("the source to ingest once its upstream is up", || {
        ingested_offset(&memory, &cmd) >= 20
    });
    let seen = drain(&rx);
    replica.shutdown();
    assert_eq!(failures.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(
        statuses(&seen)
            .iter()
            .any(|(s, e)| *s == Status::Stalled && e.contains("connection refused")),
        "{:?}",
        statuses(&seen)
    );
    assert_eq!(
        contents(&memory, &cmd)[&GlobalId::User(950)],
        log.contents()
    );
}
