//! The Postgres source's reader: a thread with its own runtime takes the snapshot and
//! follows the replication stream, and hands whole transactions to the reader, which
//! the replica polls and reads (see the module doc of [`super`]).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use strata_controller_api::SourceOutput;

use super::pgoutput::{self, Message, TupleValue};
use super::snapshot::{read_in_snapshot, slot_created};
use super::{Settings, Table, invalid, sql_client, types, upstream};
use crate::connector::{
    ConnectorError, Offset, SourceProgress, SourceReader, SourceStatus, SourceUpdate, SourceWaker,
};

/// What the stream thread tells the reader.
enum Event {
    /// A transaction (or the snapshot, at offset 0): its updates.
    Transaction(Offset, Vec<SourceUpdate>),
    /// Everything below this offset was sent.
    Frontier(Offset),
    /// The server's position, for the upstream frontier.
    Upstream(Offset),
    /// The source's status changed.
    Status(SourceStatus),
    /// The snapshot session failed: the reader must be re-opened where the data shards
    /// leave off, which may no longer be offset 0 (another replica may have written).
    Failed(String),
}

/// A Postgres source read from some offset.
pub(super) struct PostgresReader {
    events: Receiver<Event>,
    buffer: VecDeque<(Offset, Vec<SourceUpdate>)>,
    frontier: Offset,
    upstream: Option<Offset>,
    status: SourceStatus,
    durable: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PostgresReader {
    pub(super) fn start(
        settings: Settings,
        tables: Vec<Table>,
        resume: Offset,
        waker: SourceWaker,
        backfill: Vec<SourceOutput>,
    ) -> Result<PostgresReader, ConnectorError> {
        let (tx, events) = channel();
        let durable = Arc::new(AtomicU64::new(resume));
        let stop = Arc::new(AtomicBool::new(false));
        let stream = Stream {
            settings,
            tables,
            position: resume,
            backfill: (!backfill.is_empty()).then(|| Backfill {
                outputs: backfill,
                at: resume,
                until: None,
                updates: Vec::new(),
            }),
            durable: Arc::clone(&durable),
            stop: Arc::clone(&stop),
            tx: Notifier { tx, waker },
        };
        let thread = std::thread::Builder::new()
            .name("postgres-source".into())
            .spawn(move || stream.run())
            .map_err(upstream)?;
        Ok(PostgresReader {
            events,
            buffer: VecDeque::new(),
            frontier: resume,
            upstream: None,
            status: SourceStatus::Starting,
            durable,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for PostgresReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl SourceReader for PostgresReader {
    fn poll(&mut self) -> Result<SourceProgress, ConnectorError> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Transaction(offset, updates) => self.buffer.push_back((offset, updates)),
                Event::Frontier(frontier) => {
                    self.frontier = self.frontier.max(frontier);
                    if self.status == SourceStatus::Starting
                        || matches!(self.status, SourceStatus::Stalled(_))
                    {
                        self.status = SourceStatus::Running;
                    }
                }
                Event::Upstream(position) => self.upstream = Some(position),
                Event::Status(status) => self.status = status,
                Event::Failed(reason) => return Err(upstream(reason)),
            }
        }
        Ok(SourceProgress {
            frontier: self.frontier,
            upstream: self.upstream,
            status: self.status.clone(),
        })
    }

    fn read(
        &mut self,
        range: Range<Offset>,
        emit: &mut dyn FnMut(SourceUpdate),
    ) -> Result<(), ConnectorError> {
        while self.buffer.front().is_some_and(|(o, _)| *o < range.end) {
            let Some((offset, updates)) = self.buffer.pop_front() else {
                break;
            };
            if offset < range.start {
                return Err(ConnectorError::Contract {
                    kind: super::KIND.to_owned(),
                    reason: format!("offset {offset} was skipped: asked for {range:?}"),
                });
            }
            for update in updates {
                emit(update);
            }
        }
        Ok(())
    }

    fn durable(&mut self, offset: Offset) {
        self.durable.fetch_max(offset, Ordering::SeqCst);
    }
}

/// Why a session ended.
enum Ended {
    /// Stopped by the reader.
    Stopped,
    /// A definite error: the source cannot go on.
    Ceased(String),
}

/// Tables being backfilled (see `PostgresConnector::open_with_backfill`).
struct Backfill {
    /// Their outputs.
    outputs: Vec<SourceOutput>,
    /// The reader's resume offset, where the backfill is handed out.
    at: Offset,
    /// The consistent point of the backfill's snapshot, once taken: transactions whose
    /// commit starts below it are in the snapshot.
    until: Option<Offset>,
    /// The snapshot's rows and the rewinds so far, at offset `at`.
    updates: Vec<SourceUpdate>,
}

/// The stream thread's state.
struct Stream {
    settings: Settings,
    tables: Vec<Table>,
    /// Transactions ending before this were handed to the reader.
    position: Offset,
    /// A backfill not yet handed out: the frontier waits at its offset meanwhile.
    backfill: Option<Backfill>,
    durable: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tx: Notifier,
}

/// Sends events to the reader and wakes the replica's leader to poll them.
struct Notifier {
    tx: Sender<Event>,
    waker: SourceWaker,
}

impl Notifier {
    /// Sends `event`; an error means the reader is gone, which `stop` also says.
    fn send(&self, event: Event) -> Result<(), std::sync::mpsc::SendError<Event>> {
        let sent = self.tx.send(event);
        self.waker.wake();
        sent
    }
}

/// How long the stream waits for an event before it looks at `stop` again.
const WAKE: Duration = Duration::from_millis(50);

/// How long the stream may be quiet before the source writes a heartbeat: a
/// non-transactional logical message, whose position, once it arrives, moves the
/// frontier of an idle source (every commit before it was sent before it).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The prefix of the source's heartbeat messages.
const HEARTBEAT_PREFIX: &str = "strata.heartbeat";

impl Stream {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = self
                    .tx
                    .send(Event::Status(SourceStatus::Stalled(e.to_string())));
                return;
            }
        };
        let mut backoff = Duration::from_millis(100);
        while !self.stop.load(Ordering::SeqCst) {
            match runtime.block_on(self.session()) {
                Ok(Ended::Stopped) => return,
                Ok(Ended::Ceased(reason)) => {
                    tracing::warn!(slot = %self.settings.slot, %reason, "the Postgres source ceased");
                    let _ = self.tx.send(Event::Status(SourceStatus::Ceased(reason)));
                    return;
                }
                Err(e) if self.backfill.is_some() => {
                    // The rewinds collected so far are relative to a snapshot that a
                    // new session would take again: start over from a new reader.
                    let _ = self
                        .tx
                        .send(Event::Failed(format!("backfilling new tables failed: {e}")));
                    return;
                }
                Err(e) if self.position == 0 => {
                    // Retrying the snapshot from here could drop a slot that another
                    // replica has since written from: the replica re-opens the reader
                    // at the offset the data shards are at instead.
                    let _ = self
                        .tx
                        .send(Event::Failed(format!("taking the snapshot failed: {e}")));
                    return;
                }
                Err(e) => {
                    tracing::info!(slot = %self.settings.slot, error = %e, "the Postgres source lost its session; retrying");
                    let _ = self.tx.send(Event::Status(SourceStatus::Stalled(format!(
                        "{e}; retrying in {} ms",
                        backoff.as_millis()
                    ))));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn replication_config(&self) -> Result<ReplicationConfig, ConnectorError> {
        self.replication_config_for(&self.settings.slot)
    }

    /// The replication settings, for the slot `slot`.
    fn replication_config_for(&self, slot: &str) -> Result<ReplicationConfig, ConnectorError> {
        let config: tokio_postgres::Config = self.settings.url.parse().map_err(invalid)?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        Ok(ReplicationConfig::new(
            host,
            config.get_user().unwrap_or("postgres"),
            password,
            config.get_dbname().unwrap_or("postgres"),
            slot,
            self.settings.publication.as_str(),
        )
        .with_port(port)
        .with_options(types::SESSION_OPTIONS)
        .with_status_interval(Duration::from_millis(500))
        .with_wakeup_interval(Duration::from_millis(500)))
    }

    /// One replication session: the snapshot first if nothing is durable, then the
    /// stream until stopped or broken.
    async fn session(&mut self) -> Result<Ended, ConnectorError> {
        let config = self.replication_config()?;
        let mut client = if self.position == 0 {
            let mut client = ReplicationClient::connect_gated(config)
                .await
                .map_err(upstream)?;
            let (consistent, lock) = self.snapshot(&mut client).await?;
            client.start().await.map_err(upstream)?;
            client.wait_started().await.map_err(upstream)?;
            // The slot is held by the stream now: other replicas may look at it.
            drop(lock);
            self.position = consistent;
            let _ = self.tx.send(Event::Frontier(consistent));
            client
        } else {
            if let Some(ceased) = self.check_upstream().await? {
                return Ok(Ended::Ceased(ceased));
            }
            if self.backfill.as_ref().is_some_and(|b| b.until.is_none()) {
                self.backfill_snapshot().await?;
            }
            let ack = self.durable.load(Ordering::SeqCst);
            let config = config
                .with_start_lsn(Lsn::from_u64(self.position))
                .with_ack_lsn(Lsn::from_u64(ack));
            let client = ReplicationClient::connect(config).await.map_err(upstream)?;
            // The snapshot may be at or below the stream's start already.
            self.advance(self.position);
            client
        };
        let ended = self.follow(&mut client).await;
        client.stop();
        ended
    }

    /// Writes a heartbeat message upstream (see [`HEARTBEAT`]). A server that refuses
    /// (no permission for `pg_logical_emit_message`) is not asked again.
    async fn heartbeat(&self, session: &mut Option<Option<tokio_postgres::Client>>) {
        if session.is_none() {
            *session = Some(sql_client(&self.settings.url).await.ok());
        }
        let Some(Some(sql)) = session.as_ref() else {
            return;
        };
        let written = sql
            .batch_execute(&format!(
                "SELECT pg_logical_emit_message(false, '{HEARTBEAT_PREFIX}', '')"
            ))
            .await;
        if let Err(e) = written {
            tracing::info!(
                slot = %self.settings.slot,
                error = %e,
                "cannot write heartbeats: an idle source's upper moves on keepalives only"
            );
            *session = Some(None);
        }
    }

    /// Whether the slot and publication still exist: `Some(reason)` if not.
    async fn check_upstream(&self) -> Result<Option<String>, ConnectorError> {
        let sql = sql_client(&self.settings.url).await?;
        let slot = sql
            .query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.settings.slot],
            )
            .await
            .map_err(upstream)?;
        if slot.is_empty() {
            return Ok(Some(format!(
                "replication slot {:?} was dropped",
                self.settings.slot
            )));
        }
        let publication = sql
            .query(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&self.settings.publication],
            )
            .await
            .map_err(upstream)?;
        if publication.is_empty() {
            return Ok(Some(format!(
                "publication {:?} was dropped",
                self.settings.publication
            )));
        }
        Ok(None)
    }

