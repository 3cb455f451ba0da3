//! Restarting the controller in the middle of an ingestion, over the memory and file
//! backends: the first replica stops at a third of the source (its offset limit), the
//! controller is dropped, and a new one at a higher epoch reconnects that replica and
//! adds a second one. The source continues from its upper to the end, the contents at
//! the old and the new uppers match the generator exactly, and dropping the source then
//! finalizes every shard, which needs both replicas (the reconnected one included) to
//! confirm the drop and let go of their handles.

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Collections, Lifecycle, Reads, StorageResponse, Timestamp};

/// The first replica binds 30 offsets, 3 per round: its uppers stop at 10.
const FIRST_LIMIT: u64 = 30;
const FIRST_ROUNDS: u64 = 10;
/// The replica added after the restart binds the rest: the uppers reach 20.
const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

fn limit_of(replica: usize) -> Option<u64> {
    Some(if replica == 0 { FIRST_LIMIT } else { LIMIT })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_continues_the_ingestion_from_its_upper() {
    for env in backends() {
        let source = Auction::new(130);
        let connection = connection(3, 0);
        let (mut ctl, servers) = controller_with(&env, false, |n| server_config(limit_of(n))).await;
        let first_epoch = ctl.epoch();
        add_replica(&mut ctl, 1);
        create_source(&env, &mut ctl, &source, &connection).await;
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the first uppers",
            |ctl, _| {
                source
                    .all()
                    .iter()
                    .all(|id| upper(ctl, *id) >= FIRST_ROUNDS)
            },
        )
        .await;
        let offset = check_contents(
            &ctl,
            &source,
            &connection,
            &source.outputs(),
            FIRST_ROUNDS - 1,
        )
        .await;
        assert_eq!(offset, FIRST_LIMIT);
        let shards: Vec<_> = source
            .all()
            .iter()
            .map(|id| ctl.collection_metadata(*id).unwrap().data_shard)
            .collect();
        drop(ctl);

        // A new controller: a higher epoch, the same collections, the same replica.
        let mut ctl = controller_over(&env, false, &servers, |n| server_config(limit_of(n))).await;
        assert!(ctl.epoch() > first_epoch);
        add_replica(&mut ctl, 1);
        ctl.create_collections(&env.metadata(), None, descriptions(&source, &connection))
            .await
            .unwrap();
        ctl.initialization_complete();
        for (id, shard) in source.all().iter().zip(&shards) {
            assert_eq!(ctl.collection_metadata(*id).unwrap().data_shard, *shard);
            assert_eq!(upper(&ctl, *id), FIRST_ROUNDS, "{id} on {}", env.url);
        }
        // Keep the pre-restart contents readable.
        let holds = ctl.acquire_read_holds(source.all().to_vec()).unwrap();

        // A second replica, with the rest of the source, joins: the ingestion continues
        // from the upper.
        add_replica(&mut ctl, 2);
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) >= ROUNDS)
        })
        .await;
        assert_eq!(servers.lock().unwrap().len(), 2);
        for id in source.all() {
            assert_eq!(upper(&ctl, id), ROUNDS, "{id} on {}", env.url);
        }
        let before = check_contents(
            &ctl,
            &source,
            &connection,
            &source.outputs(),
            FIRST_ROUNDS - 1,
        )
        .await;
        assert_eq!(before, FIRST_LIMIT);
        let after = check_contents(&ctl, &source, &connection, &source.outputs(), ROUNDS - 1).await;
        assert_eq!(after, LIMIT);

        // Both replicas confirm the drop to the new controller, and release their
        // handles, so every shard is finalized.
        drop(holds);
        let all = source.all();
        env.prepare(&ctl, &[], &all).await;
        ctl.drop_sources(all.to_vec()).await.unwrap();
        pump_until(&env, &mut ctl, &mut responses, "the source drop", |_, r| {
            all.iter().all(|id| dropped(r, *id))
        })
        .await;
        let client = ctl.persist_client().clone();
        for shard in shards {
            wait_finalized(&env, &client, shard).await;
        }
    }
}
