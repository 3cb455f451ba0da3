//! `cargo xtask bench instance`: instance-client against bare baselines, as ratios
//! measured in the same run.
//!
//! Micro-benchmarks (criterion groups, see `instance_micro`): `CommandHistory` push and
//! reduction over 1M commands of ingestion churn against a bare `Vec`, and the proto
//! conversion of commands and responses against prost alone.
//!
//! End-to-end comparisons (measured here, reported through `strata-bench-support`):
//! - command round trips through an [`Instance`] over the `local` transport, against a
//!   bare pair of tokio channels with an echo task;
//! - the same over `grpc` on loopback, against a bare tonic echo stream of the same
//!   generated messages (no validation, history or merging).
//!
//! `--quick` shrinks sizes 10x. Run without `--bench` (as `cargo test --all-targets`
//! does), criterion runs each group once and the round trips run at a tiny size;
//! nothing is reported.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_bench_support::{Metric, Mode, best_of, median, report};
use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{Antichain, GlobalId, InstanceId, ReplicaId, Timestamp};
use strata_instance_client::{
    CommandReceiver, Hello, Instance, ReplicaConnector, ReplicaHandler, ReplicaResponse,
    ResponseSender, StorageCommand,
};
use tokio::sync::mpsc;

/// Commands in flight at once in the round-trip benchmarks.
const WINDOW: u64 = 256;
/// Measurement rounds per side; the fastest counts.
const ROUNDS: usize = 3;
/// Local round trips take milliseconds each, and the bare echo's time swings with
/// where the tokio scheduler puts its task: more rounds, and the median counts.
const LOCAL_ROUNDS: usize = 9;

mod instance_micro;

