//! The controller's response path, run from `controller.rs`'s `main`: 1M upper
//! reports over 10k ingestion collections (one ingestion, its remap collection and the
//! rest subsources) sent by a stand-in replica, through the instance and `process`,
//! against applying the same uppers to one bare `MutableAntichain` per collection.
//! The stand-in sends them as a replica does: one `FrontierUppers` response per step,
//! holding every upper the step advanced (here: every collection, one round).
//! The figure is per upper report.
//!
//! A caller's read hold keeps every since at 0, so no since downgrade goes to persist:
//! the comparison measures the response path (transport, instance merge, frontier
//! propagation, `process`), not persist writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_bench_support::{Metric, best_of, report};
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, GlobalId, IngestionDescription,
    InstanceId, Instances, Lifecycle, LoadGenerator, MemoryCatalog, MutableAntichain, Reads,
    ReplicaConfig, ReplicaId, ReplicaLocation, SourceConnection, SourceOutput, StorageMetadata,
    StorageTxn, Timestamp,
};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_instance_client::{
    CommandReceiver, Hello, LocalConnector, ReplicaConnector, ReplicaHandler, ReplicaResponse,
    ResponseSender,
};
use strata_replica::generator::{AUCTIONS, Generator};

pub(crate) struct ResponseSizes {
    /// Ingestion collections, at least 3.
    pub(crate) collections: u64,
    /// Upper reports in all; each round advances every collection by 1.
    pub(crate) responses: usize,
}

const INSTANCE: InstanceId = InstanceId(1);

/// A replica that runs nothing: it hands its response channel to the bench and reads
/// commands until the connection closes.
#[derive(Default)]
struct StandIn {
    responses: Mutex<Option<ResponseSender<Timestamp>>>,
}

#[async_trait::async_trait]
impl ReplicaHandler<Timestamp> for StandIn {
    async fn serve(
        &self,
        _hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        *self.responses.lock().unwrap() = Some(responses);
        while commands.recv().await.is_some() {}
    }
}

fn descriptions(n: u64) -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
    let connection = SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 0,
        offsets_per_tick: 1,
        seed: 1,
    };
    let generator = Generator::new(&connection).unwrap();
    let auctions = SourceOutput::Named(AUCTIONS.into());
    let (ingestion, remap) = (GlobalId::User(1), GlobalId::User(2));
    let mut collections = vec![
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
                generator.output_desc(&SourceOutput::Primary).unwrap(),
                DataSource::Ingestion(IngestionDescription {
                    connection: connection.clone(),
                    instance_id: INSTANCE,
                    remap_collection_id: remap,
                    source_exports: BTreeMap::new(),
                    as_of: None,
                }),
            ),
        ),
    ];
    for i in 3..=n {
        collections.push((
            GlobalId::User(i),
            CollectionDescription::for_source(
                generator.output_desc(&auctions).unwrap(),
                DataSource::IngestionExport {
                    ingestion_id: ingestion,
                    output: auctions.clone(),
                },
            ),
        ));
    }
    collections
}

/// The responses, round by round: round `r` moves every upper to `r`.
fn workload(sizes: &ResponseSizes) -> Vec<(GlobalId, u64)> {
    let rounds = sizes.responses as u64 / sizes.collections;
    (1..=rounds)
        .flat_map(|r| (1..=sizes.collections).map(move |i| (GlobalId::User(i), r)))
        .collect()
}

/// Times of the response phase on the controller, as of the bare side.
const PHASES: u64 = 3;

