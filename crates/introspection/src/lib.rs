//! # strata-introspection
//!
//! What operators see of a storage controller, and the machinery that writes it.
//!
//! **Owns**:
//! - the schemas of the introspection collections ([`schema`]);
//! - status de-duplication and status rows ([`status`]) and the pure rules that keep
//!   history bounded ([`truncation`]);
//! - the [`CollectionManager`] ([`manager`]): one task per managed collection that
//!   reconciles differential collections against their shards, appends to append-only
//!   ones, truncates history, and obeys read-only mode;
//! - statistics scrapers ([`statistics`]) that consolidate replica statistics per
//!   `(id, replica)` into the statistics collections;
//! - Prometheus metrics ([`metrics`]) and the `/metrics` HTTP endpoint ([`http`]).
//!
//! **Must never depend on**: `strata-controller-core`, `strata-replica`,
//! `strata-testkit`, `strata-cli`; a tracing subscriber.
//!
//! **Invariants**:
//! - every introspection type has exactly one schema, and truncation keeps exactly the
//!   newest N rows per key, whatever the ties;
//! - a differential collection's shard converges to its desired state: after an upper
//!   mismatch the manager writes `desired - actual`, never the stale difference;
//! - in read-only mode no managed write reaches a shard (except collections registered
//!   as force-writable), and appends fail with `StorageError::ReadOnly`, never panic;
//! - persist failures are retried with capped backoff and then on the next tick; they
//!   are logged, never panic.

pub mod config;
pub mod http;
pub mod manager;
pub mod metrics;
pub mod schema;
pub mod statistics;
pub mod status;
pub mod truncation;

pub use config::{ManagerConfig, NowFn, system_now};
pub use http::{MetricsServer, ServeError, serve_metrics};
pub use manager::{CollectionKind, CollectionManager, HistoryPolicy, Registration};
pub use metrics::{ControllerMetrics, MessageCounter, Metrics, ReplicaMetrics};
pub use statistics::{
    SinkStatistics, SourceStatistics, StatisticsConfig, StatisticsKind, StatisticsScraper,
};