fn frontier(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// Answers each `AllowCompaction(id, t)` with `FrontierUppers([(id, t + 1)])`.
struct Echo;

#[async_trait]
impl ReplicaHandler<Timestamp> for Echo {
    async fn serve(
        &self,
        _: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        while let Some(command) = commands.recv().await {
            if let StorageCommand::AllowCompaction { id, frontier } = command {
                let t = frontier.as_option().map_or(0, |t| t.as_millis() + 1);
                let upper = self::frontier(t);
                let _ = responses.send(ReplicaResponse::FrontierUppers(vec![(id, upper)]));
            }
        }
    }
}

/// Round trips through an instance with one replica; returns the elapsed time.
async fn instance_round_trips(connector: Arc<dyn ReplicaConnector<Timestamp>>, n: u64) -> Duration {
    let mut instance = Instance::new(InstanceId(1), 1, BackoffConfig::PEER);
    instance.add_replica(ReplicaId(1), connector).unwrap();
    let id = GlobalId::User(1);
    // Compactions only mean something for a running object; the history drops the rest.
    instance.send(ingestion(1, 0));
    // Warm up: wait for the connection.
    instance.send(StorageCommand::AllowCompaction {
        id,
        frontier: frontier(0),
    });
    wait_for_upper(&mut instance, 1).await;
    let start = Instant::now();
    let mut t = 1;
    while t < n {
        let end = (t + WINDOW).min(n);
        for s in t..end {
            instance.send(StorageCommand::AllowCompaction {
                id,
                frontier: frontier(s),
            });
        }
        wait_for_upper(&mut instance, end).await;
        t = end;
    }
    start.elapsed()
}

async fn wait_for_upper(instance: &mut Instance<Timestamp>, t: u64) {
    loop {
        if let Some(uppers) = instance.recv().await.merged_uppers()
            && uppers.iter().any(|(_, upper)| *upper == frontier(t))
        {
            return;
        }
    }
}

/// The same traffic over a bare pair of channels and an echo task.
async fn bare_channel_round_trips(n: u64) -> Duration {
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<StorageCommand<Timestamp>>();
    let (resp_tx, mut resp_rx) = mpsc::unbounded_channel::<ReplicaResponse<Timestamp>>();
    tokio::spawn(async move {
        while let Some(StorageCommand::AllowCompaction { id, frontier }) = cmd_rx.recv().await {
            let t = frontier.as_option().map_or(0, |t| t.as_millis() + 1);
            let upper = self::frontier(t);
            let _ = resp_tx.send(ReplicaResponse::FrontierUppers(vec![(id, upper)]));
        }
    });
    let id = GlobalId::User(1);
    let start = Instant::now();
    let mut t = 1;
    while t < n {
        let end = (t + WINDOW).min(n);
        for s in t..end {
            cmd_tx
                .send(StorageCommand::AllowCompaction {
                    id,
                    frontier: frontier(s),
                })
                .unwrap();
        }
        while let Some(ReplicaResponse::FrontierUppers(uppers)) = resp_rx.recv().await {
            if uppers.iter().any(|(_, upper)| *upper == frontier(end)) {
                break;
            }
        }
        t = end;
    }
    start.elapsed()
}

#[cfg(feature = "grpc")]
mod grpc {
    use std::pin::Pin;
    use std::time::{Duration, Instant};

    use strata_controller_api::Timestamp;
    use strata_instance_client::grpc::{GrpcConnector, ServerConfig, serve};
    use strata_instance_client::proto::{
        ProtoStorageCommand, ProtoStorageResponse, proto_storage_command as cmd,
        proto_storage_response as resp,
    };
    use strata_instance_client::proto_grpc::storage_replica_client::StorageReplicaClient;
    use strata_instance_client::proto_grpc::storage_replica_server::{
        StorageReplica, StorageReplicaServer,
    };
    use strata_instance_client::{EpochFence, StorageCommand};
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
    use tonic::{Request, Response, Status, Streaming};

    pub(crate) async fn instance(n: u64) -> Duration {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fence = EpochFence::new();
        let config = ServerConfig::default();
        tokio::spawn(serve::<Timestamp, _, _>(
            std::sync::Arc::new(super::Echo),
            fence,
            config,
            TcpListenerStream::new(listener),
            std::future::pending(),
        ));
        let connector = GrpcConnector::new(&format!("http://{addr}"), None).unwrap();
        super::instance_round_trips(std::sync::Arc::new(connector), n).await
    }

    struct BareEcho;

    type Out = Pin<Box<dyn futures::Stream<Item = Result<ProtoStorageResponse, Status>> + Send>>;

    #[async_trait::async_trait]
    impl StorageReplica for BareEcho {
        type CommandResponseStreamStream = Out;

        async fn command_response_stream(
            &self,
            request: Request<Streaming<ProtoStorageCommand>>,
        ) -> Result<Response<Out>, Status> {
            let mut inbound = request.into_inner();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Ok(Some(command)) = inbound.message().await {
                    if let Some(cmd::Kind::AllowCompaction(c)) = command.kind {
                        let mut upper = c.frontier.unwrap_or_default();
                        upper.elements.iter_mut().for_each(|e| *e += 1);
                        let kind = resp::Kind::FrontierUpper(
                            strata_instance_client::proto::ProtoFrontierUpper {
                                id: c.id,
                                upper: Some(upper),
                            },
                        );
                        if tx
                            .send(Ok(ProtoStorageResponse { kind: Some(kind) }))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
            Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
        }
    }

    pub(crate) async fn bare(n: u64) -> Duration {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(StorageReplicaServer::new(BareEcho))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let mut client = loop {
            match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
            {
                Ok(channel) => break StorageReplicaClient::new(channel),
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut responses = client
            .command_response_stream(UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let proto = |t: u64| {
            ProtoStorageCommand::from(&StorageCommand::<Timestamp>::AllowCompaction {
                id: strata_controller_api::GlobalId::User(1),
                frontier: super::frontier(t),
            })
        };
        let start = Instant::now();
        let mut t = 1;
        while t < n {
            let end = (t + super::WINDOW).min(n);
            for s in t..end {
                tx.send(proto(s)).unwrap();
            }
            for _ in t..end {
                responses.message().await.unwrap().unwrap();
            }
            t = end;
        }
        start.elapsed()
    }
}

/// An ingestion `u{id}` with remap collection `u{id + 1}`.
fn ingestion(id: u64, seed: u64) -> StorageCommand<Timestamp> {
    use strata_controller_api::{
        IngestionDescription, LoadGenerator, SourceConnection, SourceOutput,
    };
    use strata_instance_client::RunIngestionCommand;
    StorageCommand::RunIngestion(RunIngestionCommand {
        id: GlobalId::User(id),
        description: IngestionDescription {
            connection: SourceConnection::LoadGenerator {
                generator: LoadGenerator::Counter { max_ticks: None },
                tick_interval_ms: 1,
                offsets_per_tick: 1,
                seed,
            },
            instance_id: InstanceId(1),
            remap_collection_id: GlobalId::User(id + 1),
            source_exports: [(GlobalId::User(id), SourceOutput::Primary)]
                .into_iter()
                .collect(),
            as_of: None,
        },
        // Every export needs metadata, or a replica rejects the command.
        storage_metadata: [(
            GlobalId::User(id),
            strata_controller_api::CollectionMetadata {
                persist_location: "mem://bench".to_owned(),
                data_shard: strata_controller_api::ShardId::from_bytes([1; 16]),
                remap_shard: None,
                txns_shard: None,
                relation_desc: strata_controller_api::RelationDesc::empty(),
            },
        )]
        .into_iter()
        .collect(),
    })
}

fn main() {
    let mode = Mode::current();
    // `STRATA_BENCH_ONLY=round-trips` skips the micro benchmarks (for profiling).
    let only = std::env::var("STRATA_BENCH_ONLY").ok();
    if only.as_deref() != Some("round-trips") {
        strata_bench_support::micro::run(mode, &[instance_micro::history, instance_micro::proto]);
    }

    let round_trips = mode.scale(100_000, 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let per = |d: Duration| d.as_nanos() as f64 / round_trips as f64;

    // Interleaved, so that a slow spell of the machine hits both sides alike; the
    // median of each side counts (the fastest bare round is an outlier of the
    // scheduler's placement more often than the instance's).
    eprintln!("instance bench: local and bare channel round trips");
    let (mut local, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..LOCAL_ROUNDS {
        let connector = strata_instance_client::LocalConnector::new(Arc::new(Echo));
        local.push(per(
            runtime.block_on(instance_round_trips(connector, round_trips))
        ));
        bare.push(per(runtime.block_on(bare_channel_round_trips(round_trips))));
    }
    let (local, bare) = (median(local), median(bare));
    #[cfg(feature = "grpc")]
    let grpc = {
        eprintln!("instance bench: grpc instance round trips");
        let instance = best_of(ROUNDS, || runtime.block_on(grpc::instance(round_trips)));
        eprintln!("instance bench: bare tonic round trips");
        let bare = best_of(ROUNDS, || runtime.block_on(grpc::bare(round_trips)));
        (instance, bare)
    };
    if !mode.is_bench() {
        return;
    }
    report(&Metric::new(
        "local_instance_round_trip",
        local,
        "ns/command",
        "bare_tokio_channel_echo",
        bare,
    ));
    #[cfg(feature = "grpc")]
    report(&Metric::new(
        "grpc_instance_round_trip",
        per(grpc.0),
        "ns/command",
        "bare_tonic_echo_stream",
        per(grpc.1),
    ));
}
