//! Shared helpers of the replica's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

pub mod gate;
pub mod scenarios;

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_controller_api::{
    Antichain, CollectionMetadata, ExportDescription, GlobalId, IngestionDescription, InstanceId,
    LoadGenerator, RelationDesc, Row, ShardId, SinkConnection, SourceConnection, SourceOutput,
    Timestamp,
};
use strata_instance_client::{
    ReplicaResponse, RunIngestionCommand, RunSinkCommand, StorageCommand,
};
use strata_replica::generator::Generator;
use strata_replica::remap::remap_desc;
use strata_replica::shard::{Shards, consolidate_rows, frontier_time};
use strata_replica::{Replica, ReplicaConfig, ResponseSink};

pub type Responses = Receiver<ReplicaResponse<Timestamp>>;

/// A replica whose responses arrive on a channel.
pub fn start(config: ReplicaConfig, shards: Arc<dyn Shards>) -> (Replica, Responses) {
    let (tx, rx) = channel();
    let sink: Arc<dyn ResponseSink> = Arc::new(Mutex::new(tx));
    (Replica::start(config, shards, sink).unwrap(), rx)
}

/// A clock that stands still: binding times are then 0, 1, 2, ..., one tick per round.
pub fn frozen_config(workers: usize, limit: u64) -> ReplicaConfig {
    ReplicaConfig {
        max_ticks_per_round: 1,
        workers,
        clock: Arc::new(|| Timestamp::new(0)),
        offset_limit: Some(limit),
        statistics_interval: Duration::from_millis(20),
        retry_backoff: Duration::from_millis(5),
        ..ReplicaConfig::default()
    }
}

