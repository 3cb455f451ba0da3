//! Steps 1 to 3: the instance and its replicas, the tables and their atomic writes,
//! and the auction source with its subsources and a file sink; then the run itself,
//! which keeps writing the tables while the source ingests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use strata_controller_api::{
    Antichain, Collections, Datum, ExportDescription, Exports, GlobalId, Instances, Lifecycle,
    ReadPolicy, Reads, ReplicaConfig, ReplicaId, ReplicaLocation, Row, SinkConnection, Tables,
    Timestamp,
};

use super::driver::{Driver, now_ms};
use super::options::{Options, Transport, short_path};
use super::plan::{self, AUCTIONS_ID, BIDS_ID, INSTANCE, ORDER_LINES, ORDERS};

/// How many atomic appends step 2 makes before the source starts.
const FIRST_APPENDS: u64 = 20;

/// The orders of the bulk load that opens the run of step 3: their batches (about 12 KiB of
/// orders and 24 KiB of lines) are well above the 4 KiB below which a batch stays
/// inline, so each table gets a Parquet part.
pub(crate) const BULK_ORDERS: i64 = 500;

/// How often the tables are written while the source runs.
const APPEND_EVERY: Duration = Duration::from_millis(200);

const CUSTOMERS: [&str; 5] = ["ada", "grace", "edsger", "barbara", "ken"];
const ITEMS: [&str; 6] = ["tea", "coffee", "scone", "bagel", "juice", "muffin"];

/// What the tables hold and what this run wrote to them.
#[derive(Debug, Default)]
pub(crate) struct TableWriter {
    /// The next order id (continues the previous runs' orders).
    next_order: i64,
    /// Rows the tables held when this run started.
    pub(crate) rows_before: (u64, u64),
    /// Atomic appends this run made.
    pub(crate) appends: u64,
    /// Rows this run added, per table.
    pub(crate) rows_added: (u64, u64),
    /// The time of this run's first and last write.
    pub(crate) first_write: Option<u64>,
    pub(crate) last_write: Option<u64>,
}

