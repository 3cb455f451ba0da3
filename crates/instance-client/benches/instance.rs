//! `cargo xtask bench instance`: instance-client against bare baselines, as ratios
//! measured in the same run.
//!
//! - Command round trips through an [`Instance`] over the `local` transport, against a
//!   bare pair of tokio channels with an echo task.
//! - The same over `grpc` on loopback, against a bare tonic echo stream of the same
//!   generated messages (no validation, history or merging).
//! - `CommandHistory` push (with its amortised reduction) per command over 1M commands
//!   of ingestion churn, drops confirmed with `forget_dropped` after a lag, against
//!   pushing the same commands onto a bare `Vec`.
//!
//! Each metric is appended as one JSON line to the file named by `STRATA_BENCH_OUT`.
//! `STRATA_BENCH_QUICK=1` shrinks sizes 10x. Run without `--bench` (as `cargo test
//! --all-targets` does), the suite only smoke-tests itself at a tiny size and writes
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{Antichain, GlobalId, InstanceId, ReplicaId, Timestamp};
use strata_instance_client::{
    CommandHistory, CommandReceiver, Hello, Instance, InstanceResponse, ReplicaConnector,
    ReplicaHandler, ReplicaResponse, ResponseSender, StorageCommand,
};
use tokio::sync::mpsc;

/// Commands in flight at once in the round-trip benchmarks.
const WINDOW: u64 = 256;
/// Measurement rounds per side; the fastest counts.
const ROUNDS: usize = 3;

fn frontier(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// Answers each `AllowCompaction(id, t)` with `FrontierUpper(id, t + 1)`.
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
                let _ = responses.send(ReplicaResponse::FrontierUpper {
                    id,
                    upper: self::frontier(t),
                });
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
        if let InstanceResponse::FrontierUpper { upper, .. } = instance.recv().await
            && upper == frontier(t)
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
            let _ = resp_tx.send(ReplicaResponse::FrontierUpper {
                id,
                upper: self::frontier(t),
            });
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
        while let Some(ReplicaResponse::FrontierUpper { upper, .. }) = resp_rx.recv().await {
            if upper == frontier(end) {
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

/// 1M commands of churn: ingestions created, compacted and dropped, with a steady set
/// of live ones.
fn churn(n: usize) -> Vec<StorageCommand<Timestamp>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let id = 10 + 2 * i;
        out.push(ingestion(id, i));
        for t in 0..4 {
            out.push(StorageCommand::AllowCompaction {
                id: GlobalId::User(id),
                frontier: frontier(t),
            });
        }
        // Keep the most recent 100 ingestions live; drop the one before them.
        if i >= 100 {
            let old = 10 + 2 * (i - 100);
            for c in [old, old + 1] {
                out.push(StorageCommand::AllowCompaction {
                    id: GlobalId::User(c),
                    frontier: Antichain::new(),
                });
            }
        }
        i += 1;
    }
    out.truncate(n);
    out
}

/// Drops confirmed by every replica lag this many ids behind the drops themselves.
const CONFIRMATION_LAG: usize = 200;

/// Pushes `commands`, confirming each drop (`forget_dropped`) `CONFIRMATION_LAG` drops
/// later, as an instance does when replicas report `DroppedId`.
fn history_push(commands: &[StorageCommand<Timestamp>]) -> (Duration, usize) {
    let commands = commands.to_vec();
    let start = Instant::now();
    let mut history = CommandHistory::new();
    let mut unconfirmed = std::collections::VecDeque::new();
    for command in commands {
        if let StorageCommand::AllowCompaction { id, frontier } = &command
            && frontier.is_empty()
        {
            unconfirmed.push_back(*id);
        }
        history.push(command);
        if unconfirmed.len() > CONFIRMATION_LAG {
            history.forget_dropped(unconfirmed.pop_front());
        }
    }
    (start.elapsed(), black_box(history.len()))
}

fn vec_push(commands: &[StorageCommand<Timestamp>]) -> (Duration, usize) {
    let commands = commands.to_vec();
    let start = Instant::now();
    let mut log = Vec::new();
    for command in commands {
        log.push(command);
    }
    (start.elapsed(), black_box(log.len()))
}

fn report(name: &str, value: f64, unit: &str, baseline_name: &str, baseline_value: f64) {
    let ratio = value / baseline_value;
    let line = serde_json::json!({
        "name": name,
        "value": value,
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline_value": baseline_value,
        "ratio": ratio,
    });
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

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().unwrap_or_default()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let quick = std::env::var("STRATA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let scale: u64 = if !bench {
        1000
    } else if quick {
        10
    } else {
        1
    };
    let round_trips = 100_000 / scale;
    let history_commands = (1_000_000 / scale) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let per = |d: Duration, n: u64| d.as_nanos() as f64 / n as f64;

    eprintln!("instance bench: local round trips");
    let local = best(|| {
        runtime.block_on(instance_round_trips(
            strata_instance_client::LocalConnector::new(Arc::new(Echo)),
            round_trips,
        ))
    });
    eprintln!("instance bench: bare channel round trips");
    let bare = best(|| runtime.block_on(bare_channel_round_trips(round_trips)));

    #[cfg(feature = "grpc")]
    let grpc = {
        eprintln!("instance bench: grpc instance round trips");
        let instance = best(|| runtime.block_on(grpc::instance(round_trips)));
        eprintln!("instance bench: bare tonic round trips");
        (instance, best(|| runtime.block_on(grpc::bare(round_trips))))
    };

    eprintln!("instance bench: history churn");
    let commands = churn(history_commands);
    let mut history = Duration::MAX;
    let mut plain = Duration::MAX;
    for _ in 0..ROUNDS {
        history = history.min(history_push(&commands).0);
        plain = plain.min(vec_push(&commands).0);
    }
    if !bench {
        return;
    }
    report(
        "local_instance_round_trip",
        per(local, round_trips),
        "ns/command",
        "bare_tokio_channel_echo",
        per(bare, round_trips),
    );
    #[cfg(feature = "grpc")]
    report(
        "grpc_instance_round_trip",
        per(grpc.0, round_trips),
        "ns/command",
        "bare_tonic_echo_stream",
        per(grpc.1, round_trips),
    );
    report(
        "command_history_push_and_reduce_1m_churn",
        per(history, history_commands as u64),
        "ns/command",
        "bare_vec_push",
        per(plain, history_commands as u64),
    );
}
