use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_controller_api::{Datum, LoadGenerator, Row, SourceConnection, SourceOutput};

use super::*;

fn connection(generator: LoadGenerator, seed: u64) -> SourceConnection {
    SourceConnection::LoadGenerator {
        generator,
        tick_interval_ms: 10,
        offsets_per_tick: 1,
        seed,
    }
}

fn generator(kind: LoadGenerator, seed: u64) -> Generator {
    Generator::new(&connection(kind, seed)).unwrap()
}

/// Accumulates updates per (output, row), dropping rows whose count nets to zero.
fn consolidate(updates: Vec<GeneratedUpdate>) -> BTreeMap<(SourceOutput, Row), i64> {
    let mut acc = BTreeMap::new();
    for (output, row, diff) in updates {
        *acc.entry((output, row)).or_insert(0) += diff;
    }
    acc.retain(|_, diff| *diff != 0);
    acc
}

#[test]
fn counter_counts_and_stops_at_its_limit() {
    let g = generator(LoadGenerator::Counter { max_ticks: Some(3) }, 0);
    let rows: Vec<_> = g
        .updates_in(0..10)
        .into_iter()
        .map(|(_, row, diff)| (row.unpack(), diff))
        .collect();
    let expected: Vec<_> = (1..=3).map(|n| (vec![Datum::Int64(n)], 1)).collect();
    assert_eq!(rows, expected);
    assert_eq!(g.offset_limit(), Some(3));
}

/// `max_ticks` counts ticks, whatever their size: table of (max_ticks, offsets_per_tick,
/// rows ever produced).
#[test]
fn a_counter_stops_after_max_ticks_ticks() {
    for (ticks, per_tick, rows) in [(3, 1, 3), (3, 4, 12), (0, 5, 0), (1, 10, 10)] {
        let g = Generator::new(&SourceConnection::LoadGenerator {
            generator: LoadGenerator::Counter {
                max_ticks: Some(ticks),
            },
            tick_interval_ms: 10,
            offsets_per_tick: per_tick,
            seed: 0,
        })
        .unwrap();
        assert_eq!(g.offset_limit(), Some(rows), "{ticks} x {per_tick}");
        assert_eq!(
            g.updates_in(0..100).len() as u64,
            rows,
            "{ticks} x {per_tick}"
        );
    }
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let zero_keys = Generator::new(&connection(LoadGenerator::KeyValue { keys: 0 }, 1));
    assert!(matches!(
        zero_keys,
        Err(GeneratorError::InvalidParameter(_))
    ));
    let no_rate = Generator::new(&SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 1,
        offsets_per_tick: 0,
        seed: 0,
    });
    assert!(matches!(no_rate, Err(GeneratorError::InvalidParameter(_))));
    let counter = generator(LoadGenerator::Counter { max_ticks: None }, 0);
    assert!(matches!(
        counter.output_desc(&SourceOutput::Named("bids".into())),
        Err(GeneratorError::UnknownOutput { .. })
    ));
}

#[test]
fn auction_rows_match_their_output_schemas() {
    let g = generator(LoadGenerator::Auction, 7);
    for (output, row, diff) in g.updates_in(0..200) {
        assert_eq!(diff, 1);
        let desc = g.output_desc(&output).unwrap();
        desc.validate_row(&row).unwrap();
        assert_ne!(output, SourceOutput::Primary, "the primary output is empty");
    }
}

#[test]
fn auction_bids_refer_to_opened_auctions() {
    let g = generator(LoadGenerator::Auction, 3);
    for offset in 0..500 {
        for (output, row, _) in g.updates_at(offset) {
            if output == SourceOutput::Named(BIDS.into()) {
                let Datum::UInt64(auction_id) = row.unpack()[2] else {
                    panic!("auction_id is a u64")
                };
                assert!(
                    auction_id <= offset,
                    "bid at {offset} on future auction {auction_id}"
                );
            }
        }
    }
}

#[test]
fn key_value_holds_one_row_per_key() {
    let keys = 5;
    let g = generator(LoadGenerator::KeyValue { keys }, 11);
    let state = consolidate(g.updates_in(0..103));
    assert_eq!(state.len() as u64, keys);
    for ((_, row), diff) in &state {
        assert_eq!(*diff, 1);
        let Datum::UInt64(offset) = row.unpack()[2] else {
            panic!("offset is a u64")
        };
        assert!(
            offset >= 103 - keys,
            "row from offset {offset} should have been retracted"
        );
    }
}

proptest! {
    #[test]
    fn output_depends_only_on_configuration_and_offset(seed: u64, offset in 0u64..1_000_000, kind in 0u8..3) {
        let kind = match kind {
            0 => LoadGenerator::Counter { max_ticks: None },
            1 => LoadGenerator::Auction,
            _ => LoadGenerator::KeyValue { keys: 17 },
        };
        let a = generator(kind.clone(), seed);
        let b = generator(kind, seed);
        prop_assert_eq!(a.updates_at(offset), b.updates_at(offset));
    }

    #[test]
    fn resuming_anywhere_reproduces_a_clean_run(seed: u64, split in 0u64..300) {
        // A source that stops at `split` and resumes there writes exactly what one clean
        // run writes: the generator needs no state but the offset.
        let g = generator(LoadGenerator::KeyValue { keys: 13 }, seed);
        let mut resumed = g.updates_in(0..split);
        resumed.extend(g.updates_in(split..300));
        prop_assert_eq!(consolidate(resumed), consolidate(g.updates_in(0..300)));
    }
}
