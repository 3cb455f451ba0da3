//! A source connector and a sink connector a downstream team writes against Strata's
//! public connector API, run through a real controller and replicas with exactly-once
//! results.
//!
//! The upstream is a [`Feed`]: an append-only log of transactions, each at one offset,
//! that, like a Postgres replication slot, *forgets* what its consumer declared durable
//! and refuses to be re-read from before that point. The source connector
//! ([`FeedConnector`]) does nothing for exactly-once beyond re-reading from the offset
//! it is opened at; the replica binds offsets in the remap shard, writes each round
//! once, and only then tells the reader what is durable.
//!
//! The destination is a [`Ledger`]: an in-memory store that applies a batch and its
//! progress together, and refuses a batch that does not start where it ends (another
//! replica got there first). The sink connector ([`LedgerConnector`]) keeps nothing:
//! the replica reads the input, asks the ledger where it is, and hands it batches.
//!
//! The scenario registers both under the kinds `feed` and `ledger`, creates a feed
//! source and a ledger sink of it on two replicas, writes transactions of inserts,
//! updates and deletes while a replica is killed and restarted, and checks that the
//! source's collection and the ledger both hold exactly the feed's contents: nothing
//! lost, nothing twice.
//!
//! Run it with `cargo run -p strata-testkit --example custom_connectors`; it exits
//! non-zero on any mismatch. `tests/custom_connectors_example.rs` runs the same
//! [`scenario`].

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use strata_controller_api::{
    Antichain, CollectionDescription, ConnectorConfig, DataSource, Datum, ExportDescription,
    Exports, GlobalId, IngestionDescription, RelationDesc, Row, ScalarType, SinkConnection,
    SourceConnection, SourceOutput, Timestamp,
};
use strata_replica::connector::{
    ConnectorError, ConnectorRegistry, Offset, Pacing, ReaderShare, SinkBatch, SinkCommit,
    SinkConnector, SinkWriter, SourceConnector, SourceProgress, SourceReader, SourceStatus,
    SourceUpdate, SourceWaker,
};
use strata_testkit::harness::{Harness, HarnessError, multiset_difference, render_difference};

/// The kind the source connector is registered as.
pub const KIND: &str = "feed";
/// The kind the sink connector is registered as.
pub const LEDGER: &str = "ledger";

/// One change in a feed transaction: `diff` copies of `(key, value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The row's key.
    pub key: i64,
    /// The row's value.
    pub value: String,
    /// +1 for an insert, -1 for a delete (an update is both).
    pub diff: i64,
}

#[derive(Debug, Default)]
struct FeedLog {
    /// Transaction `o` is at offset `o`.
    transactions: Vec<Vec<Change>>,
    /// Everything below this was declared durable and is gone.
    released: Offset,
    /// Every offset a reader was opened at.
    opened_at: Vec<Offset>,
}

/// An upstream log that forgets what was declared durable.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    log: Arc<Mutex<FeedLog>>,
}

impl Feed {
    fn lock(&self) -> MutexGuard<'_, FeedLog> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one transaction; returns its offset.
    pub fn commit(&self, changes: Vec<Change>) -> Offset {
        let mut log = self.lock();
        log.transactions.push(changes);
        log.transactions.len() as Offset - 1
    }

    /// How many transactions the feed holds.
    pub fn len(&self) -> Offset {
        self.lock().transactions.len() as Offset
    }

    /// Whether the feed holds no transaction.
    pub fn is_empty(&self) -> bool {
        self.lock().transactions.is_empty()
    }

    /// The offset below which the feed has forgotten everything.
    pub fn released(&self) -> Offset {
        self.lock().released
    }

    /// The offsets readers were opened at.
    pub fn opened_at(&self) -> Vec<Offset> {
        self.lock().opened_at.clone()
    }

    /// The feed's contents, consolidated.
    pub fn contents(&self) -> BTreeMap<Row, i64> {
        let mut rows = BTreeMap::new();
        for change in self.lock().transactions.iter().flatten() {
            *rows.entry(row(change)).or_insert(0) += change.diff;
        }
        rows.retain(|_, diff| *diff != 0);
        rows
    }
}

fn row(change: &Change) -> Row {
    Row::pack(&[
        Datum::Int64(change.key),
        Datum::String(change.value.clone()),
    ])
}

