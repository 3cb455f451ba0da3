//! The controller's side of a simulation (the turmoil client `controller`): it opens a
//! controller over gRPC to every replica, creates a table and an auction source,
//! appends to the table while the faults happen, then checks that everything
//! converged and is exact.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_controller_api::retry::BackoffConfig;
use strata_controller_api::{
    Antichain, CollectionDescription, Collections, DataSource, Datum, GlobalId,
    IngestionDescription, Instances, Lifecycle, LoadGenerator, ReadPolicy, Reads, RelationDesc,
    ReplicaConfig, ReplicaId, ReplicaLocation, Row, ScalarType, SourceConnection, SourceOutput,
    StorageError, StorageMetadata, Timestamp,
};
use strata_controller_core::{ConnectorFactory, Controller, ControllerConfig};
use strata_instance_client::grpc::GrpcConnector;
use strata_instance_client::transport::ReplicaConnector;
use strata_replica::generator::Generator;
use tokio::time::Instant;

use super::control::{SIM_INSTANCE, SimControl, Workload, storage, upper_time};
use super::hosts::{FenceProbe, host_name, replica_addr};
use super::net::Links;
use super::{SimError, SimReport};
use crate::harness::{ManualClock, consolidate, multiset_difference, render_difference};

/// The table the scenario appends to.
const TABLE: GlobalId = GlobalId::User(1);
/// The first of the auction source's four ids (ingestion, remap, auctions, bids).
const SOURCE: u64 = 10;

/// What the controller's side needs.
pub(crate) struct Scenario {
    pub(crate) seed: u64,
    pub(crate) location: String,
    pub(crate) replicas: usize,
    pub(crate) links: Links,
    pub(crate) fences: Vec<FenceProbe>,
    pub(crate) clock: ManualClock,
    /// The clock time at which the fault plan is over.
    pub(crate) healed_at: u64,
    pub(crate) table_rows: u64,
    /// How long the convergence waits may take, in simulated time.
    pub(crate) timeout: Duration,
    pub(crate) workload: Option<std::sync::Arc<dyn Workload>>,
}

/// The auction load generator of the scenario: one offset every 10 ms (real time),
/// bound at the simulation clock's time.
fn connection(seed: u64) -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 10,
        offsets_per_tick: 1,
        seed,
    }
}

/// The ids of the source's collections: ingestion, remap and its outputs.
struct Source {
    ingestion: GlobalId,
    remap: GlobalId,
    /// Each data collection with the output it holds.
    outputs: Vec<(GlobalId, SourceOutput)>,
    generator: Generator,
}

impl Source {
    fn new(seed: u64) -> Result<Source, SimError> {
        let generator = Generator::new(&connection(seed)).map_err(|e| SimError::Setup {
            reason: format!("the auction generator: {e}"),
        })?;
        let mut outputs = vec![(GlobalId::User(SOURCE), SourceOutput::Primary)];
        let mut next = SOURCE + 2;
        for (output, _) in generator.outputs() {
            if output != SourceOutput::Primary {
                outputs.push((GlobalId::User(next), output));
                next += 1;
            }
        }
        Ok(Source {
            ingestion: GlobalId::User(SOURCE),
            remap: GlobalId::User(SOURCE + 1),
            outputs,
            generator,
        })
    }

    fn descriptions(
        &self,
        seed: u64,
    ) -> Result<Vec<(GlobalId, CollectionDescription<Timestamp>)>, SimError> {
        let desc_of = |output: &SourceOutput| {
            self.generator
                .output_desc(output)
                .map_err(|e| SimError::Setup {
                    reason: format!("the auction generator's {output:?} schema: {e}"),
                })
        };
        let ingestion = IngestionDescription {
            connection: connection(seed),
            instance_id: SIM_INSTANCE,
            remap_collection_id: self.remap,
            source_exports: BTreeMap::new(),
            as_of: None,
        };
        let mut descriptions = vec![(
            self.remap,
            CollectionDescription::for_source(
                strata_replica::remap::remap_desc(),
                DataSource::Progress,
            ),
        )];
        for (id, output) in &self.outputs {
            let source = if *id == self.ingestion {
                DataSource::Ingestion(ingestion.clone())
            } else {
                DataSource::IngestionExport {
                    ingestion_id: self.ingestion,
                    output: output.clone(),
                }
            };
            descriptions.push((
                *id,
                CollectionDescription::for_source(desc_of(output)?, source),
            ));
        }
        Ok(descriptions)
    }

