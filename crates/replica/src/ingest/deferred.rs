//! A connector whose factory failed on its upstream when the ingestion was planned
//! (a Postgres server that is down when the replica starts, say).
//!
//! Planning happens once per command, so a transient failure there would stall the
//! ingestion until the controller sent the command again. Instead the plan holds this
//! stand-in: it builds the real connector at each reader open until that works, so the
//! leader's retry with backoff covers the outage, and checks the built connector's
//! outputs against the collections then.

use std::sync::{Arc, OnceLock};

use strata_controller_api::{RelationDesc, SourceConnection, SourceOutput};

use super::{Expected, check_outputs};
use crate::connector::{
    ConnectorError, ConnectorRegistry, Offset, Pacing, ReaderShare, SourceConnector, SourceReader,
    SourceWaker,
};

/// Builds its connector on first use (see the module doc).
pub(super) struct Deferred {
    registry: ConnectorRegistry,
    connection: SourceConnection,
    kind: String,
    expected: Vec<Expected>,
    built: OnceLock<Arc<dyn SourceConnector>>,
}

impl Deferred {
    pub(super) fn new(
        registry: ConnectorRegistry,
        connection: SourceConnection,
        expected: Vec<Expected>,
    ) -> Deferred {
        let kind = match &connection {
            SourceConnection::Connector(config) => config.kind.clone(),
            SourceConnection::LoadGenerator { .. } => {
                crate::connector::builtin::LOAD_GENERATOR.to_owned()
            }
        };
        Deferred {
            registry,
            connection,
            kind,
            expected,
            built: OnceLock::new(),
        }
    }

    /// The real connector, built (and checked against the collections) once.
    fn connector(&self) -> Result<&Arc<dyn SourceConnector>, ConnectorError> {
        if let Some(built) = self.built.get() {
            return Ok(built);
        }
        let built = self.registry.source(&self.connection)?;
        check_outputs(built.kind(), &built.outputs(), &self.expected).map_err(|e| {
            ConnectorError::InvalidConfig {
                kind: self.kind.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(self.built.get_or_init(|| built))
    }
}

impl SourceConnector for Deferred {
    fn kind(&self) -> &str {
        &self.kind
    }

    /// The outputs the collections expect (the built connector's, once checked).
    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        self.expected
            .iter()
            .map(|(_, output, desc)| (output.clone(), desc.clone()))
            .collect()
    }

    /// The default pace: the plan takes it before the connector exists.
    fn pacing(&self) -> Pacing {
        Pacing::default()
    }

    /// Read on worker 0 only, which is right for any connector.
    fn parallel(&self) -> bool {
        false
    }

    fn open(
        &self,
        resume: Offset,
        share: ReaderShare,
        waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        self.connector()?.open(resume, share, waker)
    }

    fn open_with_backfill(
        &self,
        resume: Offset,
        share: ReaderShare,
        waker: SourceWaker,
        backfill: &[SourceOutput],
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        self.connector()?
            .open_with_backfill(resume, share, waker, backfill)
    }
}
