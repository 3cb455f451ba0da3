//! A running sink reports its upper, and its hold on its input follows it: the input's
//! since advances while the sink runs, never past what the sink durably wrote, and a
//! sink that fails over resumes from (and reports) only what its destination holds.

#![cfg(test)]

mod controller_support;
mod ingest_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use controller_support::*;
use ingest_support::*;
use strata_controller_api::{
    Antichain, Collections, ExportDescription, Exports, GlobalId, Instances, ReplicaId,
    SinkConnection, StorageResponse, Timestamp,
};
use strata_controller_core::Controller;
use strata_replica::sink::file::{Progress, progress_path};
use strata_replica::{FaultHook, FaultPoint, ReplicaConfig as ServerConfig};

/// A file sink of `from` at `as_of`, with its snapshot, on the test instance.
fn file_export(
    ctl: &Controller<Timestamp>,
    from: GlobalId,
    path: &Path,
    as_of: u64,
) -> ExportDescription<Timestamp> {
    ExportDescription {
        from,
        from_desc: ctl.collection_metadata(from).unwrap().relation_desc,
        connection: SinkConnection::File {
            path: path.to_str().unwrap().to_owned(),
        },
        as_of: Antichain::from_elem(t(as_of)),
        with_snapshot: true,
        instance_id: INSTANCE,
    }
}

/// The frontier in the sink's durable progress marker (0 before it has one).
fn durable_frontier(path: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(progress_path(path)) else {
        return 0;
    };
    let progress: Progress = serde_json::from_slice(&bytes).unwrap();
    progress.frontier.unwrap_or(u64::MAX)
}

/// The sink uppers the controller reported to its caller, in order.
fn reported_uppers(responses: &[StorageResponse<Timestamp>], sink: GlobalId) -> Vec<u64> {
    responses
        .iter()
        .filter_map(|r| match r {
            StorageResponse::FrontierUpdates(updates) => Some(updates),
            _ => None,
        })
        .flatten()
        .filter(|(id, _)| *id == sink)
        .map(|(_, upper)| frontier_ms(upper))
        .collect()
}

/// Checks what must hold at every point while the sink runs: its upper is no further
/// than its durable marker, and the input's since is not past the sink's upper (nor
/// its as_of, before the sink reported anything).
fn check_bounds(
    ctl: &Controller<Timestamp>,
    from: GlobalId,
    sink: GlobalId,
    path: &Path,
    as_of: u64,
) {
    let sink_upper = upper(ctl, sink);
    // Read the marker after the controller's view: the marker only moves forward.
    let durable = durable_frontier(path);
    assert!(
        sink_upper <= durable.max(as_of),
        "the sink reported {sink_upper} but only {durable} is durable"
    );
    let input_since = since(ctl, from);
    assert!(
        input_since <= sink_upper.saturating_sub(1).max(as_of),
        "the input's since {input_since} is past the sink's upper {sink_upper}"
    );
}

/// The sink starts on a source that keeps advancing; the source's since, pinned at the
/// sink's as_of when the sink starts, advances with the sink's upper, which the
/// controller reports as it advances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_sink_lets_its_input_compact_behind_its_upper() {
    const LIMIT: u64 = 600;
    for env in backends() {
        let (mut ctl, _servers) = controller(&env, false, Some(LIMIT)).await;
        add_replica(&mut ctl, 1);
        let source = Auction::new(130);
        create_source(&env, &mut ctl, &source, &connection(3, 10)).await;
        let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
        pump_until(&env, &mut ctl, &mut responses, "the source", |ctl, _| {
            since(ctl, source.auctions) >= 2
        })
        .await;

        let start = since(&ctl, source.auctions);
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("auctions.ndjson");
        let sink = GlobalId::User(139);
        ctl.create_exports(vec![(
            sink,
            file_export(&ctl, source.auctions, &path, start),
        )])
        .await
        .unwrap();
        assert_eq!(upper(&ctl, sink), start, "a new sink's upper is its as_of");

        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the input's since to pass the sink's start",
            |ctl, _| {
                check_bounds(ctl, source.auctions, sink, &path, start);
                since(ctl, source.auctions) > start + 5
            },
        )
        .await;
        let sink_upper = upper(&ctl, sink);
        assert!(sink_upper > start + 6, "the sink's upper {sink_upper}");
        let reported = reported_uppers(&responses, sink);
        assert!(
            reported.len() >= 2 && reported.windows(2).all(|w| w[0] < w[1]),
            "the controller reports the sink's upper as it advances: {reported:?}"
        );
        assert!(reported.last().is_some_and(|u| *u <= sink_upper));
        assert!(since(&ctl, source.auctions) > start, "on {}", env.url);

        // The sink catches up with its input, and the input's since is then one step
        // behind both uppers.
        pump_until(
            &env,
            &mut ctl,
            &mut responses,
            "the sink catching up",
            |ctl, _| {
                check_bounds(ctl, source.auctions, sink, &path, start);
                let input = upper(ctl, source.auctions);
                input > start + 10
                    && upper(ctl, sink) == input
                    && since(ctl, source.auctions) == input - 1
            },
        )
        .await;
        assert!(
            durable_frontier(&path) >= upper(&ctl, sink),
            "on {}",
            env.url
        );
    }
}

/// Lets the first `commits` batches of a sink commit, then crashes every later batch
/// after its data is written and before its progress marker lands.
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

/// The first replica writes batches past its snapshot but never commits them: the
/// sink's upper stays at the snapshot's (what is durable), and so does the hold on the
/// input. After the failover the other replica resumes from the marker, and the
/// sink's upper, and with it the input's since, advance to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_reports_only_what_is_durable_across_a_failover() {
    const LIMIT: u64 = 60;
    const ROUNDS: u64 = 20;
    const AS_OF: u64 = 0;
    let env = mem_env();
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
    let source = Auction::new(140);
    create_source(&env, &mut ctl, &source, &connection(3, 0)).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("auctions.ndjson");
    let sink = GlobalId::User(149);
    ctl.create_exports(vec![(
        sink,
        file_export(&ctl, source.auctions, &path, AS_OF),
    )])
    .await
    .unwrap();

    let mut responses: Vec<StorageResponse<Timestamp>> = Vec::new();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the stuck sink",
        |ctl, _| {
            check_bounds(ctl, source.auctions, sink, &path, AS_OF);
            stuck.calls.load(Ordering::SeqCst) >= 3 && upper(ctl, source.auctions) >= ROUNDS
        },
    )
    .await;
    // Let any report still in flight arrive before looking.
    let mut rounds = 0;
    pump_until(&env, &mut ctl, &mut responses, "a few rounds", |_, _| {
        rounds += 1;
        rounds > 5
    })
    .await;
    // Batches past the snapshot were written (and crashed on); only the snapshot is
    // committed.
    assert_eq!(durable_frontier(&path), 1);
    assert_eq!(
        upper(&ctl, sink),
        1,
        "the sink reports only its durable frontier"
    );
    assert_eq!(since(&ctl, source.auctions), 0, "the sink holds its input");

    servers.lock().unwrap()[0].shutdown();
    ctl.drop_replica(INSTANCE, ReplicaId(1)).unwrap();
    pump_until(
        &env,
        &mut ctl,
        &mut responses,
        "the sink's end",
        |ctl, _| {
            check_bounds(ctl, source.auctions, sink, &path, AS_OF);
            upper(ctl, sink) >= ROUNDS && since(ctl, source.auctions) == ROUNDS - 1
        },
    )
    .await;
    assert_eq!(upper(&ctl, sink), durable_frontier(&path));
    assert_eq!(upper(&ctl, source.auctions), ROUNDS);
}
