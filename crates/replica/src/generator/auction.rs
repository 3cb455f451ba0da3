//! `auction`: auctions and the bids on them.
//!
//! The primary output is empty; the data goes to two subsources. Offset `n` opens
//! auction `n` and places between one and three bids, each on one of the most recent
//! auctions (never on one not yet opened).

use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, SourceOutput};

use super::{GeneratedUpdate, mix};

/// The name of the auctions output.
pub const AUCTIONS: &str = "auctions";
/// The name of the bids output.
pub const BIDS: &str = "bids";

const ITEMS: [&str; 6] = [
    "City Bar Crawl",
    "Best Pizza in Town",
    "Gift Basket",
    "Signed Guitar",
    "Custom Art",
    "Vintage Watch",
];
const RECENT_AUCTIONS: u64 = 10;
const BIDS_PER_OFFSET: u64 = 3;

pub(super) fn outputs() -> Vec<(SourceOutput, RelationDesc)> {
    let auctions = RelationDesc::builder()
        .with_column("id", ScalarType::UInt64.nullable(false))
        .with_column("seller", ScalarType::UInt64.nullable(false))
        .with_column("item", ScalarType::String.nullable(false))
        .with_column("end_offset", ScalarType::UInt64.nullable(false))
        .finish();
    let bids = RelationDesc::builder()
        .with_column("id", ScalarType::UInt64.nullable(false))
        .with_column("buyer", ScalarType::UInt64.nullable(false))
        .with_column("auction_id", ScalarType::UInt64.nullable(false))
        .with_column("amount", ScalarType::Int64.nullable(false))
        .finish();
    vec![
        (SourceOutput::Primary, RelationDesc::empty()),
        (SourceOutput::Named(AUCTIONS.into()), auctions),
        (SourceOutput::Named(BIDS.into()), bids),
    ]
}

pub(super) fn updates_at(seed: u64, offset: u64) -> Vec<GeneratedUpdate> {
    let r = mix(seed, offset);
    let item = ITEMS[(r % ITEMS.len() as u64) as usize];
    let auction = Row::pack(&[
        Datum::UInt64(offset),
        Datum::UInt64(r % 1000),
        Datum::String(item.to_owned()),
        Datum::UInt64(offset + 10 + (r >> 20) % 20),
    ]);
    let mut updates = vec![(SourceOutput::Named(AUCTIONS.into()), auction, 1)];
    let bids = 1 + (r >> 8) % BIDS_PER_OFFSET;
    for i in 0..bids {
        let b = mix(seed ^ 0xB1D5, offset * BIDS_PER_OFFSET + i);
        let auction_id = offset - (b % RECENT_AUCTIONS).min(offset);
        let bid = Row::pack(&[
            Datum::UInt64(offset * BIDS_PER_OFFSET + i),
            Datum::UInt64((b >> 16) % 1000),
            Datum::UInt64(auction_id),
            Datum::Int64(1 + ((b >> 32) % 100) as i64),
        ]);
        updates.push((SourceOutput::Named(BIDS.into()), bid, 1));
    }
    updates
}