    /// Re-creates the slot, reads every table in the snapshot it exports, hands the
    /// rows over at offset 0 and returns the slot's consistent point.
    async fn snapshot(
        &self,
        client: &mut ReplicationClient,
    ) -> Result<(Offset, tokio_postgres::Client), ConnectorError> {
        let slot = &self.settings.slot;
        // A created slot is not held by anyone until its stream starts, so replicas
        // taking the snapshot take turns: the one holding this session's advisory lock
        // (until its stream holds the slot) is the only one that may drop or create it.
        let sql = sql_client(&self.settings.url).await?;
        let locked: bool = sql
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[slot])
            .await
            .map_err(upstream)?
            .get(0);
        if !locked {
            return Err(upstream(format!(
                "another replica is taking the snapshot of slot {slot:?}"
            )));
        }
        // Nothing is durable (the reader resumes at 0), so an old slot that no stream
        // holds is left from a run that never committed: drop it. One held by a stream
        // (another replica's) fails to drop, and then to create, and this reader is
        // re-opened where the data shards are.
        let _ = client
            .simple_query(&format!("DROP_REPLICATION_SLOT {slot}"))
            .await;
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput (SNAPSHOT 'export')"
            ))
            .await
            .map_err(upstream)?;
        let (consistent, snapshot) = slot_created(&rows)?;
        let updates = read_in_snapshot(&sql, &snapshot, self.tables.iter(), 0).await?;
        tracing::info!(
            slot,
            rows = updates.len(),
            consistent,
            "took the Postgres source's snapshot"
        );
        let _ = self.tx.send(Event::Transaction(0, updates));
        Ok((consistent, sql))
    }

    /// Takes the backfill's snapshot: a temporary slot (dropped when its session ends)
    /// exports one at its consistent point, which becomes the backfill's `until`.
    async fn backfill_snapshot(&mut self) -> Result<(), ConnectorError> {
        static TEMPORARY_SLOTS: AtomicU64 = AtomicU64::new(0);
        let Some(backfill) = self.backfill.as_ref() else {
            return Ok(());
        };
        let slot = format!(
            "strata_backfill_{}_{}",
            std::process::id(),
            TEMPORARY_SLOTS.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = ReplicationClient::connect_gated(self.replication_config_for(&slot)?)
            .await
            .map_err(upstream)?;
        let rows = client
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')"
            ))
            .await
            .map_err(upstream)?;
        let (until, snapshot) = slot_created(&rows)?;
        let sql = sql_client(&self.settings.url).await?;
        let tables = self
            .tables
            .iter()
            .filter(|t| backfill.outputs.contains(&t.output()));
        let updates = read_in_snapshot(&sql, &snapshot, tables, backfill.at).await?;
        client.stop();
        tracing::info!(
            slot = %self.settings.slot,
            rows = updates.len(),
            at = backfill.at,
            until,
            "took the snapshot of the tables to backfill"
        );
        if let Some(backfill) = self.backfill.as_mut() {
            backfill.updates = updates;
            backfill.until = Some(until);
        }
        Ok(())
    }

    /// Moves the position to `to` (if that is further) and tells the reader the
    /// frontier, unless a backfill holds it: once the position passes the backfill's
    /// snapshot, the backfill is handed out first.
    fn advance(&mut self, to: Offset) {
        self.position = self.position.max(to);
        if let Some(backfill) = &self.backfill {
            match backfill.until {
                Some(until) if self.position >= until => {}
                _ => return,
            }
            if let Some(backfill) = self.backfill.take() {
                let _ = self
                    .tx
                    .send(Event::Transaction(backfill.at, backfill.updates));
            }
        }
        let _ = self.tx.send(Event::Frontier(self.position));
    }

    /// Collects the rewinds of a transaction at `offset` for a backfill whose
    /// snapshot holds it.
    fn rewind(&mut self, offset: Offset, updates: &[SourceUpdate]) {
        let Some(backfill) = self.backfill.as_mut() else {
            return;
        };
        if backfill.until.is_none_or(|until| offset >= until) {
            return;
        }
        backfill.updates.extend(
            updates
                .iter()
                .filter(|u| backfill.outputs.contains(&u.output))
                .map(|u| SourceUpdate {
                    offset: backfill.at,
                    output: u.output.clone(),
                    row: u.row.clone(),
                    diff: -u.diff,
                }),
        );
    }

    /// Follows the stream: whole transactions to the reader, frontiers after them.
    async fn follow(&mut self, client: &mut ReplicationClient) -> Result<Ended, ConnectorError> {
        let mut relations: BTreeMap<u32, usize> = BTreeMap::new();
        let mut transaction: Option<Vec<SourceUpdate>> = None;
        let mut acked = 0;
        let mut quiet_since = std::time::Instant::now();
        // A SQL session for heartbeats, opened when first needed; `None` inside once
        // the server refused one (then an idle source waits for keepalives).
        let mut heartbeats: Option<Option<tokio_postgres::Client>> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(Ended::Stopped);
            }
            let durable = self.durable.load(Ordering::SeqCst);
            if durable > acked {
                // Every transaction whose commit starts before `durable` is in the data
                // shards: the slot may release them.
                client.update_applied_lsn(Lsn::from_u64(durable));
                acked = durable;
            }
            let event = match tokio::time::timeout(WAKE, client.recv()).await {
                Err(_) => {
                    if transaction.is_none() && quiet_since.elapsed() >= HEARTBEAT {
                        quiet_since = std::time::Instant::now();
                        self.heartbeat(&mut heartbeats).await;
                    }
                    continue;
                }
                Ok(event) => event.map_err(upstream)?,
            };
            let Some(event) = event else {
                return Err(upstream("the replication stream ended"));
            };
            quiet_since = std::time::Instant::now();
            match event {
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    let _ = self.tx.send(Event::Upstream(wal_end.as_u64()));
                    if transaction.is_none() && wal_end.as_u64() > self.position {
                        self.advance(wal_end.as_u64());
                    }
                }
                ReplicationEvent::Begin { .. } => transaction = Some(Vec::new()),
                ReplicationEvent::XLogData { data, .. } => {
                    if let Some(ceased) = self.apply(&data, &mut relations, transaction.as_mut())? {
                        return Ok(Ended::Ceased(ceased));
                    }
                }
                ReplicationEvent::Commit { lsn, end_lsn, .. } => {
                    // The transaction's offset is where its commit record starts: every
                    // later transaction's commit record starts at or after this one's
                    // end, so the end is the frontier. A restart at an offset `o` is
                    // then exact: Postgres skips the transactions whose commit record
                    // starts before the slot's start position, which are those below `o`.
                    let offset = lsn.as_u64();
                    let mut updates = transaction.take().unwrap_or_default();
                    for update in &mut updates {
                        update.offset = offset;
                    }
                    if offset >= self.position {
                        self.rewind(offset, &updates);
                        let _ = self.tx.send(Event::Transaction(offset, updates));
                        self.advance(end_lsn.as_u64().max(offset + 1));
                    }
                }
                ReplicationEvent::Message {
                    transactional: false,
                    lsn,
                    prefix,
                    ..
                } if prefix == HEARTBEAT_PREFIX && transaction.is_none() => {
                    let _ = self.tx.send(Event::Upstream(lsn.as_u64()));
                    if lsn.as_u64() > self.position {
                        self.advance(lsn.as_u64());
                    }
                }
                ReplicationEvent::Message { .. } | ReplicationEvent::StoppedAt { .. } => {}
            }
        }
    }

    /// Applies one `pgoutput` message to the transaction being collected; returns a
    /// reason to cease on a definite error.
    fn apply(
        &self,
        data: &Bytes,
        relations: &mut BTreeMap<u32, usize>,
        transaction: Option<&mut Vec<SourceUpdate>>,
    ) -> Result<Option<String>, ConnectorError> {
        let message = pgoutput::decode(data).map_err(upstream)?;
        let table_of = |oid: &u32| relations.get(oid).and_then(|i| self.tables.get(*i));
        let mut changes: Vec<(usize, Vec<TupleValue>, i64)> = Vec::new();
        match message {
            Message::Relation {
                oid,
                namespace,
                name,
                columns,
                ..
            } => {
                let Some(index) = self
                    .tables
                    .iter()
                    .position(|t| t.schema == namespace && t.name == name)
                else {
                    return Ok(None);
                };
                let expected: Vec<(&str, u32)> = self.tables[index]
                    .columns
                    .iter()
                    .map(|(n, o, _)| (n.as_str(), *o))
                    .collect();
                let actual: Vec<(&str, u32)> = columns
                    .iter()
                    .map(|c| (c.name.as_str(), c.type_oid))
                    .collect();
                if expected != actual {
                    return Ok(Some(format!(
                        "the schema of {namespace}.{name} changed: columns {actual:?}, expected {expected:?}"
                    )));
                }
                relations.insert(oid, index);
                return Ok(None);
            }
            Message::Truncate { oids } => {
                if let Some(table) = oids.iter().find_map(table_of) {
                    return Ok(Some(format!(
                        "table {}.{} was truncated",
                        table.schema, table.name
                    )));
                }
                return Ok(None);
            }
            Message::Insert { oid, new } => {
                if let Some(i) = relations.get(&oid) {
                    changes.push((*i, new, 1));
                }
            }
            Message::Update { oid, old, new } => {
                if let Some(i) = relations.get(&oid) {
                    let Some(old) = old else {
                        return Ok(Some(format!(
                            "an update of {} lacks the old row: the table needs REPLICA IDENTITY FULL",
                            self.tables[*i].name
                        )));
                    };
                    let new: Vec<TupleValue> = new
                        .into_iter()
                        .zip(old.iter())
                        .map(|(n, o)| match n {
                            TupleValue::Unchanged => o.clone(),
                            n => n,
                        })
                        .collect();
                    changes.push((*i, old, -1));
                    changes.push((*i, new, 1));
                }
            }
            Message::Delete { oid, old, full } => {
                if let Some(i) = relations.get(&oid) {
                    if !full {
                        return Ok(Some(format!(
                            "a delete from {} lacks the old row: the table needs REPLICA IDENTITY FULL",
                            self.tables[*i].name
                        )));
                    }
                    changes.push((*i, old, -1));
                }
            }
            Message::Other(_) => return Ok(None),
        }
        let Some(transaction) = transaction else {
            return Err(upstream("a change arrived outside a transaction"));
        };
        for (i, values, diff) in changes {
            let table = &self.tables[i];
            transaction.push(update(table, 0, &values, diff).map_err(upstream)?);
        }
        Ok(None)
    }
}

/// The update of a row of `table` with column values `values`. The offset is set when
/// the transaction commits.
fn update(
    table: &Table,
    offset: Offset,
    values: &[TupleValue],
    diff: i64,
) -> Result<SourceUpdate, String> {
    Ok(SourceUpdate {
        offset,
        output: table.output(),
        row: table.row(values)?,
        diff,
    })
}
