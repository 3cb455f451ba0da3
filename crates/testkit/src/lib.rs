//! # strata-testkit
//!
//! Placeholder: filled by its issue.
