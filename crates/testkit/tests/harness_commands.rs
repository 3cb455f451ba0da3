//! Random command sequences against a real controller (through the harness) and a
//! model of what each command must do: tables hold exactly the consolidated updates
//! appended to them, commands on tables that do not exist fail, and every outstanding
//! read hold keeps its time readable with the contents the model had then.

#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use strata_controller_api::{
    Antichain, Collections, ReadHold, Reads, RelationDesc, Row, ScalarType, Tables, Timestamp,
};
use strata_testkit::harness::{Harness, assert_consolidated_eq, consolidate};
use strata_testkit::strategies::{ControllerCommand, arb_controller_commands};

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

/// One write to a table: its time and updates.
type Write = (u64, Vec<(Row, i64)>);

/// What the controller must hold.
#[derive(Default)]
struct Model {
    /// Live tables: each write's time and updates.
    tables: BTreeMap<u8, Vec<Write>>,
    /// Tables ever created (ids are not reused).
    created: BTreeSet<u8>,
    /// Outstanding holds: table, held time and the hold itself.
    holds: Vec<(u8, u64, ReadHold<Timestamp>)>,
}

impl Model {
    fn contents(&self, table: u8, as_of: u64) -> BTreeMap<Row, i64> {
        consolidate(
            self.tables[&table]
                .iter()
                .filter(|(t, _)| *t <= as_of)
                .flat_map(|(_, updates)| updates.iter().cloned()),
        )
    }

    fn latest_write(&self, table: u8) -> Option<u64> {
        self.tables.get(&table)?.last().map(|(t, _)| *t)
    }
}

async fn run(commands: Vec<ControllerCommand>) {
    let mut harness = Harness::builder().replicas(0).build().await.unwrap();
    let mut model = Model::default();
    for (step, command) in commands.into_iter().enumerate() {
        let context = format!("step {step}: {command:?}");
        match command {
            ControllerCommand::CreateTable { table } => {
                if model.created.contains(&table) {
                    continue; // ids are never reused
                }
                harness
                    .create_table(ControllerCommand::table_id(table), desc())
                    .await
                    .expect(&context);
                model.created.insert(table);
                model.tables.insert(table, Vec::new());
            }
            ControllerCommand::Append { table, updates } => {
                let rows: Vec<(Row, i64)> = updates
                    .into_iter()
                    .map(|(v, d)| (ControllerCommand::row(v), d))
                    .collect();
                let result = harness
                    .append(ControllerCommand::table_id(table), rows.clone())
                    .await;
                match model.tables.get_mut(&table) {
                    Some(writes) => writes.push((result.expect(&context).as_millis(), rows)),
                    None => assert!(result.is_err(), "{context}: appended to a missing table"),
                }
            }
            ControllerCommand::DropTable { table } => {
                if !model.tables.contains_key(&table) {
                    continue;
                }
                let id = ControllerCommand::table_id(table);
                let ts = Timestamp::new(harness.upper_time(id).expect(&context));
                harness
                    .controller_mut()
                    .drop_tables(vec![id], ts)
                    .await
                    .expect(&context);
                model.tables.remove(&table);
                model.holds.retain(|(t, _, _)| *t != table);
            }
            ControllerCommand::AcquireHold { table } => {
                let id = ControllerCommand::table_id(table);
                let result = harness.controller_mut().acquire_read_holds(vec![id]);
                if model.tables.contains_key(&table) {
                    let hold = result.expect(&context).pop().expect(&context);
                    let Some(since) = hold.since().as_option().map(|t| t.as_millis()) else {
                        panic!("{context}: a live table's since is closed");
                    };
                    model.holds.push((table, since, hold));
                } else if !model.created.contains(&table) {
                    assert!(result.is_err(), "{context}: held a table never created");
                }
            }
            ControllerCommand::DowngradeHold { hold } => {
                if model.holds.is_empty() {
                    continue;
                }
                let index = usize::from(hold) % model.holds.len();
                let table = model.holds[index].0;
                let Some(latest) = model.latest_write(table) else {
                    continue;
                };
                let (_, held, hold) = &mut model.holds[index];
                if latest > *held {
                    hold.try_downgrade(Antichain::from_elem(Timestamp::new(latest)))
                        .expect(&context);
                    *held = latest;
                }
            }
            ControllerCommand::ReleaseHold { hold } => {
                if !model.holds.is_empty() {
                    let index = usize::from(hold) % model.holds.len();
                    model.holds.remove(index).2.release();
                }
            }
            ControllerCommand::SetReadPolicy { table, policy } => {
                let id = ControllerCommand::table_id(table);
                let result = harness.controller_mut().set_read_policy(vec![(id, policy)]);
                if model.tables.contains_key(&table) {
                    result.expect(&context);
                } else if !model.created.contains(&table) {
                    assert!(
                        result.is_err(),
                        "{context}: a policy for a table never created"
                    );
                }
            }
            ControllerCommand::Snapshot { table } => {
                let id = ControllerCommand::table_id(table);
                if model.tables.contains_key(&table) {
                    check_reads(&mut harness, &model, table, &context).await;
                } else if !model.created.contains(&table) {
                    let frontiers = harness.controller().collection_frontiers(id);
                    assert!(
                        frontiers.is_err(),
                        "{context}: a table never created exists"
                    );
                }
            }
        }
    }
    // Every live table reads exactly at the end, too.
    let live: Vec<u8> = model.tables.keys().copied().collect();
    for table in live {
        check_reads(&mut harness, &model, table, "the final check").await;
    }
}

/// Reads `table` as of every outstanding hold on it, as of its since (under a fresh
/// hold) and as of its latest write if still readable, and compares with the model.
async fn check_reads(harness: &mut Harness, model: &Model, table: u8, context: &str) {
    let id = ControllerCommand::table_id(table);
    let mut times: Vec<u64> = model
        .holds
        .iter()
        .filter(|(t, _, _)| *t == table)
        .map(|(_, time, _)| *time)
        .collect();
    let fresh = harness
        .controller_mut()
        .acquire_read_holds(vec![id])
        .expect(context)
        .pop()
        .expect(context);
    let since = fresh
        .since()
        .as_option()
        .map(|t| t.as_millis())
        .expect(context);
    times.push(since);
    if let Some(latest) = model.latest_write(table).filter(|l| *l >= since) {
        times.push(latest);
    }
    let upper = harness.upper_time(id).expect(context);
    for time in times.into_iter().filter(|t| *t < upper) {
        let rows = harness
            .snapshot_multiset(id, Timestamp::new(time))
            .await
            .expect(context);
        assert_consolidated_eq(rows, model.contents(table, time));
    }
    fresh.release();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn command_sequences_match_the_model(commands in arb_controller_commands(2, 16)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(commands));
    }
}
