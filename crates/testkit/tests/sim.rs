//! The turmoil simulation: one controller and two replicas over gRPC, for every seed of
//! [`seeds_from_env`] (50, 500 with `STRATA_SOAK=1`, or just `STRATA_SIM_SEED=<n>`):
//! random partitions with repairs, a replica crash with its restart, sometimes a stall
//! or a bounce; every seed must converge with exact contents.

use std::time::Instant;

use strata_testkit::sim::{
    Fault, FaultPlan, Sim, SimControl, SimError, Workload, rerun_hint, run_seeds, seeds_from_env,
};

/// Seeds run side by side: each mostly waits (paced simulated time, idle workers).
const THREADS: usize = 5;

#[test]
fn every_seed_converges_exactly_through_partitions_and_crashes() {
    strata_testkit::init_test_tracing();
    let seeds = seeds_from_env().unwrap();
    let started = Instant::now();
    let results = run_seeds(&seeds, THREADS, |seed| {
        let sim = Sim::builder().seed(seed).replicas(2).build();
        let plan = sim.plan();
        // Every seed's plan partitions and repairs a link and crashes and restarts a
        // replica; the run below checks that it converges anyway.
        assert!(
            plan.events()
                .iter()
                .any(|(_, f)| matches!(f, Fault::Partition { .. }))
        );
        assert!(
            plan.events()
                .iter()
                .any(|(_, f)| matches!(f, Fault::Repair { .. }))
        );
        assert!(
            plan.events()
                .iter()
                .any(|(_, f)| matches!(f, Fault::Crash { .. }))
        );
        assert!(
            plan.events()
                .iter()
                .any(|(_, f)| matches!(f, Fault::Restart { .. }))
        );
        eprintln!("sim seed {seed}: {:?}", plan.events());
        sim
    });
    let mut failures = Vec::new();
    for result in &results {
        match result {
            Ok(report) => {
                // Both replicas ran, the crashed one at least twice; data was checked.
                assert_eq!(report.replica_starts.len(), 2, "{report:?}");
                assert!(report.replica_starts.iter().sum::<u64>() >= 3, "{report:?}");
                assert!(report.faults_applied >= 4, "{report:?}");
                assert!(report.offsets > 0 && report.table_rows > 0, "{report:?}");
                eprintln!(
                    "sim seed {}: converged after {:?} simulated ({:?} real), {} offsets exact",
                    report.seed, report.simulated, report.real, report.offsets
                );
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    eprintln!(
        "{} seeds in {:?}, {} failed",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}\n(each failure says how to re-run it, e.g. {})",
        failures.len(),
        seeds.len(),
        failures.join("\n\n"),
        rerun_hint(seeds[0])
    );
}

/// A workload whose check always fails, so the seed fails for sure.
struct AlwaysWrong;

#[async_trait::async_trait(?Send)]
impl Workload for AlwaysWrong {
    async fn setup(&self, _: &mut SimControl) -> Result<(), SimError> {
        Ok(())
    }

    async fn check(&self, _: &mut SimControl) -> Result<(), SimError> {
        Err(SimError::Diverged {
            what: "the contents are wrong on purpose".into(),
        })
    }
}

#[test]
fn a_failing_seed_names_itself_and_how_to_rerun_it() {
    strata_testkit::init_test_tracing();
    let failure = Sim::builder()
        .seed(5)
        .faults(FaultPlan::new())
        .table_rows(1)
        .workload(AlwaysWrong)
        .build()
        .run()
        .unwrap_err();
    assert_eq!(failure.seed, 5);
    let message = failure.to_string();
    assert!(message.contains("simulation seed 5 failed"), "{message}");
    assert!(message.contains("wrong on purpose"), "{message}");
    assert!(
        message
            .contains("STRATA_SIM_SEED=5 cargo test -p strata-testkit --features sim --test sim"),
        "{message}"
    );
}