/// The schema of a feed source's one output.
pub fn feed_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("key", ScalarType::Int64.nullable(false))
        .with_column("value", ScalarType::String.nullable(false))
        .finish()
}

/// The connector: a feed, found by the `feed` setting among the feeds it was built
/// with.
#[derive(Debug)]
pub struct FeedConnector {
    feed: Feed,
}

impl SourceConnector for FeedConnector {
    fn kind(&self) -> &str {
        KIND
    }

    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        vec![(SourceOutput::Primary, feed_desc())]
    }

    fn pacing(&self) -> Pacing {
        Pacing {
            tick_interval: Duration::from_millis(5),
            offsets_per_tick: None,
        }
    }

    fn open(
        &self,
        resume: Offset,
        _share: ReaderShare,
        _waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let mut log = self.feed.lock();
        log.opened_at.push(resume);
        if resume < log.released {
            // What a replication slot says when asked for a position it released.
            return Err(ConnectorError::Upstream {
                kind: KIND.into(),
                reason: format!(
                    "offset {resume} was released (the feed keeps {} on)",
                    log.released
                ),
            });
        }
        Ok(Box::new(FeedReader {
            feed: self.feed.clone(),
            next: resume,
            buffer: VecDeque::new(),
        }))
    }
}

/// Reads a feed from an offset; hands out each transaction once.
struct FeedReader {
    feed: Feed,
    /// The next offset to take from the feed.
    next: Offset,
    /// Transactions taken and not yet handed out, in offset order.
    buffer: VecDeque<(Offset, Vec<Change>)>,
}

impl SourceReader for FeedReader {
    fn poll(&mut self) -> Result<SourceProgress, ConnectorError> {
        let log = self.feed.lock();
        let start = usize::try_from(self.next).unwrap_or(usize::MAX);
        for (i, changes) in log.transactions.iter().enumerate().skip(start) {
            self.buffer.push_back((i as Offset, changes.clone()));
        }
        self.next = self.next.max(log.transactions.len() as Offset);
        Ok(SourceProgress {
            frontier: self.next,
            upstream: Some(log.transactions.len() as Offset),
            status: SourceStatus::Running,
        })
    }

    fn read(
        &mut self,
        range: Range<Offset>,
        emit: &mut dyn FnMut(SourceUpdate),
    ) -> Result<(), ConnectorError> {
        while let Some((offset, _)) = self.buffer.front() {
            if *offset >= range.end {
                break;
            }
            let Some((offset, changes)) = self.buffer.pop_front() else {
                break;
            };
            if offset < range.start {
                continue;
            }
            for change in &changes {
                emit(SourceUpdate {
                    offset,
                    output: SourceOutput::Primary,
                    row: row(change),
                    diff: change.diff,
                });
            }
        }
        Ok(())
    }

    fn durable(&mut self, offset: Offset) {
        let mut log = self.feed.lock();
        log.released = log.released.max(offset);
    }
}

#[derive(Debug, Default)]
struct LedgerState {
    /// Every committed update, with its time.
    updates: Vec<(Row, u64, i64)>,
    /// Where the ledger is: `None` before the first batch; then the upper of the last
    /// batch (`[]` once the input closed).
    frontier: Option<Antichain<Timestamp>>,
    /// Batches refused because another writer had committed their range.
    lost_races: u64,
}

/// A destination that applies a batch and its progress together.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    state: Arc<Mutex<LedgerState>>,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ledger's contents at `time`, consolidated.
    pub fn contents_at(&self, time: u64) -> BTreeMap<Row, i64> {
        let mut rows = BTreeMap::new();
        for (row, at, diff) in &self.lock().updates {
            if *at <= time {
                *rows.entry(row.clone()).or_insert(0) += diff;
            }
        }
        rows.retain(|_, diff| *diff != 0);
        rows
    }

    /// Whether the ledger holds every update before `time`.
    pub fn holds_before(&self, time: u64) -> bool {
        self.lock()
            .frontier
            .as_ref()
            .is_some_and(|f| f.elements().first().is_none_or(|t| t.as_millis() >= time))
    }

    /// How many batches were refused as lost races.
    pub fn lost_races(&self) -> u64 {
        self.lock().lost_races
    }
}

