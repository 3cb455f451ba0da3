//! # strata-persist-backend
//!
//! placeholder while building

mod blob;
pub mod cmds;
pub mod consensus;
pub mod error;
pub mod location;
pub mod part;
pub mod state;
