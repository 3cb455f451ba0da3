//! proptest strategies for Strata's vocabulary: timestamps, frontiers, read policies,
//! identifiers, scalar and column types, relation descriptions, datums and rows; and
//! sequences of controller operations ([`ControllerCommand`],
//! [`arb_controller_commands`]).
//!
//! The strategies lean towards the values that find bugs: timestamps near zero (so
//! times collide) and at the maximum, the empty frontier, nested `Multiple` policies,
//! and NULLs in nullable columns. Every strategy shrinks towards small, simple values.
//!
//! Floats never include NaN, so a generated row's datums compare equal to themselves;
//! JSON datums are always valid JSON text.

mod commands;

pub use commands::{ControllerCommand, arb_controller_command, arb_controller_commands};

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use strata_controller_api::{
    Antichain, ColumnType, Datum, GlobalId, ReadPolicy, RelationDesc, Row, ScalarType, Timestamp,
};

/// Every [`ScalarType`], in declaration order.
pub const ALL_SCALAR_TYPES: [ScalarType; 8] = [
    ScalarType::Bool,
    ScalarType::Int64,
    ScalarType::UInt64,
    ScalarType::Float64,
    ScalarType::String,
    ScalarType::Bytes,
    ScalarType::Jsonb,
    ScalarType::TimestampMillis,
];

/// Milliseconds biased towards small values (which collide), with zero and the maximum.
fn arb_millis() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        6 => 0u64..64,
        2 => any::<u64>(),
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

/// Any [`Timestamp`], biased towards small values, zero and the maximum.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::StorageTimestamp;
/// use strata_testkit::strategies::arb_timestamp;
/// proptest!(|(t in arb_timestamp())| {
///     prop_assert!(t.step_forward() >= t);
/// });
/// ```
pub fn arb_timestamp() -> impl Strategy<Value = Timestamp> + Clone {
    arb_millis().prop_map(Timestamp::new)
}

/// A [`Timestamp`] in `[0, end)`, for models that want times to collide often. An
/// `end` of zero is treated as one.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::Timestamp;
/// use strata_testkit::strategies::arb_timestamp_below;
/// proptest!(|(t in arb_timestamp_below(10))| {
///     prop_assert!(t < Timestamp::new(10));
/// });
/// ```
pub fn arb_timestamp_below(end: u64) -> impl Strategy<Value = Timestamp> + Clone {
    (0..end.max(1)).prop_map(Timestamp::new)
}

/// A frontier over the default timestamp: the empty frontier (closed) or a single
/// time, since the order is total.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::arb_frontier;
/// proptest!(|(f in arb_frontier())| {
///     prop_assert!(f.len() <= 1);
/// });
/// ```
pub fn arb_frontier() -> impl Strategy<Value = Antichain<Timestamp>> + Clone {
    frontier_of(arb_timestamp())
}

/// Like [`arb_frontier`], with its time in `[0, end)`.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::Timestamp;
/// use strata_testkit::strategies::arb_frontier_below;
/// proptest!(|(f in arb_frontier_below(5))| {
///     prop_assert!(f.iter().all(|t| *t < Timestamp::new(5)));
/// });
/// ```
pub fn arb_frontier_below(end: u64) -> impl Strategy<Value = Antichain<Timestamp>> + Clone {
    frontier_of(arb_timestamp_below(end))
}

fn frontier_of(
    time: impl Strategy<Value = Timestamp> + Clone,
) -> impl Strategy<Value = Antichain<Timestamp>> + Clone {
    prop_oneof![
        1 => Just(Antichain::new()),
        4 => time.prop_map(Antichain::from_elem),
    ]
}

/// Any [`ReadPolicy`]: every variant, with `Multiple` nested at most three levels
/// deep and at most four members per level.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::{Antichain, Timestamp};
/// use strata_testkit::strategies::{arb_frontier, arb_read_policy};
/// proptest!(|(policy in arb_read_policy(), upper in arb_frontier())| {
///     // A policy's advice is a frontier of at most one time (the order is total).
///     prop_assert!(policy.frontier(upper.borrow()).len() <= 1);
/// });
/// ```
pub fn arb_read_policy() -> impl Strategy<Value = ReadPolicy<Timestamp>> {
    let leaf = prop_oneof![
        arb_frontier().prop_map(|initial_since| ReadPolicy::NoPolicy { initial_since }),
        arb_frontier().prop_map(ReadPolicy::ValidFrom),
        (arb_timestamp(), arb_timestamp()).prop_map(|(lag, max_granularity)| {
            ReadPolicy::LagWriteFrontier {
                lag,
                max_granularity,
            }
        }),
        Just(ReadPolicy::StepBack),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        vec(inner, 0..4).prop_map(ReadPolicy::Multiple)
    })
}

