//! Real-time recency against a running load-generator ingestion: the answer is at or
//! past the data present when asked, non-ingestions are skipped, and a source that no
//! longer advances times out with `RtrTimeout`. A registered connector answers through
//! the upstream probe of its kind: at a time whose remap binding covers the probed
//! offset, with the probe's failure as `RtrUpstream`.

mod controller_support;
mod ingest_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Collections, ConnectorConfig, Reads, SourceConnection, StorageError, StorageResponse,
    Timestamp, UpstreamProbes,
};
use strata_controller_core::ControllerConfig;
use strata_replica::connector::builtin::LOAD_GENERATOR;

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

/// What the test's probe answers for "the upstream cannot be reached".
const UNREACHABLE: u64 = u64::MAX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probed_connector_answers_at_the_binding_of_the_probed_offset() {
    let env = mem_env();
    // The probe answers what the test stores here.
    let probed = Arc::new(AtomicU64::new(0));
    let mut probes = UpstreamProbes::default();
    let answer = Arc::clone(&probed);
    probes
        .register(LOAD_GENERATOR, move |_: &ConnectorConfig| {
            let offset = answer.load(Ordering::SeqCst);
            async move {
                match offset {
                    UNREACHABLE => Err("the upstream is unreachable".to_owned()),
                    offset => Ok(offset),
                }
            }
            .boxed()
        })
        .unwrap();
    let servers = Servers::default();
    let mut ctl = controller_over_with(
        &env,
        false,
        &servers,
        |_| server_config(Some(LIMIT)),
        ControllerConfig {
            upstream_probes: probes,
            ..ControllerConfig::default()
        },
    )
    .await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(60);
    // The registered form of the generator: real-time recency goes through the probe.
    let connection = SourceConnection::Connector(
        ConnectorConfig::new(LOAD_GENERATOR)
            .with("generator", "auction")
            .with("tick_interval_ms", "2")
            .with("offsets_per_tick", "3")
            .with("seed", "42"),
    );
    assert!(!connection.supports_real_time_recency());
    create_source(&env, &mut ctl, &source, &connection).await;
    let _holds = ctl
        .acquire_read_holds(vec![source.remap, source.auctions])
        .unwrap();
    let ids = BTreeSet::from([source.ingestion]);

    for target in [1, 200, LIMIT] {
        probed.store(target, Ordering::SeqCst);
        let rtr = ctl
            .real_time_recency_timestamp(ids.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        let at = rtr.await.unwrap();
        let bound = bound_offset(&ctl, source.remap, at.as_millis()).await;
        assert!(
            bound >= target,
            "at {at:?} only {bound} < {target} is bound"
        );
        // The answer is readable at once: the ingestion's upper is past it.
        let upper = ctl
            .persist_client()
            .fetch_recent_upper::<Timestamp>(
                ctl.collection_metadata(source.ingestion)
                    .unwrap()
                    .data_shard,
            )
            .await
            .unwrap();
        assert!(!upper.less_equal(&at), "{upper:?} is not past {at:?}");
    }

    probed.store(UNREACHABLE, Ordering::SeqCst);
    let rtr = ctl
        .real_time_recency_timestamp(ids.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    match rtr.await {
        Err(StorageError::RtrUpstream { id, reason }) => {
            assert_eq!(id, source.ingestion);
            assert!(reason.contains("unreachable"), "{reason}");
        }
        other => panic!("expected RtrUpstream, got {other:?}"),
    }

    // An offset the generator never reaches (it stops at LIMIT) is never bound.
    probed.store(LIMIT + 1, Ordering::SeqCst);
    let rtr = ctl
        .real_time_recency_timestamp(ids, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(matches!(rtr.await, Err(StorageError::RtrTimeout(id)) if id == source.ingestion));
}