pub fn shard(n: u8, salt: u8) -> ShardId {
    ShardId::from_bytes([n, salt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
}

/// An ingestion of `generator` with id `User(base)`, remap `User(base + 1)` and one
/// export per generator output at `User(base + 2 + i)`.
pub fn ingestion(
    base: u64,
    generator: LoadGenerator,
    seed: u64,
    per_tick: u64,
) -> RunIngestionCommand<Timestamp> {
    let connection = SourceConnection::LoadGenerator {
        generator,
        tick_interval_ms: 0,
        offsets_per_tick: per_tick,
        seed,
    };
    let outputs = Generator::new(&connection).unwrap().outputs();
    ingestion_of(base, connection, outputs)
}

/// An ingestion of `connection` with id `User(base)` and remap `User(base + 1)`, on
/// shards salted by `base`: the primary output (if among `outputs`) goes to the
/// ingestion's own collection, output `i` otherwise to `User(base + 2 + i)`.
pub fn ingestion_of(
    base: u64,
    connection: SourceConnection,
    outputs: Vec<(SourceOutput, RelationDesc)>,
) -> RunIngestionCommand<Timestamp> {
    let remap_id = GlobalId::User(base + 1);
    let salt = u8::try_from(base % 251).unwrap();
    let meta = |n: u8, desc| CollectionMetadata {
        persist_location: "mem://replica-tests".into(),
        data_shard: shard(n, salt),
        remap_shard: Some(shard(1, salt)),
        txns_shard: None,
        relation_desc: desc,
    };
    let mut source_exports = BTreeMap::new();
    let mut storage_metadata = BTreeMap::new();
    storage_metadata.insert(remap_id, meta(1, remap_desc()));
    for (i, (output, desc)) in outputs.into_iter().enumerate() {
        let id = if output == SourceOutput::Primary {
            GlobalId::User(base)
        } else {
            GlobalId::User(base + 2 + i as u64)
        };
        source_exports.insert(id, output);
        storage_metadata.insert(id, meta(10 + u8::try_from(i).unwrap(), desc));
    }
    RunIngestionCommand {
        id: GlobalId::User(base),
        description: IngestionDescription {
            connection,
            instance_id: InstanceId(1),
            remap_collection_id: remap_id,
            source_exports,
            as_of: None,
        },
        storage_metadata,
    }
}

/// A file sink of export `from` of `ingestion`.
pub fn file_sink(
    id: u64,
    ingestion: &RunIngestionCommand<Timestamp>,
    from: GlobalId,
    path: &str,
) -> RunSinkCommand<Timestamp> {
    let meta = ingestion.storage_metadata[&from].clone();
    RunSinkCommand {
        id: GlobalId::User(id),
        description: ExportDescription {
            from,
            from_desc: meta.relation_desc.clone(),
            connection: SinkConnection::File {
                path: path.to_owned(),
            },
            as_of: Antichain::from_elem(Timestamp::new(0)),
            with_snapshot: true,
            instance_id: InstanceId(1),
        },
        from_metadata: meta,
    }
}

/// Hello, the objects, InitializationComplete, AllowWrites.
pub fn history(
    epoch: u64,
    objects: Vec<StorageCommand<Timestamp>>,
) -> Vec<StorageCommand<Timestamp>> {
    let mut commands = vec![StorageCommand::Hello {
        nonce: epoch,
        epoch,
    }];
    commands.extend(objects);
    commands.push(StorageCommand::InitializationComplete);
    commands.push(StorageCommand::AllowWrites);
    commands
}

pub fn send(replica: &mut Replica, commands: &[StorageCommand<Timestamp>]) {
    for command in commands {
        replica.handle(command.clone());
    }
}

/// The data shards of an ingestion's exports, by id.
pub fn data_shards(cmd: &RunIngestionCommand<Timestamp>) -> Vec<(GlobalId, ShardId)> {
    cmd.description
        .source_exports
        .keys()
        .map(|id| (*id, cmd.storage_metadata[id].data_shard))
        .collect()
}

/// Registers the schemas of `cmd`'s shards (backends that need them open handles).
pub fn register(shards: &dyn Shards, cmd: &RunIngestionCommand<Timestamp>) {
    for meta in cmd.storage_metadata.values() {
        shards.register_schema(meta.data_shard, &meta.relation_desc);
    }
}

/// The source offset every data shard of `cmd` has fully ingested.
pub fn ingested_offset(shards: &dyn Shards, cmd: &RunIngestionCommand<Timestamp>) -> u64 {
    register(shards, cmd);
    let remap = cmd.storage_metadata[&cmd.description.remap_collection_id].data_shard;
    let upper = data_shards(cmd)
        .iter()
        .filter_map(|(_, s)| shards.upper(*s).ok().and_then(|u| frontier_time(&u)))
        .min()
        .unwrap_or_default();
    let Some(before) = upper.as_millis().checked_sub(1) else {
        return 0;
    };
    let Ok(Some(snapshot)) = shards.snapshot(remap, Timestamp::new(before)) else {
        return 0;
    };
    snapshot
        .into_iter()
        .find_map(|(row, _, diff)| match (row.unpack().as_slice(), diff) {
            ([strata_controller_api::Datum::UInt64(o)], 1) => Some(*o),
            _ => None,
        })
        .unwrap_or(0)
}

/// Consolidated contents of every export of `cmd`, at its current upper.
pub fn contents(
    shards: &dyn Shards,
    cmd: &RunIngestionCommand<Timestamp>,
) -> BTreeMap<GlobalId, Vec<(Row, i64)>> {
    data_shards(cmd)
        .into_iter()
        .map(|(id, s)| {
            let (updates, _) = shards.listen_from(s, Timestamp::new(0)).unwrap();
            (
                id,
                consolidate_rows(updates.into_iter().map(|(r, _, d)| (r, d))),
            )
        })
        .collect()
}

/// What the generator produces for offsets `0..limit`, per export.
pub fn model(
    cmd: &RunIngestionCommand<Timestamp>,
    limit: u64,
) -> BTreeMap<GlobalId, Vec<(Row, i64)>> {
    let generator = Generator::new(&cmd.description.connection).unwrap();
    let updates = generator.updates_in(0..limit);
    cmd.description
        .source_exports
        .iter()
        .map(|(id, output)| {
            let rows = updates
                .iter()
                .filter(|(o, _, _)| o == output)
                .map(|(_, r, d)| (r.clone(), *d));
            (*id, consolidate_rows(rows))
        })
        .collect()
}

/// Polls `done` until it holds; fails the test after a generous bound (a hang guard,
/// not a speed assertion).
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Drains every response received so far.
pub fn drain(rx: &Responses) -> Vec<ReplicaResponse<Timestamp>> {
    rx.try_iter().collect()
}

/// A tiny deterministic RNG for test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