/// Any [`GlobalId`]: system, user or transient, biased towards small numbers.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::GlobalId;
/// use strata_testkit::strategies::arb_global_id;
/// proptest!(|(id in arb_global_id())| {
///     prop_assert_eq!(id.to_string().parse::<GlobalId>().unwrap(), id);
/// });
/// ```
pub fn arb_global_id() -> impl Strategy<Value = GlobalId> + Clone {
    let number = prop_oneof![4 => 0u64..100, 1 => any::<u64>()];
    prop_oneof![
        number.clone().prop_map(GlobalId::System),
        number.clone().prop_map(GlobalId::User),
        number.prop_map(GlobalId::Transient),
    ]
}

/// Any [`ScalarType`].
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::{ALL_SCALAR_TYPES, arb_scalar_type};
/// proptest!(|(s in arb_scalar_type())| {
///     prop_assert!(ALL_SCALAR_TYPES.contains(&s));
/// });
/// ```
pub fn arb_scalar_type() -> impl Strategy<Value = ScalarType> + Clone {
    proptest::sample::select(&ALL_SCALAR_TYPES[..])
}

/// Any [`ColumnType`]: a scalar type, nullable or not.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::arb_column_type;
/// proptest!(|(c in arb_column_type())| {
///     prop_assert_eq!(c.scalar_type.nullable(c.nullable), c);
/// });
/// ```
pub fn arb_column_type() -> impl Strategy<Value = ColumnType> + Clone {
    (arb_scalar_type(), any::<bool>()).prop_map(|(s, nullable)| s.nullable(nullable))
}

/// A [`RelationDesc`] of zero to seven columns with distinct names.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use std::collections::BTreeSet;
/// use strata_testkit::strategies::arb_relation_desc;
/// proptest!(|(desc in arb_relation_desc())| {
///     let names: BTreeSet<&str> = desc.names().collect();
///     prop_assert_eq!(names.len(), desc.arity());
/// });
/// ```
pub fn arb_relation_desc() -> impl Strategy<Value = RelationDesc> + Clone {
    vec(("[a-z][a-z0-9_]{0,7}", arb_column_type()), 0..8).prop_map(|columns| {
        let mut builder = RelationDesc::builder();
        let mut seen = std::collections::BTreeSet::new();
        for (i, (name, typ)) in columns.into_iter().enumerate() {
            // A clash gets the column's position appended, which no other name has.
            let name = if seen.contains(&name) {
                format!("{name}__{i}")
            } else {
                name
            };
            seen.insert(name.clone());
            builder = builder.with_column(name, typ);
        }
        builder.finish()
    })
}

/// A non-null [`Datum`] of the scalar type `scalar`.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::ScalarType;
/// use strata_testkit::strategies::arb_datum_of;
/// proptest!(|(d in arb_datum_of(ScalarType::Jsonb))| {
///     prop_assert_eq!(d.scalar_type(), Some(ScalarType::Jsonb));
/// });
/// ```
pub fn arb_datum_of(scalar: ScalarType) -> BoxedStrategy<Datum> {
    match scalar {
        ScalarType::Bool => any::<bool>().prop_map(Datum::Bool).boxed(),
        ScalarType::Int64 => prop_oneof![
            3 => -64i64..64,
            1 => any::<i64>(),
            1 => prop_oneof![Just(i64::MIN), Just(i64::MAX)],
        ]
        .prop_map(Datum::Int64)
        .boxed(),
        ScalarType::UInt64 => arb_millis().prop_map(Datum::UInt64).boxed(),
        ScalarType::Float64 => {
            use proptest::num::f64;
            // Everything but NaN.
            (f64::POSITIVE
                | f64::NEGATIVE
                | f64::NORMAL
                | f64::SUBNORMAL
                | f64::ZERO
                | f64::INFINITE)
                .prop_map(Datum::Float64)
                .boxed()
        }
        ScalarType::String => ".{0,16}".prop_map(Datum::String).boxed(),
        ScalarType::Bytes => vec(any::<u8>(), 0..32).prop_map(Datum::Bytes).boxed(),
        ScalarType::Jsonb => arb_json_text().prop_map(Datum::Jsonb).boxed(),
        ScalarType::TimestampMillis => arb_millis().prop_map(Datum::TimestampMillis).boxed(),
    }
}

