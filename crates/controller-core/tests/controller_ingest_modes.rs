//! Read-only mode with a real replica: no ingestion runs and no shard is written until
//! `allow_writes`, which then starts the waiting ingestion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;
mod ingest_support;

use std::time::Duration;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Collections, Lifecycle, StorageResponse, Timestamp};

const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_runs_nothing_until_allow_writes() {
    for env in backends() {
        let (mut ctl, servers) = controller(&env, true, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        let source = Auction::new(30);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        let shards: Vec<_> = source
            .all()
            .iter()
            .map(|id| ctl.collection_metadata(*id).unwrap().data_shard)
            .collect();

        // The replica connects and is told everything but gets nothing to run.
        let metadata = env.metadata();
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        for _ in 0..25 {
            let _ = tokio::time::timeout(Duration::from_millis(20), ctl.ready()).await;
            while let Some(response) = ctl.process(&metadata).unwrap() {
                responses.push(response);
            }
        }
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 0);
        let client = ctl.persist_client().clone();
        for shard in &shards {
            assert!(
                client.inspect(*shard).await.is_err(),
                "{shard} was created in read-only mode on {}",
                env.url
            );
        }
        for id in source.all() {
            assert_eq!(upper(&ctl, id), 0);
        }

        ctl.allow_writes(None).await.unwrap();
        pump_until(&env, &mut ctl, &mut responses, "every upper", |ctl, _| {
            source.all().iter().all(|id| upper(ctl, *id) >= ROUNDS)
        })
        .await;
        assert_eq!(servers.lock().unwrap()[0].dataflow_starts(), 1);
        let offset =
            check_contents(&ctl, &source, &connection, &source.outputs(), ROUNDS - 1).await;
        assert_eq!(offset, LIMIT);
    }
}
