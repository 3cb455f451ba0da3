//! Ingestions: sources, read through their [`crate::connector`], written to data shards
//! with exactly-once remap bindings.
//!
//! # Dataflow
//!
//! One timely dataflow per ingestion, timestamped by *round* number:
//! 1. **leader** (a source operator; only worker 0 keeps its capability) opens the
//!    source's reader (worker 0's [`SourceReader`](crate::connector::SourceReader)) at
//!    the first offset whose data may be missing, polls it for its frontier, and mints
//!    the next binding below that frontier in the remap shard, or replays a bound round
//!    once the reader has re-read it (`leader::Leader`). It sends the round to every
//!    worker of a parallel connector, or to worker 0 alone;
//! 2. **read** (every worker that got the round) hands out the round's updates from its
//!    reader, checks each is inside the round's offsets, and exchanges them to worker 0;
//!    worker 0 reads only rounds still in flight, so a round abandoned after a failure
//!    never reaches a reader re-opened since;
//! 3. **commit** (worker 0) waits until the round's timely time is complete, then
//!    writes the round with one `compare_and_append` per data shard
//!    (`commit::commit_round`), tells the reader the round's offsets are durable, and
//!    wakes the leader. A round whose data shards are already beyond it (a duplicate
//!    after a resync) is skipped.
//!
//! Up to two rounds are in flight: the leader mints round `n + 1` while round `n` is
//! read and committed. Rounds commit in order, each after its binding is minted; a
//! failed commit abandons the rounds behind it, and the leader replays them from the
//! remap shard. The reader is re-opened only when no round is in flight. Under load (a
//! source without a rate, or a paced one behind its schedule) a round binds up to
//! `ReplicaConfig::max_ticks_per_round` ticks' worth of offsets, so its fixed cost (two
//! serial `compare_and_append`s and a timely round trip) covers more rows.
//! Nothing is minted or written before `AllowWrites`.

pub(crate) mod commit;
pub(crate) mod dataflow;
mod deferred;
pub(crate) mod leader;

use std::sync::Arc;

use strata_controller_api::{GlobalId, RelationDesc, ShardId, SourceOutput};
use strata_instance_client::RunIngestionCommand;

use crate::connector::{ConnectorError, ConnectorRegistry, Pacing, SourceConnector};
use crate::generator::GeneratorError;
use crate::remap::RemapError;
use crate::shard::ShardError;

/// One data shard an ingestion writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExportTarget {
    pub(crate) id: GlobalId,
    pub(crate) shard: ShardId,
    pub(crate) output: SourceOutput,
}

/// A validated ingestion: everything its dataflow needs.
#[derive(Clone)]
pub(crate) struct IngestionPlan {
    pub(crate) id: GlobalId,
    pub(crate) connector: Arc<dyn SourceConnector>,
    pub(crate) exports: Vec<ExportTarget>,
    pub(crate) remap_id: GlobalId,
    pub(crate) remap_shard: ShardId,
    pub(crate) pacing: Pacing,
}

impl std::fmt::Debug for IngestionPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestionPlan")
            .field("id", &self.id)
            .field("connector", &self.connector.kind())
            .field("exports", &self.exports)
            .field("remap_id", &self.remap_id)
            .field("remap_shard", &self.remap_shard)
            .field("pacing", &self.pacing)
            .finish()
    }
}