/// Valid JSON text: scalars, arrays and objects, nested at most three levels deep.
fn arb_json_text() -> impl Strategy<Value = String> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    });
    value.prop_map(|v| v.to_string())
}

/// A [`Datum`] that fits `column`: of its scalar type, or, one time in eight, NULL if
/// the column admits it.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::{Datum, ScalarType};
/// use strata_testkit::strategies::arb_datum_for;
/// proptest!(|(d in arb_datum_for(&ScalarType::Int64.nullable(false)))| {
///     prop_assert!(matches!(d, Datum::Int64(_)));
/// });
/// ```
pub fn arb_datum_for(column: &ColumnType) -> BoxedStrategy<Datum> {
    let value = arb_datum_of(column.scalar_type);
    if column.nullable {
        prop_oneof![1 => Just(Datum::Null), 7 => value].boxed()
    } else {
        value
    }
}

/// Any [`Datum`], NULL included.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::Row;
/// use strata_testkit::strategies::arb_datum;
/// proptest!(|(d in arb_datum())| {
///     prop_assert_eq!(Row::pack([&d]).unpack(), vec![d]);
/// });
/// ```
pub fn arb_datum() -> impl Strategy<Value = Datum> {
    arb_column_type().prop_flat_map(|column| arb_datum_for(&column))
}

/// A [`Row`] that validates against `desc`: one fitting datum per column.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_controller_api::{RelationDesc, ScalarType};
/// use strata_testkit::strategies::arb_row_for;
/// let desc = RelationDesc::builder()
///     .with_column("id", ScalarType::Int64.nullable(false))
///     .with_column("name", ScalarType::String.nullable(true))
///     .finish();
/// proptest!(|(row in arb_row_for(&desc))| {
///     prop_assert!(desc.validate_row(&row).is_ok());
/// });
/// ```
pub fn arb_row_for(desc: &RelationDesc) -> impl Strategy<Value = Row> + use<> {
    let columns: Vec<BoxedStrategy<Datum>> = desc.types().map(arb_datum_for).collect();
    columns.prop_map(|datums| Row::pack(&datums))
}

