//! A complete test a downstream team would write against Strata with the testkit.
//!
//! It starts a harness (a real controller with its durable catalog and two in-process
//! replicas) on a store that fails 20% of its calls, creates a table and an auction
//! source, crashes a replica and brings it back, and checks that every collection holds
//! exactly what it must: the table its appended rows, the source exactly the
//! generator's output, nothing lost and nothing twice.
//!
//! Run it with `cargo run -p strata-testkit --example downstream`; it exits non-zero
//! on any mismatch. `tests/downstream_example.rs` runs the same [`scenario`] as a test.

use std::time::Duration;

use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType};
use strata_testkit::faults::FaultCounters;
use strata_testkit::harness::{
    AuctionSource, Harness, HarnessError, ManualClock, multiset_difference, render_difference,
};

/// Offsets the auction source generates before it stops.
const OFFSETS: u64 = 60;

/// What went wrong: a harness failure or a mismatch.
#[derive(Debug)]
pub enum ScenarioError {
    /// The harness or the controller failed.
    Harness(HarnessError),
    /// A collection did not hold what it must.
    Mismatch(String),
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScenarioError::Harness(e) => write!(f, "harness: {e}"),
            ScenarioError::Mismatch(what) => write!(f, "mismatch: {what}"),
        }
    }
}

impl std::error::Error for ScenarioError {}

impl From<HarnessError> for ScenarioError {
    fn from(e: HarnessError) -> Self {
        ScenarioError::Harness(e)
    }
}

/// What the scenario saw, for the caller to print or assert on.
#[derive(Debug)]
pub struct Outcome {
    /// Rows compared across every collection.
    pub rows_checked: usize,
    /// The faults the store injected.
    pub faults: FaultCounters,
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x)])
}

/// Compares a collection with what it must hold.
fn expect_exact(
    what: &str,
    actual: std::collections::BTreeMap<Row, i64>,
    expected: std::collections::BTreeMap<Row, i64>,
) -> Result<usize, ScenarioError> {
    let rows = expected.len();
    let difference = multiset_difference(actual, expected);
    if difference.is_empty() {
        Ok(rows)
    } else {
        Err(ScenarioError::Mismatch(format!(
            "{what}:\n{}",
            render_difference(&difference)
        )))
    }
}

/// The whole test: a flaky store, a table, an auction source, a replica crash, exact
/// results. `seed` seeds the store's faults.
pub async fn scenario(seed: u64) -> Result<Outcome, ScenarioError> {
    // A frozen clock: the replicas bind each round one millisecond after the last, so
    // the run does not depend on the wall clock.
    let clock = ManualClock::new(0);
    let mut harness = Harness::builder()
        .replicas(2)
        .now(clock.now_fn())
        .offset_limit(OFFSETS)
        .store_faults(seed)
        .timeout(Duration::from_secs(60))
        .build()
        .await?;
    let faults = harness
        .store_faults()
        .cloned()
        .ok_or_else(|| ScenarioError::Mismatch("the harness has no faulty store".into()))?;

    // From here on, one store call in five fails.
    faults.set_error_rate_all(0.2);

    let table = GlobalId::User(1);
    let desc = RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish();
    harness.create_table(table, desc).await?;
    harness
        .append(table, vec![(row(1), 1), (row(2), 1)])
        .await?;

    let source = AuctionSource::new(10, 42);
    harness.create_auction_source(&source).await?;

    // Crash a replica once the source has written, write while it is down, restart it.
    harness
        .wait_for_upper(source.ingestion, strata_controller_api::Timestamp::new(0))
        .await?;
    harness.kill_replica(0).await?;
    harness
        .append(table, vec![(row(2), -1), (row(3), 1)])
        .await?;
    harness.restart_replica(0).await?;
    harness.wait_for_replica(0).await?;

    // Everything is exact, faults and all.
    let at = harness.wait_for_source_offset(&source, OFFSETS).await?;
    let last = harness.append(table, vec![(row(4), 1)]).await?;
    let mut rows_checked = expect_exact(
        "the table",
        harness.snapshot_multiset(table, last).await?,
        [(row(1), 1), (row(3), 1), (row(4), 1)]
            .into_iter()
            .collect(),
    )?;
    for (id, output) in source.outputs() {
        rows_checked += expect_exact(
            &format!("{id} ({output:?})"),
            harness.snapshot_multiset(id, at).await?,
            source.expected(&output, OFFSETS)?,
        )?;
    }
    let counters = faults.counters();
    if counters.total_faults() == 0 {
        return Err(ScenarioError::Mismatch(
            "the store injected no faults".into(),
        ));
    }
    Ok(Outcome {
        rows_checked,
        faults: counters,
    })
}

#[allow(clippy::print_stdout)] // an example reports on stdout
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    strata_testkit::init_test_tracing();
    match scenario(7).await {
        Ok(outcome) => {
            println!(
                "ok: {} rows exact after {} injected store faults",
                outcome.rows_checked,
                outcome.faults.total_faults()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
