//! The harness with an auction source (a load generator with two subsources) run by
//! the controller on the harness's replicas: a replica crash mid-way, a controller
//! restart, and contents that match the generator exactly.

#![cfg(test)]

use std::collections::BTreeMap;

use strata_controller_api::{
    CollectionDescription, DataSource, Datum, GlobalId, IngestionDescription, InstanceId,
    LoadGenerator, Row, SourceConnection, SourceOutput, Timestamp,
};
use strata_replica::generator::{AUCTIONS, BIDS, Generator};
use strata_testkit::harness::{Harness, ManualClock, assert_consolidated_eq, consolidate};

const LIMIT: u64 = 60;

struct Auction {
    ingestion: GlobalId,
    remap: GlobalId,
    auctions: GlobalId,
    bids: GlobalId,
    connection: SourceConnection,
}

impl Auction {
    fn new() -> Auction {
        Auction {
            ingestion: GlobalId::User(10),
            remap: GlobalId::User(11),
            auctions: GlobalId::User(12),
            bids: GlobalId::User(13),
            connection: SourceConnection::LoadGenerator {
                generator: LoadGenerator::Auction,
                tick_interval_ms: 0,
                offsets_per_tick: 3,
                seed: 42,
            },
        }
    }

    fn outputs(&self) -> [(GlobalId, SourceOutput); 3] {
        [
            (self.ingestion, SourceOutput::Primary),
            (self.auctions, SourceOutput::Named(AUCTIONS.into())),
            (self.bids, SourceOutput::Named(BIDS.into())),
        ]
    }

    fn descriptions(
        &self,
        instance: InstanceId,
    ) -> Vec<(GlobalId, CollectionDescription<Timestamp>)> {
        let generator = Generator::new(&self.connection).unwrap();
        let desc_of = |output: &SourceOutput| generator.output_desc(output).unwrap();
        let ingestion = IngestionDescription {
            connection: self.connection.clone(),
            instance_id: instance,
            remap_collection_id: self.remap,
            source_exports: BTreeMap::new(),
            as_of: None,
        };
        let mut descriptions = vec![
            (
                self.remap,
                CollectionDescription::for_source(
                    strata_replica::remap::remap_desc(),
                    DataSource::Progress,
                ),
            ),
            (
                self.ingestion,
                CollectionDescription::for_source(
                    desc_of(&SourceOutput::Primary),
                    DataSource::Ingestion(ingestion),
                ),
            ),
        ];
        for (id, output) in self.outputs().into_iter().skip(1) {
            let desc = desc_of(&output);
            descriptions.push((
                id,
                CollectionDescription::for_source(
                    desc,
                    DataSource::IngestionExport {
                        ingestion_id: self.ingestion,
                        output,
                    },
                ),
            ));
        }
        descriptions
    }

    /// What the generator produces for offsets `0..LIMIT` on `output`.
    fn model(&self, output: &SourceOutput) -> BTreeMap<Row, i64> {
        let generator = Generator::new(&self.connection).unwrap();
        consolidate(
            generator
                .updates_in(0..LIMIT)
                .into_iter()
                .filter(|(o, _, _)| o == output)
                .map(|(_, row, diff)| (row, diff)),
        )
    }
}

/// The offset the remap collection binds as of `at`.
fn bound_offset(remap: &BTreeMap<Row, i64>) -> u64 {
    remap
        .iter()
        .find_map(|(row, diff)| match (row.unpack().as_slice(), diff) {
            ([Datum::UInt64(offset)], 1) => Some(*offset),
            _ => None,
        })
        .unwrap_or(0)
}

/// Waits until the source has bound every offset; returns a time at which it has.
async fn wait_for_all_offsets(harness: &mut Harness, source: &Auction) -> Timestamp {
    let mut after = Timestamp::new(0);
    loop {
        let upper = harness.wait_for_upper(source.remap, after).await.unwrap();
        let at = Timestamp::new(upper.elements()[0].as_millis() - 1);
        let remap = harness.snapshot_multiset(source.remap, at).await.unwrap();
        if bound_offset(&remap) == LIMIT {
            return at;
        }
        after = Timestamp::new(at.as_millis() + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_source_survives_crashes_and_restarts_exactly() {
    // Frozen at 0: the replicas bind each round one millisecond after the last.
    let clock = ManualClock::new(0);
    let mut harness = Harness::builder()
        .replicas(2)
        .now(clock.now_fn())
        .offset_limit(LIMIT)
        .build()
        .await
        .unwrap();
    let source = Auction::new();
    let descriptions = source.descriptions(harness.instance());
    harness
        .create_collections(None, descriptions)
        .await
        .unwrap();

    // Crash one replica once the source has written, and bring it back.
    harness
        .wait_for_upper(source.ingestion, Timestamp::new(0))
        .await
        .unwrap();
    harness.kill_replica(0).await.unwrap();
    harness.restart_replica(0).await.unwrap();
    harness.wait_for_replica(0).await.unwrap();

    let at = wait_for_all_offsets(&mut harness, &source).await;
    for (id, output) in source.outputs() {
        let rows = harness.snapshot_multiset(id, at).await.unwrap();
        if output != SourceOutput::Primary {
            // The auction generator writes its data to the subsources.
            assert!(!rows.is_empty(), "{id} is empty");
        }
        assert_consolidated_eq(rows, source.model(&output));
    }

    // A new controller re-creates the source and reads the same contents.
    harness.restart_controller().await.unwrap();
    for (id, output) in source.outputs() {
        let rows = harness.snapshot_multiset(id, at).await.unwrap();
        assert_consolidated_eq(rows, source.model(&output));
    }
}
