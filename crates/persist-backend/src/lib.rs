//! # strata-persist-backend
//!
//! Placeholder: filled by its issue.