/// Why an ingestion cannot run or stopped making progress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The load generator configuration is invalid.
    #[error("invalid source: {0}")]
    Generator(#[from] GeneratorError),
    /// The source's connector is unknown, misconfigured or failed.
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    /// The source has no output the ingestion asks for.
    #[error("{kind} source has no output {output:?}")]
    UnknownOutput {
        /// The connector's kind.
        kind: String,
        /// The output asked for.
        output: SourceOutput,
    },
    /// Reading a round's updates from the source failed; the round is not written.
    #[error("reading the source failed: {reason}")]
    ReadFailed {
        /// Why.
        reason: String,
    },
    /// Some subsources hold data from the source's start and others do not, and the
    /// source cannot re-read its start as it was (a subsource added to a running
    /// non-deterministic source, or a crash between the first round's writes).
    #[error(
        "some subsources of this {kind} source hold data the others lack, and it cannot re-read its start as it was"
    )]
    CannotReplay {
        /// The connector's kind.
        kind: String,
    },
    /// An export has no storage metadata.
    #[error("no storage metadata for collection {id}")]
    MissingMetadata {
        /// The collection.
        id: GlobalId,
    },
    /// The shard's schema differs from the generator's output.
    #[error("schema mismatch for collection {id}: shard has {shard}, source produces {produced}")]
    SchemaMismatch {
        /// The collection.
        id: GlobalId,
        /// The shard's columns.
        shard: String,
        /// The source's columns.
        produced: String,
    },
    /// A shard operation failed.
    #[error("shard operation failed: {0}")]
    Shard(#[from] ShardError),
    /// The remap shard holds something that is not a sequence of bindings.
    #[error("corrupt remap shard: {0}")]
    Remap(#[from] RemapError),
    /// A data shard's upper is behind the bindings: an earlier round is missing.
    #[error("data shard of {id} is at {upper:?}, behind the round at {lower}")]
    Inconsistent {
        /// The collection.
        id: GlobalId,
        /// Its upper.
        upper: Vec<u64>,
        /// The round's lower.
        lower: u64,
    },
}

impl IngestError {
    /// A hint for the operator.
    pub fn hint(&self) -> &'static str {
        match self {
            IngestError::Generator(_) => "fix the source's load generator options",
            IngestError::Connector(
                ConnectorError::UnknownKind { .. } | ConnectorError::DuplicateKind { .. },
            ) => "register the connector with the replica, or run a replica that has it",
            IngestError::Connector(ConnectorError::InvalidConfig { .. }) => {
                "fix the source's connector settings"
            }
            IngestError::Connector(_) | IngestError::ReadFailed { .. } => {
                "the replica retries; check the source's upstream"
            }
            IngestError::UnknownOutput { .. } => {
                "recreate the source with subsources its connector has"
            }
            IngestError::CannotReplay { .. } => {
                "drop the source and create it again with all its subsources"
            }
            IngestError::MissingMetadata { .. } | IngestError::SchemaMismatch { .. } => {
                "recreate the source so its collections match the generator's outputs"
            }
            IngestError::Shard(_) => "the replica retries; check the persist location",
            IngestError::Remap(_) | IngestError::Inconsistent { .. } => {
                "the replica retries; if this persists the shards were written by something else"
            }
        }
    }
}

fn columns(desc: &strata_controller_api::RelationDesc) -> String {
    let cols: Vec<String> = desc
        .columns()
        .map(|(name, typ)| {
            format!(
                "{name} {:?}{}",
                typ.scalar_type,
                if typ.nullable { "?" } else { "" }
            )
        })
        .collect();
    format!("({})", cols.join(", "))
}

/// A collection an ingestion writes, with the output it receives and its schema.
pub(crate) type Expected = (GlobalId, SourceOutput, RelationDesc);

/// Checks that a connector has every output the collections expect, with their schemas.
pub(crate) fn check_outputs(
    kind: &str,
    outputs: &[(SourceOutput, RelationDesc)],
    expected: &[Expected],
) -> Result<(), IngestError> {
    for (id, output, desc) in expected {
        let produced = outputs
            .iter()
            .find(|(name, _)| name == output)
            .map(|(_, desc)| desc)
            .ok_or_else(|| IngestError::UnknownOutput {
                kind: kind.to_owned(),
                output: output.clone(),
            })?;
        if desc != produced {
            return Err(IngestError::SchemaMismatch {
                id: *id,
                shard: columns(desc),
                produced: columns(produced),
            });
        }
    }
    Ok(())
}

/// Validates an ingestion command into a plan, with its connector from `registry`. A
/// connector that cannot be built because its upstream failed is planned as a
/// [`deferred::Deferred`] one, built again at each reader open.
pub(crate) fn plan_ingestion(
    cmd: &RunIngestionCommand<strata_controller_api::Timestamp>,
    registry: &ConnectorRegistry,
) -> Result<IngestionPlan, IngestError> {
    let mut wanted = cmd.description.source_exports.clone();
    if cmd.storage_metadata.contains_key(&cmd.id) {
        wanted.entry(cmd.id).or_insert(SourceOutput::Primary);
    }
    let mut exports = Vec::new();
    let mut expected = Vec::new();
    for (id, output) in wanted {
        let meta = cmd
            .storage_metadata
            .get(&id)
            .ok_or(IngestError::MissingMetadata { id })?;
        exports.push(ExportTarget {
            id,
            shard: meta.data_shard,
            output: output.clone(),
        });
        expected.push((id, output, meta.relation_desc.clone()));
    }
    let connection = &cmd.description.connection;
    let connector = match registry.source(connection) {
        Ok(connector) => {
            check_outputs(connector.kind(), &connector.outputs(), &expected)?;
            connector
        }
        Err(e @ ConnectorError::Upstream { .. }) => {
            tracing::info!(
                collection = %cmd.id,
                error = %e,
                "the source's upstream failed while planning; the reader builds it on open"
            );
            Arc::new(deferred::Deferred::new(
                registry.clone(),
                connection.clone(),
                expected,
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let remap_id = cmd.description.remap_collection_id;
    let remap_shard = cmd
        .storage_metadata
        .get(&remap_id)
        .map(|m| m.data_shard)
        .or_else(|| cmd.storage_metadata.values().find_map(|m| m.remap_shard))
        .ok_or(IngestError::MissingMetadata { id: remap_id })?;
    Ok(IngestionPlan {
        id: cmd.id,
        pacing: connector.pacing(),
        connector,
        exports,
        remap_id,
        remap_shard,
    })
}
