//! # strata-introspection
//!
//! What operators see of a storage controller: the schemas of the introspection
//! collections ([`schema`]), status de-duplication ([`status`]) and the pure rules that
//! keep their history bounded ([`truncation`]). The `CollectionManager`, statistics scrapers and Prometheus metrics
//! join this crate with its issue.
//!
//! **Must never depend on**: `strata-controller-core`, `strata-replica`, `strata-testkit`,
//! `strata-cli`.
//!
//! **Invariants**: every introspection type has exactly one schema, and truncation keeps
//! exactly the newest N rows per key, whatever the ties.

pub mod schema;
pub mod status;
pub mod truncation;
