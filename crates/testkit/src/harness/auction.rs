//! [`AuctionSource`]: an auction load-generator ingestion with its two subsources, and
//! what it must contain, so a test can run a real source and compare exactly.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_controller_api::{
    CollectionDescription, Datum, GlobalId, InstanceId, LoadGenerator, Row, SourceConnection,
    SourceOutput, Timestamp,
};
use strata_replica::generator::{AUCTIONS, BIDS, Generator};

use strata_controller_core::embed::LoadGeneratorSource;

use super::{Harness, HarnessError, Result, consolidate};

/// An auction source: an ingestion (`primary`), its remap collection and its
/// `auctions` and `bids` subsources, with four consecutive user ids.
///
/// The generator is deterministic: the contents after `n` offsets are
/// [`expected`](Self::expected)`(output, n)`, whatever crashes and restarts happened.
/// Build the harness with [`offset_limit`](super::HarnessBuilder::offset_limit) so the
/// source stops and [`Harness::wait_for_source_offset`] can wait for the end.
///
/// # Examples
///
/// ```
/// use strata_testkit::harness::{AuctionSource, Harness, ManualClock, assert_consolidated_eq};
///
/// #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// async fn main() -> Result<(), strata_testkit::harness::HarnessError> {
///     let clock = ManualClock::new(0);
///     let mut harness = Harness::builder()
///         .now(clock.now_fn())
///         .offset_limit(9)
///         .build()
///         .await?;
///     let source = AuctionSource::new(10, 42);
///     harness.create_auction_source(&source).await?;
///     let at = harness.wait_for_source_offset(&source, 9).await?;
///     for (id, output) in source.outputs() {
///         let rows = harness.snapshot_multiset(id, at).await?;
///         assert_consolidated_eq(rows, source.expected(&output, 9)?);
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuctionSource {
    /// The ingestion (its primary output is empty for the auction generator).
    pub ingestion: GlobalId,
    /// The remap collection: which offsets are bound at which time.
    pub remap: GlobalId,
    /// The `auctions` subsource.
    pub auctions: GlobalId,
    /// The `bids` subsource.
    pub bids: GlobalId,
    connection: SourceConnection,
}

impl AuctionSource {
    /// A source with ids `User(first_id)` (ingestion), `+1` (remap), `+2` (auctions) and
    /// `+3` (bids), generating from `seed`, three offsets per tick, as fast as it can.
    pub fn new(first_id: u64, seed: u64) -> AuctionSource {
        AuctionSource {
            ingestion: GlobalId::User(first_id),
            remap: GlobalId::User(first_id + 1),
            auctions: GlobalId::User(first_id + 2),
            bids: GlobalId::User(first_id + 3),
            connection: SourceConnection::LoadGenerator {
                generator: LoadGenerator::Auction,
                tick_interval_ms: 0,
                offsets_per_tick: 3,
                seed,
            },
        }
    }

    /// The source's connection.
    pub fn connection(&self) -> &SourceConnection {
        &self.connection
    }

    /// The collections that hold data, with the output each one holds.
    pub fn outputs(&self) -> [(GlobalId, SourceOutput); 3] {
        [
            (self.ingestion, SourceOutput::Primary),
            (self.auctions, SourceOutput::Named(AUCTIONS.into())),
            (self.bids, SourceOutput::Named(BIDS.into())),
        ]
    }

    fn generator(&self) -> Result<Generator> {
        Generator::new(&self.connection).map_err(|e| HarnessError::Backend {
            reason: format!("the auction generator: {e}"),
        })
    }

    /// The collection descriptions to create, running on `instance`: the remap
    /// collection, the ingestion and its two subsources.
    pub fn descriptions(
        &self,
        instance: InstanceId,
    ) -> Result<Vec<(GlobalId, CollectionDescription<Timestamp>)>> {
        let source = self.outputs().into_iter().skip(1).fold(
            LoadGeneratorSource::new(
                self.ingestion,
                self.remap,
                instance,
                self.connection.clone(),
            ),
            |source, (id, output)| source.subsource(id, output),
        );
        source.descriptions().map_err(|e| HarnessError::Backend {
            reason: format!("the auction source's descriptions: {e}"),
        })
    }

    /// What `output` holds once offsets `0..offsets` are bound, consolidated.
    pub fn expected(&self, output: &SourceOutput, offsets: u64) -> Result<BTreeMap<Row, i64>> {
        let generator = self.generator()?;
        Ok(consolidate(
            generator
                .updates_in(0..offsets)
                .into_iter()
                .filter(|(o, _, _)| o == output)
                .map(|(_, row, diff)| (row, diff)),
        ))
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

impl Harness {
    /// Creates `source`'s collections on the harness's instance (see
    /// [`AuctionSource`] for an example).
    pub async fn create_auction_source(&mut self, source: &AuctionSource) -> Result<()> {
        let descriptions = source.descriptions(self.instance())?;
        self.create_collections(None, descriptions).await
    }

    /// Waits until `source` has bound at least `offsets` offsets and returns a time at
    /// which it has: a snapshot of any output as of that time is
    /// [`AuctionSource::expected`]`(output, offsets)` when `offsets` is the harness's
    /// offset limit.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] with the last bound offset seen.
    pub async fn wait_for_source_offset(
        &mut self,
        source: &AuctionSource,
        offsets: u64,
    ) -> Result<Timestamp> {
        self.wait_for_bound_offset(source.ingestion, source.remap, offsets)
            .await
    }

    /// Waits until the remap collection `remap` of ingestion `ingestion` binds at least
    /// `offsets` offsets (of any source, built-in or registered) and returns a time at
    /// which it does: every output's snapshot as of that time holds exactly the
    /// updates of the offsets below the bound one.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] with the last bound offset seen.
    pub async fn wait_for_bound_offset(
        &mut self,
        ingestion: GlobalId,
        remap: GlobalId,
        offsets: u64,
    ) -> Result<Timestamp> {
        let started = Instant::now();
        let mut after = Timestamp::new(0);
        let mut seen = 0;
        while started.elapsed() < self.settings.timeout {
            let upper = self.wait_for_upper(remap, after).await?;
            let Some(first) = upper.as_option() else {
                break;
            };
            let at = Timestamp::new(first.as_millis().saturating_sub(1));
            seen = bound_offset(&self.snapshot_multiset(remap, at).await?);
            if seen >= offsets {
                return Ok(at);
            }
            after = *first;
        }
        Err(HarnessError::Timeout {
            waiting_for: format!("{ingestion} to bind {offsets} offsets"),
            last_seen: format!("{seen} offsets bound"),
            after: started.elapsed(),
        })
    }
}