    /// What `output` holds once offsets `0..offsets` are bound.
    fn expected(&self, output: &SourceOutput, offsets: u64) -> BTreeMap<Row, i64> {
        consolidate(
            self.generator
                .updates_in(0..offsets)
                .into_iter()
                .filter(|(o, _, _)| o == output)
                .map(|(_, row, diff)| (row, diff)),
        )
    }

    fn collections(&self) -> impl Iterator<Item = GlobalId> + '_ {
        std::iter::once(self.remap).chain(self.outputs.iter().map(|(id, _)| *id))
    }
}

/// The offset a consolidated remap collection binds (0 before the first binding).
fn bound_offset(remap: &BTreeMap<Row, i64>) -> u64 {
    remap
        .iter()
        .find_map(|(row, diff)| match (row.unpack().as_slice(), diff) {
            ([Datum::UInt64(offset)], 1) => Some(*offset),
            _ => None,
        })
        .unwrap_or(0)
}

/// Compares `actual` with `expected`, naming duplicated, missing and extra rows.
fn exact(
    what: &str,
    actual: &BTreeMap<Row, i64>,
    expected: &BTreeMap<Row, i64>,
) -> Result<(), SimError> {
    let difference = multiset_difference(actual.clone(), expected.clone());
    if difference.is_empty() {
        return Ok(());
    }
    let duplicated = actual
        .iter()
        .filter(|(row, n)| expected.get(*row).is_some_and(|e| *n > e))
        .count();
    Err(SimError::Diverged {
        what: format!(
            "{what} is not exact ({duplicated} rows duplicated; + is extra, - is missing):\n{}",
            render_difference(&difference)
        ),
    })
}

fn connector_factory(links: &Links) -> ConnectorFactory<Timestamp> {
    let dialer = links.dialer();
    std::sync::Arc::new(move |config: &ReplicaConfig| match &config.location {
        ReplicaLocation::Grpc { addr, .. } => GrpcConnector::new(addr, None)
            .map(|c| {
                std::sync::Arc::new(c.with_dialer(dialer.clone()))
                    as std::sync::Arc<dyn ReplicaConnector<Timestamp>>
            })
            .map_err(|e| StorageError::InvalidUsage(format!("replica at {addr}: {e}"))),
        other => Err(StorageError::InvalidUsage(format!(
            "the simulation reaches replicas over gRPC only, not {other:?}"
        ))),
    })
}

