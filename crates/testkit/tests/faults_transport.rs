//! `FaultyConnector`: each fault on its own over the local transport, then a harness
//! whose controller converges through drops, delays, reordering and disconnects.

#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_controller_api::{Antichain, Datum, GlobalId, RelationDesc, Row, ScalarType, Timestamp};
use strata_instance_client::transport::{
    CommandReceiver, Hello, ReplicaConnection, ReplicaConnector, ReplicaHandler, ResponseSender,
};
use strata_instance_client::{LocalConnector, ReplicaResponse, StorageCommand};
use strata_testkit::faults::{FaultyConnector, TransportFaultConfig, TransportFaultHandle};
use strata_testkit::harness::{AuctionSource, Harness, ManualClock, assert_consolidated_eq};

/// Echoes `AllowCompaction { id }` as `DroppedId(id)`.
struct Echo;

#[async_trait]
impl ReplicaHandler<Timestamp> for Echo {
    async fn serve(
        &self,
        _: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        while let Some(command) = commands.recv().await {
            if let StorageCommand::AllowCompaction { id, .. } = command {
                let _ = responses.send(ReplicaResponse::DroppedId(id));
            }
        }
    }
}

fn compact(i: u64) -> StorageCommand<Timestamp> {
    StorageCommand::AllowCompaction {
        id: GlobalId::User(i),
        frontier: Antichain::from_elem(Timestamp::new(i)),
    }
}

async fn connect(
    config: TransportFaultConfig,
    seed: u64,
) -> (ReplicaConnection<Timestamp>, TransportFaultHandle) {
    let local = LocalConnector::new(Arc::new(Echo) as Arc<dyn ReplicaHandler<Timestamp>>);
    let faults = TransportFaultHandle::new(seed);
    faults.set_config(config);
    let connector = FaultyConnector::new(local, faults.clone());
    let connection = connector.connect().await.unwrap();
    connection
        .commands
        .send(StorageCommand::Hello { nonce: 1, epoch: 1 })
        .unwrap();
    (connection, faults)
}

/// Sends `0..n` and collects responses until the connection ends or `n` arrived.
async fn echo_ids(connection: &mut ReplicaConnection<Timestamp>, n: u64) -> Vec<u64> {
    for i in 0..n {
        let _ = connection.commands.send(compact(i));
    }
    let mut ids = Vec::new();
    while (ids.len() as u64) < n {
        match tokio::time::timeout(Duration::from_secs(10), connection.responses.recv()).await {
            Ok(Some(ReplicaResponse::DroppedId(GlobalId::User(i)))) => ids.push(i),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => break,
            Err(_) => panic!("no response within 10 s after {ids:?}"),
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_keep_order() {
    let config = TransportFaultConfig {
        delay: strata_testkit::faults::Latency {
            fixed: Duration::from_micros(100),
            jitter: Duration::from_millis(1),
        },
        ..TransportFaultConfig::default()
    };
    let (mut connection, faults) = connect(config, 1).await;
    assert_eq!(
        echo_ids(&mut connection, 50).await,
        (0..50).collect::<Vec<_>>()
    );
    // The Hello, 50 commands and 50 responses, each delayed.
    assert_eq!(faults.counters().delayed, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_message_cuts_the_connection() {
    let config = TransportFaultConfig {
        drop_rate: 0.05,
        ..TransportFaultConfig::default()
    };
    let (mut connection, faults) = connect(config, 2).await;
    let ids = echo_ids(&mut connection, 200).await;
    // What arrived is an unbroken prefix: nothing after a lost message.
    assert!(
        ids.len() < 200,
        "nothing was dropped: {:?}",
        faults.counters()
    );
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
    assert!(faults.counters().dropped >= 1);
    assert!(connection.responses.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_reordered_and_none_is_lost() {
    let config = TransportFaultConfig {
        reorder_rate: 0.3,
        ..TransportFaultConfig::default()
    };
    let (mut connection, faults) = connect(config, 3).await;
    let ids = echo_ids(&mut connection, 100).await;
    assert_ne!(ids, (0..100).collect::<Vec<_>>(), "{:?}", faults.counters());
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert!(faults.counters().reordered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_and_refusals() {
    let (mut connection, faults) = connect(TransportFaultConfig::default(), 4).await;
    assert_eq!(echo_ids(&mut connection, 3).await, vec![0, 1, 2]);
    faults.disconnect();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), connection.responses.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(faults.counters().disconnects, 1);

    faults.set_refuse_connections(true);
    let local = LocalConnector::new(Arc::new(Echo) as Arc<dyn ReplicaHandler<Timestamp>>);
    let connector = FaultyConnector::new(local, faults.clone());
    assert!(connector.connect().await.is_err());
    assert_eq!(faults.counters().refused, 1);
    faults.clear_faults();
    assert!(connector.connect().await.is_ok());
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_converges_through_a_faulty_transport() {
    strata_testkit::init_test_tracing();
    const OFFSETS: u64 = 45;
    let clock = ManualClock::new(0);
    let mut harness = Harness::builder()
        .replicas(2)
        .now(clock.now_fn())
        .offset_limit(OFFSETS)
        .transport_faults(17)
        .timeout(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let faults = harness.transport_faults().unwrap().clone();
    faults.set_config(TransportFaultConfig {
        drop_rate: 0.01,
        delay: strata_testkit::faults::Latency {
            fixed: Duration::ZERO,
            jitter: Duration::from_millis(2),
        },
        reorder_rate: 0.05,
        disconnect_rate: 0.01,
        refuse_connections: false,
    });

    let table = GlobalId::User(1);
    let desc = RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish();
    harness.create_table(table, desc).await.unwrap();
    let source = AuctionSource::new(10, 9);
    harness.create_auction_source(&source).await.unwrap();
    harness.append(table, vec![(row(1), 1)]).await.unwrap();
    // Cut everything once more, mid-run, and refuse reconnects for a moment.
    harness
        .wait_for_upper(source.ingestion, Timestamp::new(0))
        .await
        .unwrap();
    faults.set_refuse_connections(true);
    faults.disconnect();
    harness.append(table, vec![(row(2), 1)]).await.unwrap();
    faults.set_refuse_connections(false);
    // The instance reconnects both replicas (and replays its history to them).
    let reconnects = faults.clone();
    harness
        .wait_until("both replicas to reconnect", move |_| {
            let counters = reconnects.counters();
            if counters.connections >= 4 {
                Ok(())
            } else {
                Err(format!("{counters:?}"))
            }
        })
        .await
        .unwrap();

    let at = harness
        .wait_for_source_offset(&source, OFFSETS)
        .await
        .unwrap();
    for (id, output) in source.outputs() {
        assert_consolidated_eq(
            harness.snapshot_multiset(id, at).await.unwrap(),
            source.expected(&output, OFFSETS).unwrap(),
        );
    }
    let last = harness.append(table, vec![(row(3), 1)]).await.unwrap();
    assert_consolidated_eq(
        harness.snapshot_multiset(table, last).await.unwrap(),
        vec![(row(1), 1), (row(2), 1), (row(3), 1)],
    );
    let counters = faults.counters();
    assert!(
        counters.disconnects + counters.dropped > 0 && counters.delayed > 0,
        "{counters:?}"
    );
    assert!(
        counters.connections > 2,
        "no reconnect happened: {counters:?}"
    );
}
