//! `strata demo`: the whole system on an embedded default, in seven steps.
//!
//! 1. an instance with N replicas (in-process, or `strata replica` child processes over
//!    gRPC), and the introspection collections;
//! 2. two tables, written together atomically at many times;
//! 3. the auction load-generator source with its subsources and remap collection, and
//!    a file sink of the `auctions` subsource under `<data dir>/sinks/`; the source runs
//!    and the tables take writes for `--duration`, with a live line of uppers and lag;
//! 4. introspection: every collection's shard and frontiers, the introspection
//!    collections, statuses and statistics;
//! 5. snapshots of a table and a subsource, and where each collection's data lives:
//!    its Parquet parts and inline batches, with the command that opens a part;
//! 6. the sink's file checked against a snapshot of its input, then a subsource and
//!    the sink dropped, and the subsource's shard finalized and its parts collected;
//! 7. a one-screen summary.
//!
//! Everything lives in the durable catalog of the persist location, so a second run
//! recovers the first run's collections at a higher epoch and continues their
//! frontiers. See [`plan`] for the ids, and why a dropped subsource stays dropped.

mod driver;
mod drops;
mod options;
mod parts;
mod plan;
mod postgres;
mod progress;
mod replicas;
mod report;
mod steps;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use strata_controller_api::{Collections, GlobalId, StorageTxn, Timestamp};
use strata_controller_core::catalog::{CatalogOptions, DurableCatalog};
use strata_controller_core::{CatalogFn, Controller, ControllerConfig};
use strata_introspection::{Metrics, MetricsServer, serve_metrics};
use strata_persist_backend::PersistClient;

use self::driver::{Driver, first};
use self::options::{Options, Transport, short_path};
use self::progress::Display;
use self::replicas::{ChildReplicas, Servers};
use crate::args::DemoArgs;
use crate::location::{self, Access};

/// Ctrl-C, SIGTERM and SIGHUP (a closed terminal): each stops the demo and its
/// replica processes.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch for ctrl-c")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch for sigterm")?,
            hangup: signal(SignalKind::hangup()).context("cannot watch for sighup")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "ctrl-c",
            _ = self.terminate.recv() => "sigterm",
            _ = self.hangup.recv() => "sighup",
        }
    }
}

