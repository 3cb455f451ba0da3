//! The connector API: how a replica reads from a source and what an embedding program
//! implements to add one without forking the replica.
//!
//! # Division of labour
//!
//! A [`SourceConnector`] knows its upstream; the replica knows persist. The connector
//! only has to
//! - name its outputs and their schemas ([`SourceConnector::outputs`]);
//! - open a [`SourceReader`] that re-reads its upstream from any offset at or after the
//!   last one the replica declared durable ([`SourceReader::durable`]);
//! - report, in [`SourceProgress`], the offset frontier below which it has handed out
//!   everything, the upstream's own frontier and its status.
//!
//! The replica gives the exactly-once guarantee, whatever the connector: it binds a
//! range of offsets below the frontier to a time in the remap shard *before* it asks
//! the reader for the range's updates, writes them with one `compare_and_append` per
//! data shard, and only then calls [`SourceReader::durable`]. After a crash it reads
//! the bindings back and re-opens the reader at the first offset whose data may be
//! missing (see [`crate::remap`]). So a connector is correct if re-reading a range
//! yields the same updates, and if every update of an offset is handed out before the
//! frontier passes that offset. Offsets are `u64`: a Postgres LSN, a Kafka offset, a
//! load generator's sequence number.
//!
//! # Registration
//!
//! A replica finds connectors in the [`ConnectorRegistry`] of its
//! [`crate::ReplicaConfig`]: [`SourceConnection::Connector`] names a kind, and the
//! registered factory builds the connector from the configuration's settings. The
//! built-in load generators are registered as [`builtin::LOAD_GENERATOR`], and the
//! typed [`SourceConnection::LoadGenerator`] goes to the same connector.

pub mod builtin;
#[cfg(feature = "postgres")]
pub mod postgres;
mod sink;
#[cfg(test)]
mod tests;

pub use sink::{SinkBatch, SinkCommit, SinkConnector, SinkWriter};

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::{
    ConnectorConfig, DuplicateProbe, RelationDesc, Row, SinkConnection, SourceConnection,
    SourceOutput, UpstreamProbe, UpstreamProbes,
};

/// A position in a source's upstream, totally ordered.
pub type Offset = u64;

/// Which part of a source a reader reads: worker `worker` of `peers`.
///
/// A connector that is not [`SourceConnector::parallel`] gets one reader, with share
/// `(0, 1)`, which reads everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderShare {
    /// This reader's index.
    pub worker: usize,
    /// How many readers share the source.
    pub peers: usize,
}

impl ReaderShare {
    /// The one reader of a source that is not parallel.
    pub const WHOLE: ReaderShare = ReaderShare {
        worker: 0,
        peers: 1,
    };

    /// Whether `offset` belongs to this share (offsets are dealt round-robin).
    pub fn owns(&self, offset: Offset) -> bool {
        self.peers <= 1 || offset % self.peers as u64 == self.worker as u64
    }
}

/// One update from a source: at upstream offset `offset`, add `diff` copies of `row`
/// to output `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUpdate {
    /// The upstream position the update belongs to. Every update of one upstream
    /// transaction carries the same offset, so the transaction lands at one time.
    pub offset: Offset,
    /// Which output receives it.
    pub output: SourceOutput,
    /// The row.
    pub row: Row,
    /// Its multiplicity change.
    pub diff: i64,
}

/// What a source is doing, as its status collections show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Connecting or snapshotting; nothing to hand out yet.
    Starting,
    /// Reading normally.
    Running,
    /// Failing for the given reason, and retrying (a lost connection, say).
    Stalled(String),
    /// Stopped for good for the given reason (a definite error: the upstream changed in
    /// a way the source cannot follow). The frontier no longer advances.
    Ceased(String),
}

/// A reader's progress, reported by [`SourceReader::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProgress {
    /// Every update at an offset below this can be handed out by
    /// [`SourceReader::read`], and no update below it will appear later.
    pub frontier: Offset,
    /// The upstream's own frontier, if the source knows it (for real-time recency and
    /// the `offset_known` statistic).
    pub upstream: Option<Offset>,
    /// The source's status.
    pub status: SourceStatus,
}

