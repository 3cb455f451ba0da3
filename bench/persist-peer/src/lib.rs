//! Nothing here: see `benches/persist-peer.rs`.
