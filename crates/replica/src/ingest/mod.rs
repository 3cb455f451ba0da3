//! Ingestions: load-generator sources written to data shards with exactly-once remap
//! bindings.
//!
//! # Dataflow
//!
//! One timely dataflow per ingestion, timestamped by *round* number:
//! 1. **leader** (a source operator; only worker 0 keeps its capability) mints the
//!    next binding in the remap shard, or replays a bound round after a restart
//!    (`leader::Leader`), and sends the round to every worker;
//! 2. **generate** (every worker) produces and encodes the updates of the round's
//!    offsets `o` with `o % peers == worker index`, and exchanges them to worker 0;
//! 3. **commit** (worker 0) waits until the round's timely time is complete, then
//!    writes the round with one `compare_and_append` per data shard
//!    (`commit::commit_round`) and wakes the leader. A round whose data shards are
//!    already beyond it (a duplicate after a resync) is skipped.
//!
//! Up to two rounds are in flight: the leader mints round `n + 1` while round `n` is
//! generated and committed, so the other workers generate while worker 0 commits.
//! Rounds commit in order, each after its binding is minted; a failed commit abandons
//! the rounds behind it, and the leader replays them from the remap shard. Under load (no tick interval, or behind schedule) a round binds
//! up to `ReplicaConfig::max_ticks_per_round` ticks' worth of offsets, so its fixed
//! cost (two serial `compare_and_append`s and a timely round trip) covers more rows.
//! Nothing is minted or written before `AllowWrites`.

pub(crate) mod commit;
pub(crate) mod dataflow;
pub(crate) mod leader;

use strata_controller_api::{GlobalId, ShardId, SourceConnection, SourceOutput};
use strata_instance_client::RunIngestionCommand;

use crate::generator::{Generator, GeneratorError};
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
#[derive(Debug, Clone)]
pub(crate) struct IngestionPlan {
    pub(crate) id: GlobalId,
    pub(crate) generator: Generator,
    pub(crate) exports: Vec<ExportTarget>,
    pub(crate) remap_id: GlobalId,
    pub(crate) remap_shard: ShardId,
    pub(crate) offsets_per_tick: u64,
    pub(crate) tick_interval_ms: u64,
}

/// Why an ingestion cannot run or stopped making progress.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The load generator configuration is invalid.
    #[error("invalid source: {0}")]
    Generator(#[from] GeneratorError),
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

/// Validates an ingestion command into a plan.
pub(crate) fn plan_ingestion(
    cmd: &RunIngestionCommand<strata_controller_api::Timestamp>,
) -> Result<IngestionPlan, IngestError> {
    let generator = Generator::new(&cmd.description.connection)?;
    let SourceConnection::LoadGenerator {
        offsets_per_tick,
        tick_interval_ms,
        ..
    } = &cmd.description.connection;
    let mut exports = Vec::new();
    let mut wanted = cmd.description.source_exports.clone();
    if cmd.storage_metadata.contains_key(&cmd.id) {
        wanted.entry(cmd.id).or_insert(SourceOutput::Primary);
    }
    for (id, output) in wanted {
        let source_desc = generator.output_desc(&output)?;
        let meta = cmd
            .storage_metadata
            .get(&id)
            .ok_or(IngestError::MissingMetadata { id })?;
        if meta.relation_desc != source_desc {
            return Err(IngestError::SchemaMismatch {
                id,
                shard: columns(&meta.relation_desc),
                produced: columns(&source_desc),
            });
        }
        exports.push(ExportTarget {
            id,
            shard: meta.data_shard,
            output,
        });
    }
    let remap_id = cmd.description.remap_collection_id;
    let remap_shard = cmd
        .storage_metadata
        .get(&remap_id)
        .map(|m| m.data_shard)
        .or_else(|| cmd.storage_metadata.values().find_map(|m| m.remap_shard))
        .ok_or(IngestError::MissingMetadata { id: remap_id })?;
    Ok(IngestionPlan {
        id: cmd.id,
        generator,
        exports,
        remap_id,
        remap_shard,
        offsets_per_tick: *offsets_per_tick,
        tick_interval_ms: *tick_interval_ms,
    })
}
