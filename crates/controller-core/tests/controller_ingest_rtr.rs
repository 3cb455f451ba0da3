//! Real-time recency against a running load-generator ingestion: the answer is at or
//! past the data present when asked, non-ingestions are skipped, and a source that no
//! longer advances times out with `RtrTimeout`.

mod controller_support;
mod ingest_support;

use std::collections::BTreeSet;
use std::time::Duration;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{Collections, Reads, StorageError, StorageResponse, Timestamp};

const LIMIT: u64 = 900;
const ROUNDS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_time_recency_covers_upstream_and_times_out_when_stuck() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, Some(LIMIT)).await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(50);
    let connection = connection(3, 0);
    create_source(&env, &mut ctl, &source, &connection).await;
    let _holds = ctl
        .acquire_read_holds(vec![source.remap, source.auctions])
        .unwrap();
    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(&env, &mut ctl, &mut responses, "a first upper", |ctl, _| {
        upper(ctl, source.ingestion) >= 3
    })
    .await;

    // What upstream holds now is at most what the persisted upper's rounds bound, plus
    // rounds in flight; the answer must cover at least the bound part.
    let client = ctl.persist_client().clone();
    let shard = ctl
        .collection_metadata(source.ingestion)
        .unwrap()
        .data_shard;
    let before = frontier_ms(&strata_persist_backend::frontier_of::<Timestamp>(
        client.inspect(shard).await.unwrap()["upper"][0].as_u64(),
    ));
    let present = bound_offset(&ctl, source.remap, before - 1).await;
    let ids = BTreeSet::from([source.ingestion, source.auctions]);
    let rtr = ctl
        .real_time_recency_timestamp(ids, Duration::from_secs(60))
        .await
        .unwrap();
    let ts = rtr.await.unwrap().as_millis();
    assert!(
        ts >= before,
        "{ts} is not past the upper {before} at the call"
    );
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the answer's upper",
        |ctl, _| upper(ctl, source.auctions) > ts,
    )
    .await;
    assert!(bound_offset(&ctl, source.remap, ts).await >= present);

    // Only a subsource: nothing supports real-time recency, so the minimum.
    let rtr = ctl
        .real_time_recency_timestamp(BTreeSet::from([source.auctions]), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(rtr.await.unwrap(), Timestamp::new(0));

    // Once the generator is exhausted the upper stops: the answer times out.
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the last round",
        |ctl, _| upper(ctl, source.ingestion) >= ROUNDS,
    )
    .await;
    let rtr = ctl
        .real_time_recency_timestamp(
            BTreeSet::from([source.ingestion]),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    assert!(matches!(rtr.await, Err(StorageError::RtrTimeout(id)) if id == source.ingestion));
}
