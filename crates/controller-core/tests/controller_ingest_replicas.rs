//! Two replicas run the same auction source: the contents are exact, and dropping one
//! replica in the middle of the run leaves the uppers advancing on the other.

mod controller_support;
mod ingest_support;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Instances, ReplicaId, StorageResponse, Timestamp};

const LIMIT: u64 = 600;
const ROUNDS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_stay_exact_and_survive_dropping_one() {
    for env in backends() {
        let (mut ctl, servers) = controller(&env, false, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        add_replica(&mut ctl, 2);
        let source = Auction::new(70);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "an upper on both",
            |ctl, _| upper(ctl, source.ingestion) >= 10,
        )
        .await;
        assert_eq!(servers.lock().unwrap().len(), 2);
        for server in servers.lock().unwrap().iter() {
            assert!(server.dataflow_starts() >= 1);
        }

        ctl.drop_replica(INSTANCE, ReplicaId(1)).unwrap();
        let at_drop = upper(&ctl, source.ingestion);
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) >= ROUNDS)
        })
        .await;
        assert!(upper(&ctl, source.ingestion) > at_drop);
        let offset =
            check_contents(&ctl, &source, &connection, &source.outputs(), ROUNDS - 1).await;
        assert_eq!(offset, LIMIT);
        for id in source.all() {
            assert_eq!(since(&ctl, id), ROUNDS - 1, "{id} on {}", env.url);
        }
    }
}