/// How the replica paces a source's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The time between rounds when the source keeps up.
    pub tick_interval: Duration,
    /// At most this many offsets per tick, if set (a load generator's rate). A round
    /// that catches up binds several ticks' worth (`ReplicaConfig::max_ticks_per_round`).
    /// Without it a round binds everything below the frontier.
    pub offsets_per_tick: Option<u64>,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            tick_interval: Duration::from_millis(10),
            offsets_per_tick: None,
        }
    }
}

/// Wakes the replica's leader of a source. A reader calls [`wake`](Self::wake) when it
/// has something new to poll (updates, a frontier, a status), so the replica need not
/// poll it on a short timer. Cheap, thread-safe, and harmless to call too often.
#[derive(Clone)]
pub struct SourceWaker(Arc<dyn Fn() + Send + Sync>);

impl SourceWaker {
    /// A waker that calls `wake`.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        SourceWaker(Arc::new(wake))
    }

    /// A waker that does nothing (for readers that are only polled).
    pub fn noop() -> Self {
        SourceWaker::new(|| {})
    }

    /// Asks the replica to poll the reader soon.
    pub fn wake(&self) {
        (self.0)();
    }
}

impl fmt::Debug for SourceWaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceWaker")
    }
}

/// A source kind the replica can run: it describes the source and opens readers.
///
/// # Contract
///
/// - [`outputs`](Self::outputs) is the same for the connector's whole life; the primary
///   output comes first.
/// - A reader opened at `resume` hands out, for any range at or after `resume` and below
///   a frontier it reported, the same updates every time, in any order.
/// - Nothing here may panic on anything the upstream sends: errors are
///   [`ConnectorError`]s or a [`SourceStatus::Stalled`].
pub trait SourceConnector: Send + Sync {
    /// The connector's kind, for messages.
    fn kind(&self) -> &str;

    /// Every output with its schema, primary first.
    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)>;

    /// How the replica paces rounds.
    fn pacing(&self) -> Pacing {
        Pacing::default()
    }

    /// Whether every timely worker may open its own reader and read its
    /// [`ReaderShare`] of each range. True only for sources whose updates are a pure
    /// function of the offset, such as the load generators; the frontier is polled on
    /// worker 0's reader only.
    fn parallel(&self) -> bool {
        false
    }

    /// Opens a reader that re-reads the upstream from `resume`; it calls `waker` when
    /// it has something new to poll.
    fn open(
        &self,
        resume: Offset,
        share: ReaderShare,
        waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError>;

    /// Opens a reader at `resume` for a source that is not parallel, some of whose
    /// outputs (`backfill`) hold nothing yet while the others hold everything below
    /// `resume`: a subsource added to a running source, say. Besides what
    /// [`open`](Self::open) hands out, the reader hands out at offset `resume` the
    /// whole contents of each backfilled output as of just before `resume`. The replica
    /// writes them at the minimum time, as Materialize does, so the output holds them
    /// from the source's first time on, and its changes from `resume` on at their own
    /// times.
    ///
    /// The contents must be the same whenever the reader is re-opened at `resume`, so
    /// a crash in that round writes nothing twice. The default cannot backfill, and
    /// the replica then reports the source stalled instead of re-reading it from the
    /// start.
    fn open_with_backfill(
        &self,
        resume: Offset,
        share: ReaderShare,
        waker: SourceWaker,
        backfill: &[SourceOutput],
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        let _ = (resume, share, waker, backfill);
        Err(ConnectorError::CannotBackfill {
            kind: self.kind().to_owned(),
        })
    }
}

/// A source opened at some offset; polled and read from one timely worker.
pub trait SourceReader: Send {
    /// Takes in what the upstream has now, without blocking for long, and reports the
    /// frontier, the upstream frontier and the status.
    fn poll(&mut self) -> Result<SourceProgress, ConnectorError>;

