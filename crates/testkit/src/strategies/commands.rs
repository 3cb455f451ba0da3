//! Strategies for sequences of controller operations: what a host asks a controller
//! to do, in an abstract form a test maps onto the real API and onto a model.

use proptest::collection::vec;
use proptest::prelude::*;
use strata_controller_api::{Datum, GlobalId, ReadPolicy, Row, Timestamp};

/// One operation a host performs on a controller with tables.
///
/// Tables are named by a small index (`table`), which a test maps to an id with
/// [`ControllerCommand::table_id`]; holds by an index into the test's outstanding
/// holds, taken modulo their number. Indices may name tables that were never created
/// or were dropped: a test must expect the controller to refuse those.
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerCommand {
    /// Create table `table` (one `Int64` column).
    CreateTable {
        /// The table's index.
        table: u8,
    },
    /// Append `(value, diff)` updates to `table` at its upper.
    Append {
        /// The table's index.
        table: u8,
        /// The updates, as single-column values with their diffs.
        updates: Vec<(i64, i64)>,
    },
    /// Drop `table`.
    DropTable {
        /// The table's index.
        table: u8,
    },
    /// Acquire a read hold on `table` at its since.
    AcquireHold {
        /// The table's index.
        table: u8,
    },
    /// Downgrade an outstanding hold to its table's latest write.
    DowngradeHold {
        /// Which outstanding hold (modulo their number).
        hold: u8,
    },
    /// Release an outstanding hold.
    ReleaseHold {
        /// Which outstanding hold (modulo their number).
        hold: u8,
    },
    /// Set `table`'s read policy.
    SetReadPolicy {
        /// The table's index.
        table: u8,
        /// The policy.
        policy: ReadPolicy<Timestamp>,
    },
    /// Read `table` as of its latest write, and as of every outstanding hold on it.
    Snapshot {
        /// The table's index.
        table: u8,
    },
}

impl ControllerCommand {
    /// The id of table index `table`: `User(table + 1)`.
    pub fn table_id(table: u8) -> GlobalId {
        GlobalId::User(u64::from(table) + 1)
    }

    /// The row of a single-column value.
    pub fn row(value: i64) -> Row {
        Row::pack(&[Datum::Int64(value)])
    }
}

/// Read policies a table may take: step back, lag the writes, or no policy.
fn arb_table_policy() -> impl Strategy<Value = ReadPolicy<Timestamp>> {
    prop_oneof![
        Just(ReadPolicy::step_back()),
        (0u64..4, 1u64..4).prop_map(|(lag, round)| ReadPolicy::lag_writes_by(
            Timestamp::new(lag),
            Timestamp::new(round)
        )),
    ]
}

/// One [`ControllerCommand`] over tables `0..tables`, weighted towards appends and
/// reads so sequences carry data.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::{ControllerCommand, arb_controller_command};
/// proptest!(|(command in arb_controller_command(3))| {
///     if let ControllerCommand::CreateTable { table } = command {
///         prop_assert!(table < 3);
///     }
/// });
/// ```
pub fn arb_controller_command(tables: u8) -> impl Strategy<Value = ControllerCommand> {
    let table = 0..tables.max(1);
    let updates = vec(
        (
            -3i64..6,
            prop_oneof![4 => Just(1i64), 1 => Just(-1i64), 1 => 2i64..4],
        ),
        1..4,
    );
    prop_oneof![
        2 => table.clone().prop_map(|table| ControllerCommand::CreateTable { table }),
        4 => (table.clone(), updates)
            .prop_map(|(table, updates)| ControllerCommand::Append { table, updates }),
        1 => table.clone().prop_map(|table| ControllerCommand::DropTable { table }),
        2 => table.clone().prop_map(|table| ControllerCommand::AcquireHold { table }),
        1 => any::<u8>().prop_map(|hold| ControllerCommand::DowngradeHold { hold }),
        1 => any::<u8>().prop_map(|hold| ControllerCommand::ReleaseHold { hold }),
        1 => (table.clone(), arb_table_policy())
            .prop_map(|(table, policy)| ControllerCommand::SetReadPolicy { table, policy }),
        2 => table.prop_map(|table| ControllerCommand::Snapshot { table }),
    ]
}

/// A sequence of up to `max_len` commands over tables `0..tables`, starting by
/// creating table 0 so most sequences do something. Shrinks towards shorter
/// sequences of simpler commands.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::{ControllerCommand, arb_controller_commands};
/// proptest!(|(commands in arb_controller_commands(2, 8))| {
///     prop_assert_eq!(&commands[0], &ControllerCommand::CreateTable { table: 0 });
///     prop_assert!(commands.len() <= 9);
/// });
/// ```
pub fn arb_controller_commands(
    tables: u8,
    max_len: usize,
) -> impl Strategy<Value = Vec<ControllerCommand>> {
    vec(arb_controller_command(tables), 0..=max_len).prop_map(|rest| {
        let mut commands = vec![ControllerCommand::CreateTable { table: 0 }];
        commands.extend(rest);
        commands
    })
}
