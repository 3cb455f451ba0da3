//! Helpers shared by this crate's tests and by other crates' tests of an instance:
//! command builders, proptest strategies over the protocol, a recording fake replica, a
//! connector that counts its connection attempts, bounded waits and the soak factor.
//!
//! Compiled for this crate's own unit tests and, for everyone else, behind the
//! non-default `testing` feature (which pulls in proptest). Nothing here is for
//! production use: the helpers panic on a timeout, as a test should.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;
use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{
    Antichain, CollectionMetadata, ExportDescription, GlobalId, IngestionDescription, InstanceId,
    LoadGenerator, RelationDesc, ReplicaId, ScalarType, ShardId, SinkConnection, SinkStatistics,
    SourceConnection, SourceOutput, SourceStatistics, Status, StatusUpdate, Timestamp,
};

use crate::instance::{Instance, InstanceResponse};
use crate::protocol::{
    ReplicaParameters, ReplicaResponse, RunIngestionCommand, RunSinkCommand, StorageCommand,
};
use crate::transport::{
    CommandReceiver, Hello, ReplicaConnection, ReplicaConnector, ReplicaHandler, ResponseSender,
    TransportError,
};

type Cmd = StorageCommand<Timestamp>;

/// How many times longer randomized and concurrency tests run: 10 when the environment
/// variable `STRATA_SOAK` is set to anything but empty or `0` (`cargo xtask test --soak`
/// sets it), else 1. Tests multiply their proptest case counts and loop iterations by it.
pub fn soak_factor() -> u32 {
    match std::env::var("STRATA_SOAK") {
        Ok(v) if !v.is_empty() && v != "0" => 10,
        _ => 1,
    }
}

/// A reconnection backoff short enough for tests: 5 ms growing to 50 ms.
pub fn fast_backoff() -> BackoffConfig {
    BackoffConfig::doubling(Duration::from_millis(5), Duration::from_millis(50))
}

/// Waits until `cond` holds, polling every 5 ms; panics naming `what` after 20 s, so
/// a bug fails the test instead of hanging it.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..4_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out after 20 s waiting until {what}");
}

/// Receives responses until `pred` matches one and returns everything received; panics
/// with what it saw if no response arrives for 20 s.
pub async fn recv_until(
    instance: &mut Instance<Timestamp>,
    mut pred: impl FnMut(&InstanceResponse<Timestamp>) -> bool,
) -> Vec<InstanceResponse<Timestamp>> {
    let mut seen = Vec::new();
    loop {
        let response = tokio::time::timeout(Duration::from_secs(20), instance.recv())
            .await
            .unwrap_or_else(|_| panic!("no matching response within 20 s; saw {seen:?}"));
        let done = pred(&response);
        seen.push(response);
        if done {
            return seen;
        }
    }
}

/// A connector that counts how often an [`Instance`] asked it to connect, so a test
/// can wait for retries instead of sleeping: the instance asks again only after the
/// previous connection attempt has ended.
pub struct CountingConnector<T> {
    inner: Arc<dyn ReplicaConnector<T>>,
    attempts: AtomicUsize,
}

impl<T> std::fmt::Debug for CountingConnector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingConnector")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<T> CountingConnector<T> {
    /// Counts the connection attempts made through `inner`.
    pub fn new(inner: Arc<dyn ReplicaConnector<T>>) -> Arc<Self> {
        Arc::new(CountingConnector {
            inner,
            attempts: AtomicUsize::new(0),
        })
    }

    /// The connection attempts so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<T: Send + 'static> ReplicaConnector<T> for CountingConnector<T> {
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.inner.connect().await
    }

    fn target(&self) -> String {
        self.inner.target()
    }
}

/// A replica handler that records every connection's commands and answers only when
/// told to, except that it confirms the drop of what it runs (a final
/// `AllowCompaction`) while `auto_drop` is set, as it is from [`FakeReplica::new`].
#[derive(Default)]
pub struct FakeReplica {
    connections: Mutex<Vec<Vec<Cmd>>>,
    current: Mutex<Option<(usize, ResponseSender<Timestamp>)>>,
    crash: tokio::sync::Notify,
    /// Whether it confirms drops by itself.
    pub auto_drop: AtomicBool,
}

impl FakeReplica {
    /// A replica with no connections yet that confirms drops.
    pub fn new() -> Arc<Self> {
        Arc::new(FakeReplica {
            auto_drop: AtomicBool::new(true),
            ..FakeReplica::default()
        })
    }