/// The sink connector: writes to the ledger it was built with.
#[derive(Debug)]
pub struct LedgerConnector {
    ledger: Ledger,
}

impl SinkConnector for LedgerConnector {
    fn kind(&self) -> &str {
        LEDGER
    }

    fn open(
        &self,
        _sink: GlobalId,
        _desc: &RelationDesc,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(LedgerWriter {
            ledger: self.ledger.clone(),
            staged: Vec::new(),
        }))
    }
}

/// Stages a batch, then applies it with its progress under one lock.
struct LedgerWriter {
    ledger: Ledger,
    staged: Vec<(Row, u64, i64)>,
}

impl SinkWriter for LedgerWriter {
    fn recover(&mut self, start: Timestamp) -> Result<Antichain<Timestamp>, ConnectorError> {
        self.staged.clear();
        Ok(self
            .ledger
            .lock()
            .frontier
            .clone()
            .unwrap_or_else(|| Antichain::from_elem(start)))
    }

    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<u64, ConnectorError> {
        self.staged = batch
            .updates
            .iter()
            .map(|(row, time, diff)| (row.clone(), time.as_millis(), *diff))
            .collect();
        Ok(batch
            .updates
            .iter()
            .map(|(row, _, _)| row.as_bytes().len() as u64)
            .sum())
    }

    fn commit(&mut self, batch: &SinkBatch<'_>) -> Result<SinkCommit, ConnectorError> {
        let mut state = self.ledger.lock();
        let at = state
            .frontier
            .clone()
            .unwrap_or_else(|| Antichain::from_elem(batch.lower));
        if at != Antichain::from_elem(batch.lower) {
            state.lost_races += 1;
            return Ok(SinkCommit::LostRace);
        }
        state.updates.append(&mut self.staged);
        state.frontier = Some(batch.upper.clone());
        Ok(SinkCommit::Committed)
    }
}

/// A registry with the built-ins, a `feed` source kind whose `feed` setting names one
/// of `feeds`, and a `ledger` sink kind that writes to `ledger`.
pub fn registry(
    feeds: BTreeMap<String, Feed>,
    ledger: Ledger,
) -> Result<ConnectorRegistry, ConnectorError> {
    let mut registry = ConnectorRegistry::default();
    registry.register_source(KIND, move |config: &ConnectorConfig| {
        let invalid = |reason: String| ConnectorError::InvalidConfig {
            kind: KIND.into(),
            reason,
        };
        let name = config
            .setting("feed")
            .ok_or_else(|| invalid("the `feed` setting is required".into()))?;
        let feed = feeds
            .get(name)
            .ok_or_else(|| invalid(format!("no feed named {name:?}")))?;
        Ok(Arc::new(FeedConnector { feed: feed.clone() }) as Arc<dyn SourceConnector>)
    })?;
    registry.register_sink(LEDGER, move |_: &ConnectorConfig| {
        Ok(Arc::new(LedgerConnector {
            ledger: ledger.clone(),
        }) as Arc<dyn SinkConnector>)
    })?;
    Ok(registry)
}

