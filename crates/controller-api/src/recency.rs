//! Upstream probes: how the controller asks a registered connector's upstream how far
//! it has got, for real-time recency.
//!
//! A load generator is its own upstream, so the controller answers real-time recency
//! for it from the ingestion's upper alone. A registered connector's upstream (a
//! Postgres server, a queue) is known only to code the embedding program supplies: an
//! [`UpstreamProbe`] per connector kind, registered in [`UpstreamProbes`] and given to
//! the controller at start-up. The controller then waits until the ingestion's remap
//! collection binds every offset below the probed frontier, and answers with that
//! binding's time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::description::ConnectorConfig;

/// What a probe answers: the upstream frontier, or why it could not be learnt.
pub type ProbeFuture = BoxFuture<'static, Result<u64, String>>;

/// Learns a connector's upstream frontier from its configuration.
///
/// # Contract
///
/// The answer is an offset such that every update the upstream had committed when the
/// probe was called is at an offset below it, in the same offsets the connector hands
/// out (for Postgres, `pg_current_wal_lsn()`: every committed transaction's commit
/// record starts below it). A probe must not panic on anything the upstream says.
pub trait UpstreamProbe: Send + Sync {
    /// The upstream frontier of the source `config` describes.
    fn upstream_frontier(&self, config: &ConnectorConfig) -> ProbeFuture;
}

impl<F> UpstreamProbe for F
where
    F: Fn(&ConnectorConfig) -> ProbeFuture + Send + Sync,
{
    fn upstream_frontier(&self, config: &ConnectorConfig) -> ProbeFuture {
        self(config)
    }
}

/// The upstream probes a controller knows, by connector kind.
///
/// # Examples
///
/// ```
/// use futures::FutureExt;
/// use strata_controller_api::{ConnectorConfig, UpstreamProbes};
///
/// let mut probes = UpstreamProbes::default();
/// probes
///     .register("my-queue", |_: &ConnectorConfig| async { Ok(42) }.boxed())
///     .unwrap();
/// assert!(probes.get("my-queue").is_some());
/// assert!(probes.register("my-queue", |_: &ConnectorConfig| async { Ok(0) }.boxed()).is_err());
/// ```
#[derive(Clone, Default)]
pub struct UpstreamProbes {
    probes: BTreeMap<String, Arc<dyn UpstreamProbe>>,
}

/// A second probe for a kind that already has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an upstream probe for connector kind {0:?} is already registered")]
pub struct DuplicateProbe(pub String);

impl UpstreamProbes {
    /// Registers `probe` for connectors of `kind`. A kind has one probe: a second
    /// registration is an error, not a silent replacement.
    pub fn register(
        &mut self,
        kind: impl Into<String>,
        probe: impl UpstreamProbe + 'static,
    ) -> Result<(), DuplicateProbe> {
        let kind = kind.into();
        if self.probes.contains_key(&kind) {
            return Err(DuplicateProbe(kind));
        }
        self.probes.insert(kind, Arc::new(probe));
        Ok(())
    }

    /// Adds every probe of `other` whose kind has none here yet.
    pub fn extend(&mut self, other: &UpstreamProbes) {
        for (kind, probe) in &other.probes {
            self.probes
                .entry(kind.clone())
                .or_insert_with(|| Arc::clone(probe));
        }
    }

    /// The probe for `kind`, if one is registered.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn UpstreamProbe>> {
        self.probes.get(kind).cloned()
    }

    /// The kinds with a probe, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.probes.keys().map(String::as_str)
    }
}

impl fmt::Debug for UpstreamProbes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.probes.keys()).finish()
    }
}
