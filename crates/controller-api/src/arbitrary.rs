//! proptest strategies for this crate's types (feature `proptest`), shared by the tests
//! of this crate and of the crates that encode its types.

use proptest::prelude::*;

use crate::row::Datum;

/// Any [`Datum`] of any kind (no NaN, which is not equal to itself).
pub fn arb_datum() -> impl Strategy<Value = Datum> {
    prop_oneof![
        Just(Datum::Null),
        any::<bool>().prop_map(Datum::Bool),
        any::<i64>().prop_map(Datum::Int64),
        any::<u64>().prop_map(Datum::UInt64),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |x| !x.is_nan())
            .prop_map(Datum::Float64),
        ".*".prop_map(Datum::String),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Datum::Bytes),
        ".*".prop_map(Datum::Jsonb),
        any::<u64>().prop_map(Datum::TimestampMillis),
    ]
}