    /// The commands of every connection so far, each starting with its Hello.
    pub fn connections(&self) -> Vec<Vec<Cmd>> {
        self.connections.lock().unwrap().clone()
    }

    /// Whether the latest connection has received `command`.
    pub fn latest_has(&self, command: &Cmd) -> bool {
        self.connections
            .lock()
            .unwrap()
            .last()
            .is_some_and(|c| c.contains(command))
    }

    /// Sends a response on the current connection; false if there is none.
    pub fn respond(&self, response: ReplicaResponse<Timestamp>) -> bool {
        match &*self.current.lock().unwrap() {
            Some((_, tx)) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Ends the current connection, as a crash would.
    pub fn crash(&self) {
        self.crash.notify_one();
    }
}

#[async_trait]
impl ReplicaHandler<Timestamp> for FakeReplica {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let index = {
            let mut connections = self.connections.lock().unwrap();
            connections.push(vec![StorageCommand::Hello {
                nonce: hello.nonce,
                epoch: hello.epoch,
            }]);
            connections.len() - 1
        };
        *self.current.lock().unwrap() = Some((index, responses.clone()));
        let mut running = BTreeSet::new();
        loop {
            let command = tokio::select! {
                command = commands.recv() => command,
                () = self.crash.notified() => None,
            };
            let Some(command) = command else { break };
            match &command {
                StorageCommand::RunIngestion(run) => running.extend(run.collection_ids()),
                StorageCommand::RunSink(run) => {
                    running.insert(run.id);
                }
                StorageCommand::AllowCompaction { id, frontier } if frontier.is_empty() => {
                    let confirm = running.remove(id) && self.auto_drop.load(Ordering::SeqCst);
                    if confirm {
                        let _ = responses.send(ReplicaResponse::DroppedId(*id));
                    }
                }
                _ => {}
            }
            self.connections.lock().unwrap()[index].push(command);
        }
        let mut current = self.current.lock().unwrap();
        if current.as_ref().is_some_and(|(i, _)| *i == index) {
            *current = None;
        }
    }
}

/// The ids of the `Paused` statuses an instance synthesised itself (no replica), in
/// order.
pub fn paused_ids(responses: &[InstanceResponse<Timestamp>]) -> Vec<GlobalId> {
    responses
        .iter()
        .filter_map(|r| match r {
            InstanceResponse::Status(s) if s.status == Status::Paused && s.replica_id.is_none() => {
                Some(s.id)
            }
            _ => None,
        })
        .collect()
}

/// A frontier at `t`, or `[]` for `None`.
pub fn frontier(t: Option<u64>) -> Antichain<Timestamp> {
    match t {
        Some(t) => Antichain::from_elem(Timestamp::new(t)),
        None => Antichain::new(),
    }
}

fn metadata(n: u8) -> CollectionMetadata {
    CollectionMetadata {
        persist_location: "mem://test".into(),
        data_shard: ShardId::from_bytes([n; 16]),
        remap_shard: None,
        txns_shard: None,
        relation_desc: RelationDesc::builder()
            .with_column("n", ScalarType::Int64.nullable(false))
            .finish(),
    }
}

/// An ingestion `u{id}` with remap collection `u{remap}` and the given extra exports.
pub fn ingestion(id: u64, remap: u64, exports: &[u64]) -> RunIngestionCommand<Timestamp> {
    let mut source_exports = BTreeMap::new();
    source_exports.insert(GlobalId::User(id), SourceOutput::Primary);
    for e in exports {
        source_exports.insert(GlobalId::User(*e), SourceOutput::Named(format!("out{e}")));
    }
    let storage_metadata = source_exports.keys().map(|id| (*id, metadata(1))).collect();
    RunIngestionCommand {
        id: GlobalId::User(id),
        description: IngestionDescription {
            connection: SourceConnection::LoadGenerator {
                generator: LoadGenerator::Counter { max_ticks: None },
                tick_interval_ms: 10,
                offsets_per_tick: 1,
                seed: 0,
            },
            instance_id: InstanceId(1),
            remap_collection_id: GlobalId::User(remap),
            source_exports,
            as_of: None,
        },
        storage_metadata,
    }
}

/// A sink `u{id}` reading `u{from}` from `as_of`.
pub fn sink(id: u64, from: u64, as_of: u64) -> RunSinkCommand<Timestamp> {
    RunSinkCommand {
        id: GlobalId::User(id),
        description: ExportDescription {
            from: GlobalId::User(from),
            from_desc: RelationDesc::empty(),
            connection: SinkConnection::File {
                path: format!("/tmp/sink{id}"),
            },
            as_of: frontier(Some(as_of)),
            with_snapshot: true,
            instance_id: InstanceId(1),
        },
        from_metadata: metadata(2),
    }
}

/// `AllowCompaction(u{id}, frontier(t))`.
pub fn compact(id: u64, t: Option<u64>) -> StorageCommand<Timestamp> {
    StorageCommand::AllowCompaction {
        id: GlobalId::User(id),
        frontier: frontier(t),
    }
}

/// One configuration value.
pub fn config(k: &str, v: &str) -> StorageCommand<Timestamp> {
    StorageCommand::UpdateConfiguration(ReplicaParameters {
        params: [(k.to_owned(), v.to_owned())].into_iter().collect(),
    })
}

/// Any global id.
pub fn arb_global_id() -> impl Strategy<Value = GlobalId> {
    prop_oneof![
        any::<u64>().prop_map(GlobalId::System),
        any::<u64>().prop_map(GlobalId::User),
        any::<u64>().prop_map(GlobalId::Transient),
    ]
}

fn arb_frontier() -> impl Strategy<Value = Antichain<Timestamp>> {
    proptest::option::of(any::<u64>()).prop_map(frontier)
}

fn arb_scalar() -> impl Strategy<Value = ScalarType> {
    proptest::sample::select(vec![
        ScalarType::Bool,
        ScalarType::Int64,
        ScalarType::UInt64,
        ScalarType::Float64,
        ScalarType::String,
        ScalarType::Bytes,
        ScalarType::Jsonb,
        ScalarType::TimestampMillis,
    ])
}

fn arb_desc() -> impl Strategy<Value = RelationDesc> {
    proptest::collection::vec(("[a-z]{0,6}", arb_scalar(), any::<bool>()), 0..4).prop_map(|cols| {
        cols.into_iter()
            .fold(RelationDesc::builder(), |b, (n, t, null)| {
                b.with_column(n, t.nullable(null))
            })
            .finish()
    })
}

fn arb_metadata() -> impl Strategy<Value = CollectionMetadata> {
    (
        "[a-z]{1,8}",
        any::<[u8; 16]>(),
        proptest::option::of(any::<[u8; 16]>()),
        proptest::option::of(any::<[u8; 16]>()),
        arb_desc(),
    )
        .prop_map(|(loc, d, r, t, desc)| CollectionMetadata {
            persist_location: format!("mem://{loc}"),
            data_shard: ShardId::from_bytes(d),
            remap_shard: r.map(ShardId::from_bytes),
            txns_shard: t.map(ShardId::from_bytes),
            relation_desc: desc,
        })
}

fn arb_source_connection() -> impl Strategy<Value = SourceConnection> {
    let generator = prop_oneof![
        proptest::option::of(any::<u64>())
            .prop_map(|max_ticks| LoadGenerator::Counter { max_ticks }),
        Just(LoadGenerator::Auction),
        (1u64..).prop_map(|keys| LoadGenerator::KeyValue { keys }),
    ];
    let load_generator = (generator, any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
        |(generator, t, o, seed)| SourceConnection::LoadGenerator {
            generator,
            tick_interval_ms: t,
            offsets_per_tick: o,
            seed,
        },
    );
    let connector = (
        "[a-z][a-z-]{0,8}",
        proptest::collection::btree_map("[a-z_]{1,6}", ".{0,8}", 0..4),
    )
        .prop_map(|(kind, settings)| {
            SourceConnection::Connector(strata_controller_api::ConnectorConfig { kind, settings })
        });
    prop_oneof![load_generator, connector]
}

fn arb_run_ingestion() -> impl Strategy<Value = RunIngestionCommand<Timestamp>> {
    (
        arb_global_id(),
        arb_source_connection(),
        any::<u64>(),
        arb_global_id(),
        proptest::collection::btree_map(arb_global_id(), proptest::option::of("[a-z]{0,5}"), 0..4),
        proptest::option::of(arb_frontier()),
        arb_metadata(),
        any::<bool>(),
    )
        .prop_map(
            |(id, connection, inst, remap, exports, as_of, meta, with_remap_meta)| {
                let source_exports: BTreeMap<_, _> = exports
                    .into_iter()
                    .map(|(id, name)| (id, name.map_or(SourceOutput::Primary, SourceOutput::Named)))
                    .collect();
                let mut storage_metadata: BTreeMap<_, _> = source_exports
                    .keys()
                    .map(|id| (*id, meta.clone()))
                    .collect();
                if with_remap_meta {
                    storage_metadata.insert(remap, meta);
                }
                RunIngestionCommand {
                    id,
                    description: IngestionDescription {
                        connection,
                        instance_id: InstanceId(inst),
                        remap_collection_id: remap,
                        source_exports,
                        as_of,
                    },
                    storage_metadata,
                }
            },
        )
}

fn arb_run_sink() -> impl Strategy<Value = RunSinkCommand<Timestamp>> {
    let connection = prop_oneof![
        ".{0,10}".prop_map(|path| SinkConnection::File { path }),
        (".{0,10}", ".{0,10}")
            .prop_map(|(url, prefix)| SinkConnection::ObjectStore { url, prefix }),
        (
            "[a-z][a-z-]{0,8}",
            proptest::collection::btree_map("[a-z_]{1,6}", ".{0,8}", 0..4),
        )
            .prop_map(|(kind, settings)| {
                SinkConnection::Connector(strata_controller_api::ConnectorConfig { kind, settings })
            }),
    ];
    (
        arb_global_id(),
        arb_global_id(),
        arb_desc(),
        connection,
        arb_frontier(),
        any::<bool>(),
        any::<u64>(),
        arb_metadata(),
    )
        .prop_map(
            |(id, from, from_desc, connection, as_of, with_snapshot, inst, from_metadata)| {
                RunSinkCommand {
                    id,
                    description: ExportDescription {
                        from,
                        from_desc,
                        connection,
                        as_of,
                        with_snapshot,
                        instance_id: InstanceId(inst),
                    },
                    from_metadata,
                }
            },
        )
}

/// Any storage command, including ones a peer would find invalid.
pub fn arb_command() -> impl Strategy<Value = StorageCommand<Timestamp>> {
    prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(nonce, epoch)| StorageCommand::Hello { nonce, epoch }),
        Just(StorageCommand::InitializationComplete),
        Just(StorageCommand::AllowWrites),
        proptest::collection::btree_map(".{0,5}", ".{0,5}", 0..4)
            .prop_map(|params| StorageCommand::UpdateConfiguration(ReplicaParameters { params })),
        arb_run_ingestion().prop_map(StorageCommand::RunIngestion),
        arb_run_sink().prop_map(StorageCommand::RunSink),
        (arb_global_id(), arb_frontier())
            .prop_map(|(id, frontier)| StorageCommand::AllowCompaction { id, frontier }),
    ]
}