/// Runs `strata demo` to completion. Child replica processes are stopped and reaped
/// before this returns, whatever happened.
pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let options = Options::from_args(args)?;
    // Declared before the runtime so it is dropped after it: its `Drop` stops the
    // children even if the demo panics.
    let mut children = ChildReplicas::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(async {
        let mut signals = Signals::install()?;
        tokio::select! {
            result = demo(&options, &mut children) => result,
            signal = signals.recv() => Err(anyhow!(
                "interrupted by {signal}: the replicas were stopped; run the demo again to continue"
            )),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    children.stop();
    result
}

/// The previous run's epoch and collections, read without claiming an epoch.
async fn previous_run(client: &PersistClient) -> anyhow::Result<(Option<u64>, usize)> {
    let contents = DurableCatalog::read_latest(client, &CatalogOptions::default())
        .await
        .context("cannot read the durable catalog")?;
    let epoch = (contents.epoch > 0).then_some(contents.epoch);
    Ok((epoch, contents.unfinalized_shards.len()))
}

/// What opening the location told the demo about earlier runs.
struct Opened {
    client: PersistClient,
    catalog: DurableCatalog,
    epoch: u64,
    previous_epoch: Option<u64>,
    /// Dropped shards of a previous run still to be finalized.
    unfinalized: usize,
    recovered: usize,
    known: Vec<GlobalId>,
}

/// The controller and the replicas it runs on.
struct Started {
    driver: Driver,
    /// The in-process replica servers, stopped at the end.
    servers: Servers,
    /// The gRPC replicas' addresses and process ids (empty for local replicas).
    grpc: Vec<(String, u32)>,
}

/// What steps 1 to 6 leave for the summary.
struct Results {
    writer: steps::TableWriter,
    snapshot_counts: (usize, usize),
    parts: parts::PartsTotal,
    drops: drops::Drops,
    frontiers: Vec<summary::FrontierRow>,
}

/// The demo proper: open, start, the six steps, a clean stop, the summary.
async fn demo(options: &Options, children: &mut ChildReplicas) -> anyhow::Result<()> {
    let display = Display::new();
    let opened = open(options).await?;
    header(&display, options, &opened);
    let metrics = Metrics::new();
    let metrics_server = serve_metrics_if_asked(options, &metrics, &display).await?;
    let (epoch, previous_epoch, recovered) =
        (opened.epoch, opened.previous_epoch, opened.recovered);
    let mut recovery = steps::Recovery {
        known: opened.known.iter().copied().collect(),
        ..Default::default()
    };
    let Started {
        mut driver,
        servers,
        grpc,
    } = start(options, children, opened, display, metrics).await?;
    let results = run_steps(&mut driver, &mut recovery, options, children, &grpc).await?;
    let statuses = driver
        .statuses
        .iter()
        .map(|(id, s)| (*id, s.status.to_string()))
        .collect();
    let replica_names: Vec<String> = match options.transport {
        Transport::Local => (0..options.replicas)
            .map(|_| "in-process".to_owned())
            .collect(),
        Transport::Grpc => grpc.iter().map(|(addr, _)| addr.clone()).collect(),
    };
    let (mut display, stopped_cleanly) = stop(driver, &servers, children, options).await;

    display.step(7, "summary");
    let summary = summary::Summary {
        options,
        epoch,
        previous_epoch,
        recovered,
        replicas: replica_names,
        stopped_cleanly,
        writer: &results.writer,
        snapshot_counts: results.snapshot_counts,
        parts: results.parts,
        drops: &results.drops,
        frontiers: results.frontiers,
        statuses,
        elapsed: display.elapsed(),
    };
    display.line(&summary.render());
    display.line(&closing_note(options));
    if let Some(server) = metrics_server {
        server.shutdown().await;
    }
    Ok(())
}

/// Opens the location and its durable catalog, at a new epoch.
async fn open(options: &Options) -> anyhow::Result<Opened> {
    let url = &options.persist;
    let client = location::open(url, Access::ReadWrite, options.open_timeout).await?;
    let (previous_epoch, unfinalized) =
        location::within(url, options.open_timeout, previous_run(&client)).await?;
    let catalog = location::within(url, options.open_timeout, async {
        DurableCatalog::open(&client)
            .await
            .context("cannot open the durable catalog")
    })
    .await?;
    let known: Vec<GlobalId> = catalog
        .begin::<Timestamp>()
        .get_collection_metadata()
        .into_keys()
        .collect();
    let ours = |id: &GlobalId| {
        plan::TABLES.contains(id)
            || plan::SOURCE.contains(id)
            || plan::introspection().iter().any(|(i, _)| i == id)
    };
    let recovered = known.iter().filter(|id| ours(id)).count();
    Ok(Opened {
        epoch: catalog.epoch(),
        client,
        catalog,
        previous_epoch,
        unfinalized,
        recovered,
        known,
    })
}

/// The first lines: the location, the replicas, and what the catalog recovered.
fn header(display: &Display, options: &Options, opened: &Opened) {
    let replicas_text = match options.transport {
        Transport::Local => format!(
            "{} in-process replica(s) with {} workers each",
            options.replicas, options.workers
        ),
        Transport::Grpc => format!(
            "{} strata replica process(es) over grpc with {} workers each",
            options.replicas, options.workers
        ),
    };
    display.line(&format!(
        "strata demo: persist {}, {replicas_text}",
        options.persist
    ));
    let (epoch, recovered) = (opened.epoch, opened.recovered);
    display.line(&match opened.previous_epoch {
        Some(previous) => format!(
            "durable catalog: catalog epoch {epoch} (previous run: epoch {previous}); \
             recovered {recovered} collections from a previous run"
        ),
        None => format!("durable catalog: catalog epoch {epoch}; fresh location, no previous run"),
    });
    if opened.unfinalized > 0 {
        display.line(&format!(
            "  {} dropped shard(s) of a previous run are still to be finalized: the controller finishes them now",
            opened.unfinalized
        ));
    }
}

/// Serves `metrics` when `--metrics-addr` asks for it.
async fn serve_metrics_if_asked(
    options: &Options,
    metrics: &Metrics,
    display: &Display,
) -> anyhow::Result<Option<MetricsServer>> {
    let Some(addr) = options.metrics_addr else {
        return Ok(None);
    };
    let server = serve_metrics(addr, metrics.clone())
        .await
        .map_err(|e| anyhow!("{e}; pass a free --metrics-addr, or leave it out"))?;
    display.line(&format!(
        "metrics at http://{}/metrics",
        server.local_addr()
    ));
    Ok(Some(server))
}

/// Starts the replica processes (for gRPC) and a controller on the opened catalog.
async fn start(
    options: &Options,
    children: &mut ChildReplicas,
    opened: Opened,
    display: Display,
    metrics: Metrics,
) -> anyhow::Result<Started> {
    let url = &options.persist;
    let mut grpc = Vec::new();
    if options.transport == Transport::Grpc {
        tokio::task::block_in_place(|| children.start(options.replicas, url, options.workers))?;
        grpc = children.addrs().into_iter().zip(children.pids()).collect();
    }
    let servers: Servers = Arc::default();
    let config = ControllerConfig {
        connector_factory: Some(replicas::connector_factory(
            url.clone(),
            metrics.replica.clone(),
            Arc::clone(&servers),
        )),
        // The controller's series go to the registry that --metrics-addr serves.
        metrics: metrics.clone(),
        // Real-time recency for the --postgres source asks its server.
        upstream_probes: strata_replica::connector::ConnectorRegistry::default()
            .upstream_probes()
            .clone(),
        ..ControllerConfig::default()
    };
    let begin: CatalogFn<Timestamp> = {
        let catalog = opened.catalog.clone();
        Arc::new(move || Box::new(catalog.begin::<Timestamp>()))
    };
    let ctl = Controller::new(config, begin, url)
        .await
        .with_context(|| format!("cannot start a controller on {url}"))?;
    let driver = Driver {
        ctl,
        catalog: opened.catalog,
        client: opened.client,
        display,
        metrics,
        statuses: BTreeMap::new(),
        status_updates: 0,
        dropped: Default::default(),
        frontier_reports: 0,
        watched: vec![plan::ORDERS, plan::AUCTIONS_ID, plan::AUCTION_PROGRESS],
        sink_path: None,
        table_commits: 0,
        rates_from: std::sync::Mutex::new(None),
    };
    Ok(Started {
        driver,
        servers,
        grpc,
    })
}

/// Steps 1 to 6.
async fn run_steps(
    driver: &mut Driver,
    recovery: &mut steps::Recovery,
    options: &Options,
    children: &mut ChildReplicas,
    grpc: &[(String, u32)],
) -> anyhow::Result<Results> {
    let check_children = |children: &mut ChildReplicas| match options.transport {
        Transport::Grpc => tokio::task::block_in_place(|| children.check_alive()),
        Transport::Local => Ok(()),
    };
    driver.display.step(1, "instance and replicas");
    steps::instance(driver, recovery, options, grpc).await?;
    check_children(children)?;

    driver
        .display
        .step(2, "two tables, written together atomically");
    let mut writer = steps::tables(driver, recovery).await?;

    driver
        .display
        .step(3, "auction source with subsources, and a file sink");
    let sink = ingest(driver, recovery, options, &mut writer).await?;
    check_children(children)?;

    driver.display.step(4, "introspection");
    report::introspection(driver).await?;

    driver.display.step(5, "snapshots and parts");
    let snapshot_counts = report::snapshots(driver).await?;
    let parts = parts::parts(driver, &options.persist).await?;

    driver.display.step(6, "drop a subsource and the sink");
    let drops = drops::drops(driver, &sink).await?;
    Ok(Results {
        writer,
        snapshot_counts,
        parts,
        drops,
        frontiers: frontiers(driver, recovery),
    })
}

/// Step 3's work: the source and its sink, a bulk load, then `--duration` of ingestion
/// and table writes.
async fn ingest(
    driver: &mut Driver,
    recovery: &mut steps::Recovery,
    options: &Options,
    writer: &mut steps::TableWriter,
) -> anyhow::Result<steps::Sink> {
    let sink = steps::source(driver, recovery, options).await?;
    driver.sink_path = Some(sink.path.clone());
    let pg = match &options.postgres {
        Some((url, publication)) => {
            Some(postgres::create(driver, recovery, url, publication).await?)
        }
        None => None,
    };
    steps::bulk_load(driver, writer).await?;
    driver.display.line(&format!(
        "  running for {:.1}s: the source ingests, the tables take a write every 200 ms",
        options.duration.as_secs_f64()
    ));
    steps::run(driver, writer, options.duration).await?;
    driver
        .display
        .line(&format!("  after the run: {}", driver.live_message()));
    if let Some(pg) = &pg {
        postgres::report(driver, pg).await?;
    }
    Ok(sink)
}

/// The user collections' frontiers for the summary, after the drops.
fn frontiers(driver: &mut Driver, recovery: &steps::Recovery) -> Vec<summary::FrontierRow> {
    driver.ctl.apply_pending();
    let mut frontiers = Vec::new();
    for id in plan::TABLES.iter().chain(plan::SOURCE.iter()) {
        let Ok(meta) = driver.ctl.collection_frontiers(*id) else {
            continue;
        };
        frontiers.push(summary::FrontierRow {
            id: *id,
            kind: kind_of(*id),
            start: recovery.uppers.get(id).copied(),
            since: first(&meta.since),
            upper: first(&meta.upper),
        });
    }
    frontiers
}

/// Stops everything in order, so that nothing is cut off half way at exit: the
/// controller finishes what it accepted, the replicas stop their dataflows and let their
/// shards' maintenance finish, then the demo's own client does. Returns the display
/// and, for gRPC, how many replica processes stopped on SIGTERM.
async fn stop(
    driver: Driver,
    servers: &Servers,
    children: &mut ChildReplicas,
    options: &Options,
) -> (Display, Option<(usize, usize)>) {
    let Driver {
        ctl,
        display,
        client,
        ..
    } = driver;
    ctl.close().await;
    replicas::stop_servers(servers).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), client.all_maintenance_idle()).await;
    let stopped_cleanly = (options.transport == Transport::Grpc).then(|| {
        let all = children.pids().len();
        (tokio::task::block_in_place(|| children.stop()), all)
    });
    (display, stopped_cleanly)
}

/// The last line: how to see recovery.
fn closing_note(options: &Options) -> String {
    if options.is_memory() {
        "  (mem:// keeps nothing: use --persist file://… to see a second run recover)".to_owned()
    } else {
        format!(
            "  run it again to see recovery; sink files are in {}",
            short_path(&options.sinks_dir)
        )
    }
}
/// The kind of one of the demo's collections.
fn kind_of(id: GlobalId) -> &'static str {
    match id {
        plan::ORDERS | plan::ORDER_LINES => "table",
        plan::AUCTION => "source",
        plan::AUCTION_PROGRESS => "remap",
        _ => "subsource",
    }
}
