//! Dropping an ingestion's remap collection in a later `drop_sources` call than the
//! ingestion itself. The replica stopped the ingestion (and with it everything it wrote)
//! at the first drop, so at the second it runs nothing for the remap id; it must still
//! confirm the final compaction, or the remap shard is never finalized and the
//! instance's pending drop leaks.

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Collections, StorageResponse, Timestamp};
use strata_controller_core::Controller;

/// The rounds of the source (3 offsets each): its uppers end here.
const SOURCE_END: u64 = 10;

/// A controller with one replica running `source` (30 offsets, 3 per round) until every
/// upper is at least 2.
async fn running_source(
    env: &Env,
    source: &Auction,
) -> (
    Controller<Timestamp>,
    Servers,
    Vec<StorageResponse<Timestamp>>,
) {
    let (mut ctl, servers) = controller(env, false, Some(SOURCE_END * 3)).await;
    add_replica(&mut ctl, 1);
    create_source(env, &mut ctl, source, &connection(3, 0)).await;
    let mut responses = Vec::new();
    wait_for_uppers(env, &mut ctl, &mut responses, source, 2).await;
    (ctl, servers, responses)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_collection_dropped_after_its_ingestion_is_finalized() {
    for env in backends() {
        let source = Auction::new(330);
        let (mut ctl, _servers, mut responses) = running_source(&env, &source).await;
        let remap_shard = ctl.collection_metadata(source.remap).unwrap().data_shard;
        let client = ctl.persist_client().clone();

        // First the ingestion and its subsources.
        let first = [source.ingestion, source.auctions, source.bids];
        env.prepare(&ctl, &[], &first).await;
        ctl.drop_sources(first.to_vec()).await.unwrap();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the ingestion's drop",
            |_, r| first.iter().all(|id| dropped(r, *id)),
        )
        .await;
        assert!(!dropped(&responses, source.remap), "on {}", env.url);

        // Then, in a later call, the remap collection.
        env.prepare(&ctl, &[], &[source.remap]).await;
        ctl.drop_sources(vec![source.remap]).await.unwrap();
        pump_until(&env, &mut ctl, &mut responses, "the remap drop", |_, r| {
            dropped(r, source.remap)
        })
        .await;
        wait_finalized(&env, &client, remap_shard).await;
    }
}

/// Dropping one subsource of a running ingestion amends the ingestion (it re-runs
/// without the subsource and releases its shard); the replica then runs nothing for the
/// subsource and must confirm its final compaction, or its shard is never finalized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subsource_dropped_from_a_running_ingestion_is_finalized() {
    for env in backends() {
        let source = Auction::new(430);
        let (mut ctl, _servers, mut responses) = running_source(&env, &source).await;
        let shard = ctl.collection_metadata(source.bids).unwrap().data_shard;
        let client = ctl.persist_client().clone();

        env.prepare(&ctl, &[], &[source.bids]).await;
        ctl.drop_sources(vec![source.bids]).await.unwrap();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the subsource drop",
            |_, r| dropped(r, source.bids),
        )
        .await;
        wait_finalized(&env, &client, shard).await;
        // The rest of the ingestion runs on, to the end of the source (its 30 offsets,
        // 3 a round). Waiting for "more than before" would hang whenever the source
        // had already reached its end before the drop.
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the rest of the source",
            |ctl, _| upper(ctl, source.auctions) >= SOURCE_END,
        )
        .await;
    }
}
