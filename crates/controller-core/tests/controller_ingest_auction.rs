//! An auction source with subsources run by a real controller on an in-process
//! replica, over the memory and file backends: uppers advance, the contents match the
//! generator, since follows upper one step behind unless a read hold keeps it, dropping
//! a subsource keeps the rest running and finalizes only its shard, and dropping the
//! source finalizes every shard (tombstone, since and upper `[]`) with no part left in
//! the store after GC.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Collections, GlobalId, Lifecycle, Reads, ShardId, StorageResponse, StorageTxn, Timestamp,
};

/// 60 offsets, 3 per round: rounds bind at times 0..20, so the uppers reach 20.
const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auction_source_runs_matches_the_generator_and_is_finalized_when_dropped() {
    for env in backends() {
        let (mut ctl, servers) = controller(&env, false, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        let source = Auction::new(10);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        let hold = ctl.acquire_read_holds(vec![source.auctions]).unwrap();
        let held_at = frontier_ms(hold[0].since());

        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) >= ROUNDS)
        })
        .await;
        assert!(
            responses
                .iter()
                .any(|r| matches!(r, StorageResponse::FrontierUpdates(_)))
        );
        for id in source.all() {
            assert_eq!(upper(&ctl, id), ROUNDS, "{id} on {}", env.url);
        }
        let offset =
            check_contents(&ctl, &source, &connection, &source.outputs(), ROUNDS - 1).await;
        assert_eq!(offset, LIMIT);

        // The caller's hold keeps the held subsource, and the remap collection it
        // holds, in place; the others follow their upper one step behind.
        assert_eq!(since(&ctl, source.auctions), held_at);
        assert_eq!(since(&ctl, source.remap), held_at);
        assert_eq!(since(&ctl, source.ingestion), ROUNDS - 1);
        assert_eq!(since(&ctl, source.bids), ROUNDS - 1);
        drop(hold);
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the released since",
            |ctl, _| since(ctl, source.auctions) == ROUNDS - 1,
        )
        .await;
        for id in source.all() {
            assert_eq!(since(&ctl, id), ROUNDS - 1, "{id} on {}", env.url);
        }

        // Dropping one subsource confirms its drop and finalizes only its shard.
        let client = ctl.persist_client().clone();
        let shards: Vec<_> = source
            .all()
            .iter()
            .map(|id| (*id, ctl.collection_metadata(*id).unwrap().data_shard))
            .collect();
        let mut stored = 0;
        for (_, shard) in &shards {
            stored += client.list_part_keys(*shard).await.unwrap().len();
            stored += client.inspect(*shard).await.unwrap()["batches"]
                .as_array()
                .unwrap()
                .len();
        }
        assert!(stored > 0, "nothing stored on {}", env.url);
        let starts = servers.lock().unwrap()[0].dataflow_starts();
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
        assert!(dropped_status(&responses, source.bids));
        assert!(ctl.check_exists(source.bids).is_err());
        assert!(ctl.check_exists(source.auctions).is_ok());
        // The ingestion is re-run without the subsource.
        let server = std::sync::Arc::clone(&servers.lock().unwrap()[0]);
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the amended ingestion",
            |_, _| server.dataflow_starts() > starts,
        )
        .await;
        check_contents(
            &ctl,
            &source,
            &connection,
            &source.outputs()[..2],
            ROUNDS - 1,
        )
        .await;
        // The replica let go of the subsource's shard when the ingestion re-ran without
        // it, so the shard is finalized while the others stay.
        let bids_shard = shard_of(&shards, source.bids);
        wait_finalized(&env, &client, bids_shard).await;
        for (id, shard) in &shards {
            if *id != source.bids {
                let state = client.inspect(*shard).await.unwrap();
                assert!(
                    !state["tombstone"].as_bool().unwrap(),
                    "{id} on {}",
                    env.url
                );
            }
        }

        // Dropping the rest finalizes every shard.
        let rest = [source.ingestion, source.auctions, source.remap];
        env.prepare(&ctl, &[], &rest).await;
        ctl.drop_sources(rest.to_vec()).await.unwrap();
        pump_until(&env, &mut ctl, &mut responses, "the source drop", |_, r| {
            rest.iter().all(|id| dropped(r, *id))
        })
        .await;
        for (id, shard) in &shards {
            assert!(dropped_status(&responses, *id), "{id} on {}", env.url);
            assert!(ctl.check_exists(*id).is_err());
            wait_finalized(&env, &client, *shard).await;
        }
        assert!(
            env.catalog
                .begin::<Timestamp>()
                .get_unfinalized_shards()
                .is_empty()
        );
        // Late reports about the dropped ids are ignored quietly.
        for _ in 0..5 {
            let _ = ctl.process().unwrap();
        }
    }
}

fn shard_of(shards: &[(GlobalId, ShardId)], id: GlobalId) -> ShardId {
    shards.iter().find(|(i, _)| *i == id).unwrap().1
}
