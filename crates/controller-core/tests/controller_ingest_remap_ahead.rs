//! A restart where the remap shard's upper is ahead of its ingestion's data shards, as
//! it is whenever a binding was minted and the controller stopped before the data at
//! its time was written. The restarted controller must keep every collection of the
//! ingestion readable: no since beyond its upper, the remap shard held where the data
//! shards need it, and the ingestion continues to the end of the source.

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Antichain, Collections, Lifecycle, Reads, StorageResponse, Timestamp};

/// The first replica binds 30 offsets, 3 per round: its uppers stop at 10.
const FIRST_LIMIT: u64 = 30;
const FIRST_ROUNDS: u64 = 10;
/// The remap shard is moved this far ahead of the data shards before the restart.
const REMAP_AHEAD: u64 = 15;
const LIMIT: u64 = 60;

fn limit_of(replica: usize) -> Option<u64> {
    Some(if replica == 0 { FIRST_LIMIT } else { LIMIT })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remap_shard_ahead_of_its_data_does_not_lift_their_sinces() {
    for env in backends() {
        let source = Auction::new(230);
        let connection = connection(3, 0);
        let (mut ctl, servers) = controller_with(&env, false, |n| server_config(limit_of(n))).await;
        add_replica(&mut ctl, 1);
        create_source(&env, &mut ctl, &source, &connection).await;
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        wait_for_uppers(&env, &mut ctl, &mut responses, &source, FIRST_ROUNDS).await;
        // Bindings minted past the data: the remap shard's upper moves ahead with an
        // empty batch, as a writer that stopped between the remap and the data append
        // leaves it.
        let remap_shard = ctl.collection_metadata(source.remap).unwrap().data_shard;
        let client = ctl.persist_client().clone();
        drop(ctl);
        let mut writer = client
            .open_writer::<Timestamp>(remap_shard, strata_replica::remap::remap_desc())
            .await
            .unwrap();
        writer
            .compare_and_append(
                &[],
                Antichain::from_elem(t(FIRST_ROUNDS)),
                Antichain::from_elem(t(REMAP_AHEAD)),
            )
            .await
            .unwrap()
            .unwrap();
        drop(writer);

        let mut ctl = controller_over(&env, false, &servers, |n| server_config(limit_of(n))).await;
        add_replica(&mut ctl, 1);
        ctl.create_collections(&env.metadata(), None, descriptions(&source, &connection))
            .await
            .unwrap();
        ctl.initialization_complete();
        ctl.apply_pending();
        assert_eq!(upper(&ctl, source.remap), REMAP_AHEAD, "on {}", env.url);
        for id in source.all() {
            assert!(
                since(&ctl, id) < upper(&ctl, id),
                "{id}: since {} is not before upper {} on {}",
                since(&ctl, id),
                upper(&ctl, id),
                env.url
            );
        }
        // The remap shard stays readable wherever a data shard is.
        let data_since = [source.ingestion, source.auctions, source.bids]
            .iter()
            .map(|id| since(&ctl, *id))
            .min()
            .unwrap();
        assert!(since(&ctl, source.remap) <= data_since, "on {}", env.url);

        // A second replica with the rest of the source continues the ingestion.
        add_replica(&mut ctl, 2);
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) > REMAP_AHEAD)
        })
        .await;
        // While the source runs, each since steps back from its own upper, so one
        // collection's since may pass another's upper: hold them all, and read at the
        // latest held since once that is before every upper.
        let (_holds, at) = loop {
            let holds = ctl.acquire_read_holds(source.all().to_vec()).unwrap();
            let at = holds.iter().map(|h| frontier_ms(h.since())).max().unwrap();
            let end = source
                .all()
                .iter()
                .map(|id| upper(&ctl, *id))
                .min()
                .unwrap();
            if at < end {
                break (holds, at);
            }
            drop(holds);
            pump_until(&env, &mut ctl, &mut responses, "more progress", |ctl, _| {
                source.all().iter().all(|id| upper(ctl, *id) > at)
            })
            .await;
        };
        let offset = check_contents(&ctl, &source, &connection, &source.outputs(), at).await;
        assert!(offset > FIRST_LIMIT, "{offset} on {}", env.url);
    }
}