fn arb_status() -> impl Strategy<Value = Status> {
    proptest::sample::select(vec![
        Status::Starting,
        Status::Running,
        Status::Paused,
        Status::Stalled,
        Status::Dropped,
    ])
}

/// Any storage response.
pub fn arb_response() -> impl Strategy<Value = ReplicaResponse<Timestamp>> {
    let source = (
        arb_global_id(),
        any::<[u64; 4]>(),
        any::<bool>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(id, c, snapshot_committed, offset_known, offset_committed)| {
                let statistics = SourceStatistics {
                    messages_received: c[0],
                    bytes_received: c[1],
                    updates_staged: c[2],
                    updates_committed: c[3],
                    snapshot_committed,
                    offset_known,
                    offset_committed,
                };
                (id, statistics)
            },
        );
    let sink = (arb_global_id(), any::<[u64; 4]>()).prop_map(|(id, c)| {
        let statistics = SinkStatistics {
            messages_staged: c[0],
            messages_committed: c[1],
            bytes_staged: c[2],
            bytes_committed: c[3],
        };
        (id, statistics)
    });
    prop_oneof![
        proptest::collection::vec((arb_global_id(), arb_frontier()), 0..4)
            .prop_map(ReplicaResponse::FrontierUppers),
        arb_global_id().prop_map(ReplicaResponse::DroppedId),
        (
            proptest::collection::vec(source, 0..3),
            proptest::collection::vec(sink, 0..3)
        )
            .prop_map(|(sources, sinks)| ReplicaResponse::StatisticsUpdates { sources, sinks }),
        (
            arb_global_id(),
            arb_status(),
            any::<u64>(),
            proptest::option::of(".{0,8}"),
            proptest::collection::vec(".{0,8}", 0..3),
            proptest::option::of(any::<u64>().prop_map(ReplicaId)),
        )
            .prop_map(|(id, status, timestamp_ms, error, hints, replica_id)| {
                ReplicaResponse::StatusUpdate(StatusUpdate {
                    id,
                    replica_id,
                    status,
                    timestamp_ms,
                    error,
                    hints,
                })
            }),
    ]
}