/// A random [`RelationDesc`] with up to `max_rows - 1` rows that fit it.
///
/// # Examples
///
/// ```
/// use proptest::prelude::*;
/// use strata_testkit::strategies::arb_desc_with_rows;
/// proptest!(|((desc, rows) in arb_desc_with_rows(8))| {
///     prop_assert!(rows.len() < 8);
///     for row in &rows {
///         prop_assert!(desc.validate_row(row).is_ok());
///     }
/// });
/// ```
pub fn arb_desc_with_rows(max_rows: usize) -> impl Strategy<Value = (RelationDesc, Vec<Row>)> {
    let max_rows = max_rows.max(1);
    arb_relation_desc().prop_flat_map(move |desc| {
        let rows = vec(arb_row_for(&desc), 0..max_rows);
        (Just(desc), rows)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    /// `n` values drawn deterministically from `strategy`.
    fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
        let mut runner = TestRunner::deterministic();
        (0..n)
            .map(|_| strategy.new_tree(&mut runner).unwrap().current())
            .collect()
    }

    /// Fails to compile when `ScalarType` gains a variant, so `ALL_SCALAR_TYPES` and
    /// `arb_datum_of` cannot silently miss it.
    fn position(s: ScalarType) -> usize {
        match s {
            ScalarType::Bool => 0,
            ScalarType::Int64 => 1,
            ScalarType::UInt64 => 2,
            ScalarType::Float64 => 3,
            ScalarType::String => 4,
            ScalarType::Bytes => 5,
            ScalarType::Jsonb => 6,
            ScalarType::TimestampMillis => 7,
        }
    }

    #[test]
    fn every_scalar_type_is_listed_once() {
        for (i, s) in ALL_SCALAR_TYPES.iter().enumerate() {
            assert_eq!(position(*s), i, "{s:?}");
        }
        let drawn: BTreeSet<ScalarType> = sample(arb_scalar_type(), 500).into_iter().collect();
        assert_eq!(drawn.len(), ALL_SCALAR_TYPES.len());
    }

    #[test]
    fn datums_have_their_column_type() {
        let check = |column: ColumnType, expect_nulls: bool| {
            let datums = sample(arb_datum_for(&column), 400);
            let nulls = datums.iter().filter(|d| **d == Datum::Null).count();
            assert_eq!(nulls > 0, expect_nulls, "{column:?}: {nulls} nulls");
            for d in datums.iter().filter(|d| **d != Datum::Null) {
                assert_eq!(d.scalar_type(), Some(column.scalar_type), "{d:?}");
                if let Datum::Float64(x) = d {
                    assert!(!x.is_nan());
                }
                if let Datum::Jsonb(text) = d {
                    serde_json::from_str::<serde_json::Value>(text).unwrap();
                }
            }
        };
        for s in ALL_SCALAR_TYPES {
            check(s.nullable(false), false);
            check(s.nullable(true), true);
        }
    }

    #[test]
    fn frontiers_are_empty_or_one_time() {
        let frontiers = sample(arb_frontier(), 200);
        assert!(frontiers.iter().any(|f| f.is_empty()));
        assert!(frontiers.iter().any(|f| f.len() == 1));
        assert!(frontiers.iter().all(|f| f.len() <= 1));
        let below = sample(arb_frontier_below(3), 200);
        assert!(
            below
                .iter()
                .flat_map(|f| f.iter())
                .all(|t| *t < Timestamp::new(3))
        );
        assert_eq!(
            sample(arb_timestamp_below(0), 5),
            vec![Timestamp::new(0); 5]
        );
    }

    fn depth(policy: &ReadPolicy<Timestamp>) -> usize {
        match policy {
            ReadPolicy::Multiple(ps) => 1 + ps.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    fn variant(policy: &ReadPolicy<Timestamp>) -> &'static str {
        match policy {
            ReadPolicy::NoPolicy { .. } => "NoPolicy",
            ReadPolicy::ValidFrom(_) => "ValidFrom",
            ReadPolicy::LagWriteFrontier { .. } => "LagWriteFrontier",
            ReadPolicy::StepBack => "StepBack",
            ReadPolicy::Multiple(_) => "Multiple",
        }
    }

    #[test]
    fn read_policies_cover_every_variant_with_bounded_nesting() {
        let policies = sample(arb_read_policy(), 500);
        let variants: BTreeSet<&str> = policies.iter().map(variant).collect();
        assert_eq!(variants.len(), 5, "{variants:?}");
        assert!(policies.iter().all(|p| depth(p) <= 3));
        assert!(
            policies.iter().any(|p| depth(p) >= 2),
            "nested policies appear"
        );
    }

    #[test]
    fn global_ids_cover_every_namespace() {
        let ids = sample(arb_global_id(), 200);
        assert!(ids.iter().any(GlobalId::is_system));
        assert!(ids.iter().any(GlobalId::is_user));
        assert!(ids.iter().any(GlobalId::is_transient));
    }

    proptest! {
        #[test]
        fn generated_rows_validate_against_their_desc((desc, rows) in arb_desc_with_rows(16)) {
            let names: BTreeSet<&str> = desc.names().collect();
            prop_assert_eq!(names.len(), desc.arity());
            for row in &rows {
                prop_assert_eq!(desc.validate_row(row), Ok(()));
                prop_assert_eq!(row.len(), desc.arity());
                let copy = Row::from_bytes(row.as_bytes().to_vec());
                prop_assert_eq!(copy.as_ref(), Ok(row));
            }
        }

        #[test]
        fn any_datum_round_trips(d in arb_datum()) {
            prop_assert_eq!(Row::pack([&d]).unpack(), vec![d]);
        }
    }
}
