//! A file sink of an auction subsource run by the controller: it holds its input,
//! writes output, and its drop is confirmed by the replica; on two replicas it fails
//! over from a killed sink host to the other replica and stays exactly-once.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Antichain, Collections, ExportDescription, Exports, GlobalId, Instances, Reads, ReplicaId,
    SinkConnection, SourceOutput, StorageError, StorageResponse, Timestamp,
};
use strata_replica::generator::AUCTIONS;
use strata_replica::sink::file::{Progress, progress_path, read_output};
use strata_replica::{FaultHook, FaultPoint, ReplicaConfig as ServerConfig};

const LIMIT: u64 = 60;
const ROUNDS: u64 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sink_runs_holds_its_input_and_is_dropped() {
    let env = mem_env();
    let (mut ctl, _servers) = controller(&env, false, Some(LIMIT)).await;
    add_replica(&mut ctl, 1);
    let source = Auction::new(90);
    let connection = connection(3, 0);
    create_source(&env, &mut ctl, &source, &connection).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("auctions.ndjson");
    let sink = GlobalId::User(99);
    let export = ExportDescription {
        from: source.auctions,
        from_desc: ctl
            .collection_metadata(source.auctions)
            .unwrap()
            .relation_desc,
        connection: SinkConnection::File {
            path: path.to_str().unwrap().to_owned(),
        },
        as_of: Antichain::from_elem(t(0)),
        with_snapshot: true,
        instance_id: INSTANCE,
    };
    let mut missing = export.clone();
    missing.instance_id = strata_controller_api::InstanceId(42);
    assert!(matches!(
        ctl.create_exports(vec![(sink, missing)]).await,
        Err(StorageError::InstanceMissing(_))
    ));
    ctl.create_exports(vec![(sink, export.clone())])
        .await
        .unwrap();
    let mut changed = export.clone();
    changed.with_snapshot = false;
    assert!(matches!(
        ctl.create_exports(vec![(sink, changed)]).await,
        Err(StorageError::SinkIdReused(_))
    ));

    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the sink's upper",
        |ctl, _| {
            upper(ctl, source.auctions) >= ROUNDS
                && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
        },
    )
    .await;
    ctl.drop_sinks(vec![sink]).unwrap();
    pump_until(&env, &mut ctl, &mut responses, "the sink drop", |_, r| {
        dropped(r, sink)
    })
    .await;
    assert!(dropped_status(&responses, sink));
    // Without the sink's hold the input's since follows its upper again.
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the input's since",
        |ctl, _| since(ctl, source.auctions) == ROUNDS - 1,
    )
    .await;
}

/// Lets the first `commits` batches of a sink commit, then crashes every later batch
/// after its data is written and before its progress marker lands: the sink is stuck
/// mid-stream with an uncommitted tail in its output.
struct StuckAfter {
    commits: usize,
    calls: AtomicUsize,
}

impl FaultHook for StuckAfter {
    fn fail_at(&self, point: FaultPoint) -> bool {
        match point {
            FaultPoint::SinkAfterData => self.calls.fetch_add(1, Ordering::SeqCst) >= self.commits,
            _ => false,
        }
    }
}

fn sink_frontier(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(progress_path(path)).ok()?;
    let progress: Progress = serde_json::from_slice(&bytes).unwrap();
    progress.frontier
}

/// Two replicas; the sink runs on the first, which commits only the snapshot batch and
/// then crashes every batch after writing its data. Killing that replica moves the sink
/// to the other, which drops the uncommitted tail and finishes: the output, at every
/// time, consolidates to exactly the input's contents at that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_fails_over_to_the_other_replica_exactly_once() {
    for env in backends() {
        let stuck = Arc::new(StuckAfter {
            commits: 1,
            calls: AtomicUsize::new(0),
        });
        let hook = Arc::clone(&stuck);
        let (mut ctl, servers) = controller_with(&env, false, move |n| ServerConfig {
            faults: (n == 0).then(|| Arc::clone(&hook) as Arc<dyn FaultHook>),
            ..server_config(Some(LIMIT))
        })
        .await;
        add_replica(&mut ctl, 1);
        add_replica(&mut ctl, 2);
        let source = Auction::new(110);
        let connection = connection(3, 0);
        create_source(&env, &mut ctl, &source, &connection).await;
        // Keep every time readable, to compare the output time by time.
        let _holds = ctl
            .acquire_read_holds(vec![source.auctions, source.remap])
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("auctions.ndjson");
        let sink = GlobalId::User(119);
        let export = ExportDescription {
            from: source.auctions,
            from_desc: ctl
                .collection_metadata(source.auctions)
                .unwrap()
                .relation_desc,
            connection: SinkConnection::File {
                path: path.to_str().unwrap().to_owned(),
            },
            as_of: Antichain::from_elem(t(0)),
            with_snapshot: true,
            instance_id: INSTANCE,
        };
        ctl.create_exports(vec![(sink, export)]).await.unwrap();

        // The first replica hosts the sink and gets stuck after its snapshot batch,
        // having written (and crashed on) at least one more batch.
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(&env, &mut ctl, &mut responses, "the stuck sink", |_, _| {
            stuck.calls.load(Ordering::SeqCst) >= 3
        })
        .await;
        assert_eq!(sink_frontier(&path), Some(1), "on {}", env.url);

        // Kill it: its workers are joined, so it writes nothing more. The sink moves.
        servers.lock().unwrap()[0].shutdown();
        ctl.drop_replica(INSTANCE, ReplicaId(1)).unwrap();
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the sink's end",
            |ctl, _| {
                upper(ctl, source.auctions) >= ROUNDS
                    && sink_frontier(&path).is_some_and(|f| f >= ROUNDS)
            },
        )
        .await;
        assert_eq!(sink_frontier(&path), Some(ROUNDS), "on {}", env.url);
        // Nothing uncommitted is left behind the marker.
        let progress: Progress =
            serde_json::from_slice(&std::fs::read(progress_path(&path)).unwrap()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), progress.len);

        let output = read_output(&path).unwrap();
        for time in 0..ROUNDS {
            let written = consolidate(
                output
                    .iter()
                    .filter(|(_, at, _)| *at <= time)
                    .map(|(row, _, diff)| (row.clone(), *diff)),
            );
            let input = consolidate(ctl.snapshot(source.auctions, t(time)).await.unwrap());
            assert_eq!(written, input, "at {time} on {}", env.url);
        }
        let all = consolidate(output.into_iter().map(|(row, _, diff)| (row, diff)));
        assert_eq!(
            all,
            model(&connection, &SourceOutput::Named(AUCTIONS.into()), LIMIT),
            "on {}",
            env.url
        );
    }
}