impl Scenario {
    /// Runs the controller's side to the end; the report on success.
    pub(crate) async fn run(self) -> Result<SimReport, SimError> {
        let config = ControllerConfig {
            connector_factory: Some(connector_factory(&self.links)),
            backoff: BackoffConfig::doubling(Duration::from_millis(10), Duration::from_millis(100)),
            ..ControllerConfig::default()
        };
        let controller = Controller::open_durable(config, &self.location)
            .await
            .map_err(storage("opening the controller"))?;
        let mut driver = SimControl::new(controller, self.timeout, self.clock.clone());
        let ctl = driver.controller_mut();
        ctl.create_instance(SIM_INSTANCE)
            .map_err(storage("creating the instance"))?;
        for index in 0..self.replicas {
            let config = ReplicaConfig {
                location: ReplicaLocation::Grpc {
                    addr: replica_addr(index),
                    tls: false,
                    token: None,
                },
            };
            ctl.connect_replica(SIM_INSTANCE, ReplicaId(index as u64 + 1), config)
                .map_err(storage("connecting a replica"))?;
        }
        let desc = RelationDesc::builder()
            .with_column("k", ScalarType::Int64.nullable(false))
            .finish();
        ctl.create_collections(
            &StorageMetadata::default(),
            Some(Timestamp::new(0)),
            vec![(TABLE, CollectionDescription::table(desc))],
        )
        .await
        .map_err(storage("creating the table"))?;
        let source = Source::new(self.seed)?;
        ctl.create_collections(
            &StorageMetadata::default(),
            None,
            source.descriptions(self.seed)?,
        )
        .await
        .map_err(storage("creating the auction source"))?;
        // Hold every since where it is, so the checks can read any time they pick.
        let hold = ReadPolicy::ValidFrom(Antichain::from_elem(Timestamp::new(0)));
        let policies = std::iter::once(TABLE)
            .chain(source.collections())
            .map(|id| (id, hold.clone()))
            .collect();
        ctl.set_read_policy(policies)
            .map_err(storage("holding the sinces"))?;
        ctl.initialization_complete();
        if let Some(workload) = &self.workload {
            workload.setup(&mut driver).await?;
        }

        // Appends spread over the fault window.
        let spacing = Duration::from_millis(
            self.healed_at.saturating_sub(self.clock.now()) / self.table_rows.max(1),
        );
        let mut last_write = 0;
        let mut expected_table = BTreeMap::new();
        for k in 0..self.table_rows {
            let row = Row::pack(&[Datum::Int64(k as i64)]);
            last_write = driver.append(TABLE, vec![(row.clone(), 1)]).await?;
            expected_table.insert(row, 1);
            let next = Instant::now() + spacing;
            while Instant::now() < next {
                driver.drive(Duration::from_millis(5)).await?;
            }
        }
        // The plan may run longer than a wait's timeout; turmoil's duration bounds it.
        while self.clock.now() < self.healed_at {
            driver.drive(Duration::from_millis(5)).await?;
        }

        // Convergence: every replica's running process admitted this controller and is
        // connected to it over a link not cut since, and every upper passes the target.
        let epoch = driver.controller().epoch();
        for (index, fence) in self.fences.iter().enumerate() {
            let host = host_name(index);
            let links = &self.links;
            driver
                .wait_until(
                    &format!("replica {index} to serve epoch {epoch} again"),
                    |_| match fence.admitted() {
                        Some(e) if e == epoch && links.is_connected(&host) => Ok(()),
                        Some(e) if e == epoch => Err("no connection since the last cut".into()),
                        Some(e) => Err(format!("its fence at epoch {e}")),
                        None => Err("it is down".into()),
                    },
                )
                .await?;
        }
        let target = self.clock.now();
        let ids: Vec<GlobalId> = source.collections().collect();
        let as_of = driver
            .wait_until(&format!("the uppers of {ids:?} to pass {target}"), |ctl| {
                let mut lowest = u64::MAX;
                for id in &ids {
                    match upper_time(ctl, *id)? {
                        Some(t) if t > target => lowest = lowest.min(t),
                        Some(t) => return Err(format!("{id} at {t}")),
                        None => return Err(format!("{id} closed")),
                    }
                }
                Ok(lowest - 1)
            })
            .await?;
        driver
            .wait_until(
                &format!("the upper of {TABLE} to pass {last_write}"),
                |ctl| match upper_time(ctl, TABLE)? {
                    Some(t) if t > last_write => Ok(()),
                    t => Err(format!("{t:?}")),
                },
            )
            .await?;

        // Exactness.
        let table = driver.snapshot(TABLE, last_write).await?;
        exact(
            &format!("{TABLE} as of {last_write}"),
            &table,
            &expected_table,
        )?;
        let offsets = bound_offset(&driver.snapshot(source.remap, as_of).await?);
        if offsets == 0 {
            return Err(SimError::Diverged {
                what: format!("the source bound no offset by {as_of}"),
            });
        }
        for (id, output) in &source.outputs {
            let rows = driver.snapshot(*id, as_of).await?;
            exact(
                &format!("{id} ({output:?}) as of {as_of} with {offsets} offsets bound"),
                &rows,
                &source.expected(output, offsets),
            )?;
        }
        if let Some(workload) = &self.workload {
            workload.check(&mut driver).await?;
        }
        Ok(SimReport {
            seed: self.seed,
            epoch,
            as_of,
            offsets,
            table_rows: expected_table.len() as u64,
            ..SimReport::default()
        })
    }
}
