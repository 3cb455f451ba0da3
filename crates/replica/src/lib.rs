//! # strata-replica
//!
//! Placeholder: filled by its issue.
