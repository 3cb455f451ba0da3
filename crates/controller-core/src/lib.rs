//! # strata-controller-core
//!
//! Placeholder: filled by its issue.