    /// Hands out every update of this reader's share at an offset in `range` (below the
    /// last polled frontier, at or after the resume offset), through `emit`.
    fn read(
        &mut self,
        range: Range<Offset>,
        emit: &mut dyn FnMut(SourceUpdate),
    ) -> Result<(), ConnectorError>;

    /// Every update below `offset` is durable in the data shards: the reader may forget
    /// it and tell the upstream (a Postgres slot's confirmed flush position, say). The
    /// replica never re-opens the source below the largest offset it passed here.
    fn durable(&mut self, offset: Offset) {
        let _ = offset;
    }
}

/// Why a connector could not be found, built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// No connector of this kind is registered with the replica.
    #[error(
        "no source connector of kind {kind:?} is registered with this replica (known: {known})"
    )]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The kinds the registry knows, comma-separated.
        known: String,
    },
    /// A kind was registered twice.
    #[error("a connector of kind {kind:?} is already registered")]
    DuplicateKind {
        /// The kind.
        kind: String,
    },
    /// The connection's settings are not valid for the connector.
    #[error("invalid {kind} connector: {reason}")]
    InvalidConfig {
        /// The connector's kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The upstream failed; the replica retries after its backoff.
    #[error("{kind} connector failed: {reason}")]
    Upstream {
        /// The connector's kind.
        kind: String,
        /// What failed.
        reason: String,
    },
    /// The connector cannot fill an output added to a running source
    /// ([`SourceConnector::open_with_backfill`]).
    #[error("a {kind} source cannot fill a subsource added while it runs")]
    CannotBackfill {
        /// The connector's kind.
        kind: String,
    },
    /// The connector broke its contract (an update outside the range asked for, say);
    /// the round is not written and the replica retries.
    #[error("{kind} connector broke the connector contract: {reason}")]
    Contract {
        /// The connector's kind.
        kind: String,
        /// What it did.
        reason: String,
    },
}

/// Builds a source connector from its configuration.
pub type SourceFactory =
    Arc<dyn Fn(&ConnectorConfig) -> Result<Arc<dyn SourceConnector>, ConnectorError> + Send + Sync>;

/// Builds a sink connector from its configuration.
pub type SinkFactory =
    Arc<dyn Fn(&ConnectorConfig) -> Result<Arc<dyn SinkConnector>, ConnectorError> + Send + Sync>;

/// The connectors a replica can run, by kind. [`ConnectorRegistry::default`] holds
/// the built-ins; an embedding program adds its own with
/// [`register_source`](Self::register_source) and passes the registry in
/// [`crate::ReplicaConfig::connectors`].
#[derive(Clone)]
pub struct ConnectorRegistry {
    sources: BTreeMap<String, SourceFactory>,
    sinks: BTreeMap<String, SinkFactory>,
    probes: UpstreamProbes,
}

impl Default for ConnectorRegistry {
    fn default() -> Self {
        let mut registry = ConnectorRegistry::empty();
        let factory: SourceFactory = Arc::new(builtin::load_generator_factory);
        registry
            .sources
            .insert(builtin::LOAD_GENERATOR.to_owned(), factory);
        let file: SinkFactory = Arc::new(builtin::file_sink_factory);
        registry.sinks.insert(builtin::FILE.to_owned(), file);
        let object: SinkFactory = Arc::new(builtin::object_store_sink_factory);
        registry
            .sinks
            .insert(builtin::OBJECT_STORE.to_owned(), object);
        #[cfg(feature = "postgres")]
        {
            let postgres: SourceFactory = Arc::new(postgres::factory);
            registry.sources.insert(postgres::KIND.to_owned(), postgres);
            let _ = registry
                .probes
                .register(postgres::KIND, postgres::upstream_probe);
        }
        registry
    }
}

impl fmt::Debug for ConnectorRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorRegistry")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("sinks", &self.sinks.keys().collect::<Vec<_>>())
            .field("upstream_probes", &self.probes)
            .finish()
    }
}

