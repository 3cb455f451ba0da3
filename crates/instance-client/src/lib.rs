//! # strata-instance-client
//!
//! Placeholder: filled by its issue.
