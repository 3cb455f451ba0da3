//! A downstream team's own scenario in the simulation: a hand-written fault plan (both
//! replicas cut off at once, one crashing meanwhile, a stall, a bounce) and a workload
//! of its own (a table written before and checked after the faults).

use std::time::Duration;

use async_trait::async_trait;
use strata_controller_api::{
    CollectionDescription, Collections, Datum, GlobalId, RelationDesc, Row, ScalarType,
    StorageMetadata, Timestamp,
};
use strata_testkit::harness::{assert_consolidated_eq, consolidate};
use strata_testkit::sim::{Fault, FaultPlan, Sim, SimControl, SimError, Workload};

const LEDGER: GlobalId = GlobalId::User(100);

/// Appends `0..10` to its own table and checks exactly that is there after the faults.
struct Ledger;

fn row(k: i64) -> Row {
    Row::pack(&[Datum::Int64(k)])
}

#[async_trait(?Send)]
impl Workload for Ledger {
    async fn setup(&self, sim: &mut SimControl) -> Result<(), SimError> {
        let desc = RelationDesc::builder()
            .with_column("amount", ScalarType::Int64.nullable(false))
            .finish();
        sim.controller_mut()
            .create_collections(
                &StorageMetadata::default(),
                Some(Timestamp::new(0)),
                vec![(LEDGER, CollectionDescription::table(desc))],
            )
            .await
            .map_err(|e| SimError::Diverged {
                what: e.to_string(),
            })?;
        for k in 0..10 {
            sim.append(LEDGER, vec![(row(k), 1)]).await?;
        }
        Ok(())
    }

    async fn check(&self, sim: &mut SimControl) -> Result<(), SimError> {
        let upper = sim.wait_for_upper(LEDGER, 0).await?;
        let rows = sim.snapshot(LEDGER, upper - 1).await?;
        assert_consolidated_eq(rows, consolidate((0..10).map(|k| (row(k), 1))));
        Ok(())
    }
}

#[test]
fn a_workload_of_our_own_survives_a_hand_written_plan() {
    strata_testkit::init_test_tracing();
    let ms = Duration::from_millis;
    let plan = FaultPlan::new()
        .at(ms(50), Fault::Partition { replica: 0 })
        .at(ms(60), Fault::Partition { replica: 1 })
        .at(ms(120), Fault::Crash { replica: 1 })
        .at(ms(250), Fault::Repair { replica: 0 })
        .at(ms(300), Fault::Repair { replica: 1 })
        .at(ms(320), Fault::Hold { replica: 0 })
        .at(ms(380), Fault::Release { replica: 0 })
        .at(ms(400), Fault::Restart { replica: 1 })
        .at(ms(450), Fault::Bounce { replica: 0 });
    let report = Sim::builder()
        .seed(11)
        .replicas(2)
        .faults(plan)
        .workload(Ledger)
        .build()
        .run()
        .unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(report.faults_applied, 9, "{report:?}");
    assert_eq!(report.replica_starts, vec![2, 2], "{report:?}");
    assert!(report.offsets > 0, "{report:?}");
}