impl ConnectorRegistry {
    /// A registry with no connector at all, not even the built-ins.
    pub fn empty() -> Self {
        ConnectorRegistry {
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            probes: UpstreamProbes::default(),
        }
    }

    /// Registers source connectors of `kind`, built by `factory`. A kind is registered
    /// once: a second registration is an error, not a silent replacement.
    pub fn register_source<F>(
        &mut self,
        kind: impl Into<String>,
        factory: F,
    ) -> Result<(), ConnectorError>
    where
        F: Fn(&ConnectorConfig) -> Result<Arc<dyn SourceConnector>, ConnectorError>
            + Send
            + Sync
            + 'static,
    {
        let kind = kind.into();
        if self.sources.contains_key(&kind) {
            return Err(ConnectorError::DuplicateKind { kind });
        }
        self.sources.insert(kind, Arc::new(factory));
        Ok(())
    }

    /// The registered source kinds, in order.
    pub fn source_kinds(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The connector `connection` describes.
    pub fn source(
        &self,
        connection: &SourceConnection,
    ) -> Result<Arc<dyn SourceConnector>, ConnectorError> {
        match connection {
            SourceConnection::LoadGenerator { .. } => builtin::load_generator(connection),
            SourceConnection::Connector(config) => {
                let factory =
                    self.sources
                        .get(&config.kind)
                        .ok_or_else(|| ConnectorError::UnknownKind {
                            kind: config.kind.clone(),
                            known: self.source_kinds().collect::<Vec<_>>().join(", "),
                        })?;
                factory(config)
            }
        }
    }

    /// Registers how the controller learns the upstream frontier of sources of `kind`,
    /// for real-time recency. The probe runs in the controller, not in the replica: a
    /// host passes [`upstream_probes`](Self::upstream_probes) to its controller (the
    /// testkit harness and the CLI do). A kind has one probe.
    pub fn register_upstream_probe(
        &mut self,
        kind: impl Into<String>,
        probe: impl UpstreamProbe + 'static,
    ) -> Result<(), ConnectorError> {
        self.probes
            .register(kind, probe)
            .map_err(|DuplicateProbe(kind)| ConnectorError::DuplicateKind { kind })
    }

    /// The upstream probes of the registered source kinds, for the controller's
    /// `ControllerConfig::upstream_probes`.
    pub fn upstream_probes(&self) -> &UpstreamProbes {
        &self.probes
    }

    /// Registers sink connectors of `kind`, built by `factory`; a kind is registered
    /// once.
    pub fn register_sink<F>(
        &mut self,
        kind: impl Into<String>,
        factory: F,
    ) -> Result<(), ConnectorError>
    where
        F: Fn(&ConnectorConfig) -> Result<Arc<dyn SinkConnector>, ConnectorError>
            + Send
            + Sync
            + 'static,
    {
        let kind = kind.into();
        if self.sinks.contains_key(&kind) {
            return Err(ConnectorError::DuplicateKind { kind });
        }
        self.sinks.insert(kind, Arc::new(factory));
        Ok(())
    }

    /// The registered sink kinds, in order.
    pub fn sink_kinds(&self) -> impl Iterator<Item = &str> {
        self.sinks.keys().map(String::as_str)
    }

    /// The connector `connection` describes. The typed built-in connections go to
    /// the built-in kinds ([`builtin::FILE`], [`builtin::OBJECT_STORE`]) of this
    /// registry.
    pub fn sink(
        &self,
        connection: &SinkConnection,
    ) -> Result<Arc<dyn SinkConnector>, ConnectorError> {
        let config = builtin::sink_config(connection);
        let factory = self
            .sinks
            .get(&config.kind)
            .ok_or_else(|| ConnectorError::UnknownKind {
                kind: config.kind.clone(),
                known: self.sink_kinds().collect::<Vec<_>>().join(", "),
            })?;
        factory(&config)
    }
}
