//! Reference models: the simplest statements of Strata's semantics, for property tests
//! to compare real implementations against.
//!
//! A model favours being obviously right over being fast. It never shares code with
//! the implementation it checks, so a bug must be made twice to go unnoticed.

pub mod frontiers;

pub use frontiers::{FrontierModel, ModelConfig, ModelError};