/// The responses through a controller; returns the best time, over [`PHASES`] phases,
/// from the first send until `process` has applied the last.
async fn through_process(sizes: &ResponseSizes, updates: &[(GlobalId, u64)]) -> Duration {
    let catalog = MemoryCatalog::new();
    let catalog_fn: CatalogFn<Timestamp> = {
        let catalog = catalog.clone();
        Arc::new(move || {
            Box::new(catalog.begin::<Timestamp>()) as Box<dyn StorageTxn<Timestamp> + Send>
        })
    };
    let stand_in = Arc::new(StandIn::default());
    let handler = Arc::clone(&stand_in);
    let config = ControllerConfig {
        connector_factory: Some(Arc::new(move |_: &ReplicaConfig| {
            Ok(
                LocalConnector::new(Arc::clone(&handler) as Arc<dyn ReplicaHandler<Timestamp>>)
                    as Arc<dyn ReplicaConnector<Timestamp>>,
            )
        })),
        ..ControllerConfig::default()
    };
    let url = format!("mem://bench-responses-{}", uuid::Uuid::new_v4().simple());
    let mut ctl = Controller::new(config, catalog_fn, &url).await.unwrap();
    ctl.create_instance(INSTANCE).unwrap();
    ctl.connect_replica(
        INSTANCE,
        ReplicaId(1),
        ReplicaConfig {
            location: ReplicaLocation::InProcess { workers: 1 },
        },
    )
    .unwrap();
    let collections = descriptions(sizes.collections);
    let ids: BTreeSet<GlobalId> = collections.iter().map(|(id, _)| *id).collect();
    let mut txn = catalog.begin::<Timestamp>();
    ctl.prepare_state(&mut txn, ids.clone(), BTreeSet::new())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let metadata = StorageMetadata::from_txn(&catalog.begin::<Timestamp>());
    ctl.create_collections(&metadata, None, collections)
        .await
        .unwrap();
    ctl.initialization_complete();
    let _holds = ctl
        .acquire_read_holds(ids.iter().copied().collect())
        .unwrap();

    let sender = loop {
        if let Some(sender) = stand_in.responses.lock().unwrap().clone() {
            break sender;
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), ctl.ready()).await;
        while ctl.process().unwrap().is_some() {}
    };
    // Three phases on the same controller, each continuing the uppers where the last
    // one left them; the best counts, as on the bare side.
    let (last, last_upper) = *updates.last().unwrap();
    let mut best = Duration::MAX;
    for phase in 0..PHASES {
        let offset = phase * last_upper;
        let target = Antichain::from_elem(Timestamp::new(offset + last_upper));
        let start = Instant::now();
        // A replica reports every upper one step advanced in one response: a round.
        for round in updates.chunks(sizes.collections as usize) {
            let uppers = round
                .iter()
                .map(|(id, upper)| (*id, Antichain::from_elem(Timestamp::new(offset + upper))))
                .collect();
            sender
                .send(ReplicaResponse::FrontierUppers(uppers))
                .unwrap();
        }
        while ctl.collection_frontiers(last).unwrap().upper != target {
            ctl.ready().await;
            while ctl.process().unwrap().is_some() {}
        }
        best = best.min(start.elapsed());
        for id in &ids {
            assert_eq!(ctl.collection_frontiers(*id).unwrap().upper, target, "{id}");
        }
    }
    best
}

/// The baseline: the same uppers applied to one `MutableAntichain` per collection.
fn bare(sizes: &ResponseSizes, updates: &[(GlobalId, u64)]) -> Duration {
    let mut frontiers: Vec<MutableAntichain<Timestamp>> = (0..=sizes.collections)
        .map(|_| {
            let mut f = MutableAntichain::new();
            f.update_iter([(Timestamp::new(0), 1)]);
            f
        })
        .collect();
    let mut changed = 0;
    let start = Instant::now();
    for (id, upper) in updates {
        let GlobalId::User(i) = id else { continue };
        changed += frontiers[*i as usize]
            .update_iter([(Timestamp::new(*upper), 1), (Timestamp::new(upper - 1), -1)])
            .count();
    }
    let elapsed = start.elapsed();
    std::hint::black_box(changed);
    elapsed
}

/// Runs the comparison and reports it.
pub(crate) fn run(sizes: ResponseSizes) {
    let updates = workload(&sizes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let controller = runtime.block_on(through_process(&sizes, &updates));
    let baseline = best_of(PHASES as usize, || bare(&sizes, &updates));
    let per = |d: Duration| d.as_nanos() as f64 / updates.len() as f64;
    report(&Metric::new(
        "controller_process_frontier_upper_responses",
        per(controller),
        "ns/response",
        "bare_mutable_antichain_updates",
        per(baseline),
    ));
}