impl TableWriter {
    /// Reads the tables' current contents to continue their order ids.
    pub(crate) async fn new(driver: &mut Driver) -> anyhow::Result<TableWriter> {
        let orders = driver
            .ctl
            .snapshot_latest(ORDERS)
            .await
            .context("cannot read orders")?;
        let lines = driver
            .ctl
            .snapshot_latest(ORDER_LINES)
            .await
            .context("cannot read order_lines")?;
        let max_id = orders
            .iter()
            .filter_map(|(row, _)| match row.unpack().first() {
                Some(Datum::Int64(id)) => Some(*id),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let count = |rows: &[(Row, i64)]| -> u64 {
            rows.iter().map(|(_, d)| (*d).max(0).unsigned_abs()).sum()
        };
        Ok(TableWriter {
            next_order: max_id + 1,
            rows_before: (count(&orders), count(&lines)),
            ..TableWriter::default()
        })
    }

    /// Order `id` and its lines.
    fn order(id: i64) -> (Row, Vec<(Row, i64)>) {
        let pick = |n: i64, of: usize| (n.unsigned_abs() as usize * 7 + 3) % of;
        let lines: Vec<(Row, i64)> = (0..1 + id % 3)
            .map(|line| {
                let item = ITEMS[pick(id + line, ITEMS.len())];
                let cents = 150 + (id * 37 + line * 11) % 450;
                let row = Row::pack(&[
                    Datum::Int64(id),
                    Datum::Int64(line + 1),
                    Datum::String(item.into()),
                    Datum::Int64(cents),
                ]);
                (row, 1)
            })
            .collect();
        let total: i64 = lines
            .iter()
            .filter_map(|(row, _)| match row.unpack().get(3) {
                Some(Datum::Int64(c)) => Some(*c),
                _ => None,
            })
            .sum();
        let order = Row::pack(&[
            Datum::Int64(id),
            Datum::String(CUSTOMERS[pick(id, CUSTOMERS.len())].into()),
            Datum::Int64(total),
        ]);
        (order, lines)
    }

    /// One order and its lines, written to both tables at one time, atomically.
    pub(crate) async fn append(&mut self, driver: &mut Driver) -> anyhow::Result<u64> {
        self.append_orders(driver, 1).await
    }

    /// `count` orders and their lines, written to both tables at one time, atomically.
    pub(crate) async fn append_orders(
        &mut self,
        driver: &mut Driver,
        count: i64,
    ) -> anyhow::Result<u64> {
        driver.ctl.apply_pending();
        let (mut orders, mut lines) = (Vec::new(), Vec::new());
        for id in self.next_order..self.next_order + count {
            let (order, order_lines) = Self::order(id);
            orders.push((order, 1));
            lines.extend(order_lines);
        }
        let at = driver
            .upper(ORDERS)
            .max(driver.upper(ORDER_LINES))
            .max(now_ms());
        let added = (orders.len() as u64, lines.len() as u64);
        driver
            .ctl
            .append_table(
                Timestamp::new(at),
                Timestamp::new(at + 1),
                vec![(ORDERS, orders), (ORDER_LINES, lines)],
            )
            .with_context(|| format!("cannot append to the tables at {at}"))?
            .await
            .with_context(|| format!("the table write at {at} failed"))?;
        driver.ctl.apply_pending();
        driver.table_commits += 1;
        self.next_order += count;
        self.appends += 1;
        self.rows_added.0 += added.0;
        self.rows_added.1 += added.1;
        self.first_write.get_or_insert(at);
        self.last_write = Some(at);
        Ok(at)
    }
}

/// One atomic write large enough that its batches become Parquet parts (smaller
/// batches stay inline in the shards' state).
pub(crate) async fn bulk_load(driver: &mut Driver, writer: &mut TableWriter) -> anyhow::Result<()> {
    let before = writer.rows_added;
    let at = writer.append_orders(driver, BULK_ORDERS).await?;
    driver.display.line(&format!(
        "  bulk load: {} orders and {} order lines in one atomic write at {at}",
        writer.rows_added.0 - before.0,
        writer.rows_added.1 - before.1
    ));
    Ok(())
}

/// The ids the catalog knew when the demo started, and which of them the demo
/// re-creates.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Every collection id the catalog held.
    pub(crate) known: BTreeSet<GlobalId>,
    /// The uppers of recovered collections right after they were re-created.
    pub(crate) uppers: BTreeMap<GlobalId, Option<u64>>,
}

impl Recovery {
    pub(crate) fn has(&self, id: GlobalId) -> bool {
        self.known.contains(&id)
    }
}

/// Creates `collections` (recording new ones in the catalog) and notes the uppers of
/// the recovered ones.
pub(crate) async fn create(
    driver: &mut Driver,
    recovery: &mut Recovery,
    collections: Vec<(
        GlobalId,
        strata_controller_api::CollectionDescription<Timestamp>,
    )>,
) -> anyhow::Result<()> {
    let ids: Vec<GlobalId> = collections.iter().map(|(id, _)| *id).collect();
    let tables = collections.iter().any(|(_, d)| d.is_table());
    let mut txn = driver.catalog.begin::<Timestamp>();
    driver
        .ctl
        .prepare_state(&mut txn, ids.iter().copied().collect(), BTreeSet::new())
        .await
        .context("cannot record the collections in the catalog")?;
    strata_controller_api::StorageTxn::commit(&mut txn)
        .await
        .context("cannot commit the catalog")?;
    let metadata = driver.metadata();
    let register_ts = tables.then(|| Timestamp::new(now_ms()));
    driver
        .ctl
        .create_collections(&metadata, register_ts, collections)
        .await
        .with_context(|| {
            let names: Vec<String> = ids.iter().map(|id| plan::name(*id)).collect();
            format!("cannot create {}", names.join(", "))
        })?;
    for id in ids {
        if recovery.has(id) {
            let upper = driver.frontiers(id).and_then(|(_, upper)| upper);
            recovery.uppers.insert(id, upper);
        }
    }
    Ok(())
}

/// A line that says whether `id` was recovered, with its upper.
fn origin(recovery: &Recovery, id: GlobalId) -> String {
    match recovery.uppers.get(&id) {
        Some(Some(upper)) => format!("recovered, upper {upper}"),
        Some(None) => "recovered, closed".to_owned(),
        None => "created".to_owned(),
    }
}

/// Step 1: the instance, its replicas, and the introspection collections.
pub(crate) async fn instance(
    driver: &mut Driver,
    recovery: &mut Recovery,
    options: &Options,
    grpc: &[(String, u32)],
) -> anyhow::Result<()> {
    driver
        .ctl
        .create_instance(INSTANCE)
        .context("cannot create the instance")?;
    for index in 0..options.replicas {
        let replica = ReplicaId(u64::from(index) + 1);
        let (location, text) = match options.transport {
            Transport::Local => (
                ReplicaLocation::InProcess {
                    workers: usize::from(options.workers),
                },
                format!("in-process, {} timely workers", options.workers),
            ),
            Transport::Grpc => {
                let Some((addr, pid)) = grpc.get(usize::from(index)) else {
                    bail!("replica process {index} is missing");
                };
                (
                    ReplicaLocation::Grpc {
                        addr: format!("http://{addr}"),
                        tls: false,
                        token: None,
                    },
                    format!(
                        "strata replica process {pid} on {addr} (grpc), {} timely workers",
                        options.workers
                    ),
                )
            }
        };
        driver
            .ctl
            .connect_replica(INSTANCE, replica, ReplicaConfig { location })
            .with_context(|| format!("cannot connect replica {replica}"))?;
        driver.display.line(&format!("  replica {replica}: {text}"));
    }
    create(driver, recovery, plan::introspection()).await?;
    let ids: Vec<GlobalId> = plan::introspection().iter().map(|(id, _)| *id).collect();
    let policies = ids
        .iter()
        .map(|id| (*id, ReadPolicy::step_back()))
        .collect();
    driver.ctl.set_read_policy(policies)?;
    let recovered = ids.iter().filter(|id| recovery.has(**id)).count();
    driver.display.line(&format!(
        "  introspection: {} collections ({recovered} recovered)",
        ids.len()
    ));
    Ok(())
}

/// Step 2: the tables and a burst of atomic writes to both.
pub(crate) async fn tables(
    driver: &mut Driver,
    recovery: &mut Recovery,
) -> anyhow::Result<TableWriter> {
    create(driver, recovery, plan::tables()).await?;
    let policies = plan::TABLES
        .iter()
        .map(|id| (*id, ReadPolicy::step_back()))
        .collect();
    driver.ctl.set_read_policy(policies)?;
    let mut writer = TableWriter::new(driver).await?;
    for id in plan::TABLES {
        let rows = if id == ORDERS {
            writer.rows_before.0
        } else {
            writer.rows_before.1
        };
        driver.display.line(&format!(
            "  {}: {} ({rows} rows)",
            plan::name(id),
            origin(recovery, id)
        ));
    }
    for n in 0..FIRST_APPENDS {
        writer.append(driver).await?;
        let message = driver.live_message();
        driver
            .display
            .live("appending", Some((n + 1, FIRST_APPENDS)), &message);
    }
    driver.display.done();
    driver.display.line(&format!(
        "  {FIRST_APPENDS} atomic appends to orders and order_lines at times {}..={}; upper now {}",
        writer.first_write.unwrap_or(0),
        writer.last_write.unwrap_or(0),
        driver.upper(ORDERS)
    ));
    Ok(writer)
}

/// The sink of this run.
#[derive(Debug, Clone)]
pub(crate) struct Sink {
    pub(crate) id: GlobalId,
    pub(crate) path: PathBuf,
}

/// Step 3: the auction source with its subsources, and a file sink of `auctions`.
pub(crate) async fn source(
    driver: &mut Driver,
    recovery: &mut Recovery,
    options: &Options,
) -> anyhow::Result<Sink> {
    let new_source = !recovery.has(plan::AUCTION);
    if !new_source && !recovery.has(AUCTIONS_ID) {
        bail!(
            "the catalog at {} holds the auction source without its auctions subsource; \
             run the demo on a fresh --persist location",
            options.persist
        );
    }
    let with_bids = new_source || recovery.has(BIDS_ID);
    create(driver, recovery, plan::source(with_bids)?).await?;
    driver.ctl.initialization_complete();
    for id in [plan::AUCTION, plan::AUCTION_PROGRESS, AUCTIONS_ID] {
        driver
            .display
            .line(&format!("  {}: {}", plan::name(id), origin(recovery, id)));
    }
    if with_bids {
        driver
            .display
            .line(&format!("  bids: {}", origin(recovery, BIDS_ID)));
    } else {
        driver.display.line(
            "  bids: dropped by an earlier run (a subsource joins a source only when the source is created)",
        );
    }

    std::fs::create_dir_all(&options.sinks_dir).with_context(|| {
        format!(
            "cannot create the sink directory {}",
            options.sinks_dir.display()
        )
    })?;
    let epoch = driver.ctl.epoch();
    let id = plan::sink_id(epoch);
    let path = options.sinks_dir.join(format!("auctions-e{epoch}.ndjson"));
    for stale in [
        path.clone(),
        strata_replica::sink::file::progress_path(&path),
    ] {
        if stale.exists() {
            std::fs::remove_file(&stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    let metadata = driver.ctl.collection_metadata(AUCTIONS_ID)?;
    let since = driver.ctl.collection_frontiers(AUCTIONS_ID)?.since;
    let export = ExportDescription {
        from: AUCTIONS_ID,
        from_desc: metadata.relation_desc,
        connection: SinkConnection::File {
            path: path.to_string_lossy().into_owned(),
        },
        as_of: if since.is_empty() {
            Antichain::from_elem(Timestamp::new(0))
        } else {
            since
        },
        with_snapshot: true,
        instance_id: INSTANCE,
    };
    driver
        .ctl
        .create_exports(vec![(id, export)])
        .await
        .context("cannot create the sink")?;
    driver.display.line(&format!(
        "  sink {}: auctions -> {}",
        plan::name(id),
        short_path(&path)
    ));
    if let Some(note) = &options.sinks_note {
        driver.display.line(&format!("  ({note})"));
    }
    Ok(Sink { id, path })
}

/// Runs the source for `duration` while writing the tables, with the live line.
pub(crate) async fn run(
    driver: &mut Driver,
    writer: &mut TableWriter,
    duration: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    // Throughput is measured over the run itself.
    if let Ok(mut from) = driver.rates_from.lock() {
        *from = None;
    }
    let mut next_append = Instant::now();
    let total = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    while start.elapsed() < duration {
        if Instant::now() >= next_append {
            writer.append(driver).await?;
            next_append = Instant::now() + APPEND_EVERY;
        }
        driver.pump(Duration::from_millis(50)).await?;
        let message = driver.live_message();
        let done = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        driver
            .display
            .live("running", Some((done.min(total), total)), &message);
    }
    driver.display.done();
    Ok(())
}
