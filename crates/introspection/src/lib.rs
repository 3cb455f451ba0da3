//! # strata-introspection
//!
//! Placeholder: filled by its issue.