/// What went wrong.
#[derive(Debug)]
pub enum ScenarioError {
    /// The harness or the controller failed.
    Harness(HarnessError),
    /// The connector registry refused the connector.
    Registry(ConnectorError),
    /// A collection did not hold what it must, or the feed was misused.
    Mismatch(String),
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScenarioError::Harness(e) => write!(f, "harness: {e}"),
            ScenarioError::Registry(e) => write!(f, "registry: {e}"),
            ScenarioError::Mismatch(what) => write!(f, "mismatch: {what}"),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl From<HarnessError> for ScenarioError {
    fn from(e: HarnessError) -> Self {
        ScenarioError::Harness(e)
    }
}

/// What the scenario saw.
#[derive(Debug)]
pub struct Outcome {
    /// Transactions in the feed.
    pub transactions: u64,
    /// Distinct rows the source's collection holds.
    pub rows: usize,
    /// How often a reader was opened (more than once: after the kill and restart).
    pub opens: usize,
    /// Distinct rows the ledger holds.
    pub ledger_rows: usize,
}

/// A transaction of the workload: insert key `t`, and update key `t - 3` (a delete and
/// an insert) when there is one.
fn transaction(t: i64) -> Vec<Change> {
    let mut changes = vec![Change {
        key: t,
        value: format!("v{t}"),
        diff: 1,
    }];
    if t >= 3 {
        changes.push(Change {
            key: t - 3,
            value: format!("v{}", t - 3),
            diff: -1,
        });
        changes.push(Change {
            key: t - 3,
            value: format!("updated by {t}"),
            diff: 1,
        });
    }
    changes
}

/// The whole test: a feed source and a ledger sink of it on two replicas, a replica
/// killed mid-stream, exact results. Writes `transactions` transactions.
pub async fn scenario(transactions: i64) -> Result<Outcome, ScenarioError> {
    let feed = Feed::default();
    let ledger = Ledger::default();
    let registry = registry(
        [("orders".to_owned(), feed.clone())].into_iter().collect(),
        ledger.clone(),
    )
    .map_err(ScenarioError::Registry)?;
    let mut harness = Harness::builder()
        .replicas(2)
        .connectors(registry)
        .timeout(Duration::from_secs(60))
        .build()
        .await?;

    let (ingestion, remap) = (GlobalId::User(1), GlobalId::User(2));
    let connection = SourceConnection::Connector(ConnectorConfig::new(KIND).with("feed", "orders"));
    let collections = vec![
        (
            remap,
            CollectionDescription::for_source(
                strata_replica::remap::remap_desc(),
                DataSource::Progress,
            ),
        ),
        (
            ingestion,
            CollectionDescription::for_source(
                feed_desc(),
                DataSource::Ingestion(IngestionDescription {
                    connection,
                    instance_id: harness.instance(),
                    remap_collection_id: remap,
                    source_exports: BTreeMap::new(),
                    as_of: None,
                }),
            ),
        ),
    ];
    harness.create_collections(None, collections).await?;
    let sink = GlobalId::User(3);
    let export = ExportDescription {
        from: ingestion,
        from_desc: feed_desc(),
        connection: SinkConnection::Connector(ConnectorConfig::new(LEDGER)),
        as_of: Antichain::from_elem(Timestamp::new(0)),
        with_snapshot: true,
        instance_id: harness.instance(),
    };
    harness
        .controller_mut()
        .create_exports(vec![(sink, export)])
        .await
        .map_err(|e| ScenarioError::Mismatch(format!("creating the ledger sink: {e}")))?;

    let half = transactions / 2;
    for t in 0..half {
        feed.commit(transaction(t));
    }
    harness.wait_for_bound_offset(ingestion, remap, 1).await?;
    harness.kill_replica(0).await?;
    for t in half..transactions {
        feed.commit(transaction(t));
    }
    harness.restart_replica(0).await?;
    harness.wait_for_replica(0).await?;

    let at = harness
        .wait_for_bound_offset(ingestion, remap, feed.len())
        .await?;
    let actual = harness.snapshot_multiset(ingestion, at).await?;
    let expected = feed.contents();
    let difference = multiset_difference(actual, expected.clone());
    if !difference.is_empty() {
        return Err(ScenarioError::Mismatch(format!(
            "the feed source:\n{}",
            render_difference(&difference)
        )));
    }
    let through = at.as_millis() + 1;
    harness
        .wait_until("the ledger to catch up", |_| {
            if ledger.holds_before(through) {
                Ok(())
            } else {
                Err(format!("the ledger is short of {through}"))
            }
        })
        .await?;
    let written = ledger.contents_at(at.as_millis());
    let difference = multiset_difference(written.clone(), expected.clone());
    if !difference.is_empty() {
        return Err(ScenarioError::Mismatch(format!(
            "the ledger sink:\n{}",
            render_difference(&difference)
        )));
    }
    if feed.released() > feed.len() {
        return Err(ScenarioError::Mismatch(format!(
            "the feed released {} of {} offsets",
            feed.released(),
            feed.len()
        )));
    }
    Ok(Outcome {
        transactions: feed.len(),
        rows: expected.len(),
        opens: feed.opened_at().len(),
        ledger_rows: written.len(),
    })
}

#[allow(clippy::print_stdout)] // an example reports on stdout
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    strata_testkit::init_test_tracing();
    match scenario(40).await {
        Ok(outcome) => {
            println!(
                "ok: {} transactions, {} rows exact in the source and {} in the ledger, {} reader opens",
                outcome.transactions, outcome.rows, outcome.ledger_rows, outcome.opens
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
