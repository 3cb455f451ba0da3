//! Deterministic load generators; the replica runs them as the built-in
//! [`crate::connector::builtin::LOAD_GENERATOR`] connector.
//!
//! A generator maps a source *offset* to the updates that offset contributes, as a pure
//! function of its configuration and the offset. That is what makes exactly-once
//! ingestion possible: the remap shard binds offsets to timestamps, and a restarted
//! source regenerates the offsets past its data shard's upper without consulting any
//! other state.
//!
//! Every generator has the primary output and, for the auction generator, the named
//! outputs `auctions` and `bids` (the ingestion's exports, i.e. subsources).

mod auction;
mod counter;
mod key_value;

use strata_controller_api::{LoadGenerator, RelationDesc, Row, SourceConnection, SourceOutput};

pub use auction::{AUCTIONS, BIDS};

/// One update a generator emits: which output, the row and its multiplicity.
pub type GeneratedUpdate = (SourceOutput, Row, i64);

/// A configuration the replica cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// The ingestion asks for an output this generator does not have.
    #[error("load generator {generator} has no output {output:?}")]
    UnknownOutput {
        /// The generator's name.
        generator: &'static str,
        /// The output that was asked for.
        output: SourceOutput,
    },
    /// A parameter is out of range.
    #[error("invalid load generator parameter: {0}")]
    InvalidParameter(&'static str),
    /// A setting of a `load-generator` connector configuration is missing or malformed.
    #[error("invalid load generator setting {setting:?}: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The connection is a connector of another kind.
    #[error("a {kind} connector is not a load generator")]
    NotALoadGenerator {
        /// The connection's kind.
        kind: String,
    },
}

/// A deterministic source of updates, addressed by offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generator {
    kind: LoadGenerator,
    seed: u64,
    offsets_per_tick: u64,
    tick_interval_ms: u64,
}

impl Generator {
    /// The generator a connection describes, validated: a
    /// [`SourceConnection::LoadGenerator`], or a connector of kind
    /// [`crate::connector::builtin::LOAD_GENERATOR`] whose settings say the same (see
    /// [`crate::connector::builtin::load_generator_connection`]).
    pub fn new(connection: &SourceConnection) -> Result<Generator, GeneratorError> {
        let typed;
        let connection = match connection {
            SourceConnection::Connector(config) => {
                typed = crate::connector::builtin::load_generator_connection(config)?;
                &typed
            }
            SourceConnection::LoadGenerator { .. } => connection,
        };
        let SourceConnection::LoadGenerator {
            generator,
            seed,
            offsets_per_tick,
            tick_interval_ms,
        } = connection
        else {
            return Err(GeneratorError::InvalidParameter("not a load generator"));
        };
        if *offsets_per_tick == 0 {
            return Err(GeneratorError::InvalidParameter(
                "offsets_per_tick must be positive",
            ));
        }
        if let LoadGenerator::KeyValue { keys: 0 } = generator {
            return Err(GeneratorError::InvalidParameter(
                "key-value generator needs at least one key",
            ));
        }
        Ok(Generator {
            kind: generator.clone(),
            seed: *seed,
            offsets_per_tick: *offsets_per_tick,
            tick_interval_ms: *tick_interval_ms,
        })
    }

    /// Offsets per tick.
    pub fn offsets_per_tick(&self) -> u64 {
        self.offsets_per_tick
    }

    /// Milliseconds between ticks.
    pub fn tick_interval_ms(&self) -> u64 {
        self.tick_interval_ms
    }

    /// The generator's name, for errors and status messages.
    pub fn name(&self) -> &'static str {
        match self.kind {
            LoadGenerator::Counter { .. } => "counter",
            LoadGenerator::Auction => "auction",
            LoadGenerator::KeyValue { .. } => "key-value",
        }
    }

    /// Every output with its schema, primary first.
    pub fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        match &self.kind {
            LoadGenerator::Counter { .. } => vec![(SourceOutput::Primary, counter::desc())],
            LoadGenerator::Auction => auction::outputs(),
            LoadGenerator::KeyValue { .. } => vec![(SourceOutput::Primary, key_value::desc())],
        }
    }

    /// The schema of one output, or an error if the generator does not have it.
    pub fn output_desc(&self, output: &SourceOutput) -> Result<RelationDesc, GeneratorError> {
        self.outputs()
            .into_iter()
            .find(|(name, _)| name == output)
            .map(|(_, desc)| desc)
            .ok_or_else(|| GeneratorError::UnknownOutput {
                generator: self.name(),
                output: output.clone(),
            })
    }

    /// The number of offsets the generator ever produces, if it is finite: a counter
    /// with `max_ticks` stops after that many ticks of `offsets_per_tick` offsets.
    pub fn offset_limit(&self) -> Option<u64> {
        match self.kind {
            LoadGenerator::Counter { max_ticks } => {
                max_ticks.map(|ticks| ticks.saturating_mul(self.offsets_per_tick))
            }
            LoadGenerator::Auction | LoadGenerator::KeyValue { .. } => None,
        }
    }

    /// The updates offset `offset` contributes, in a fixed order.
    pub fn updates_at(&self, offset: u64) -> Vec<GeneratedUpdate> {
        if self.offset_limit().is_some_and(|limit| offset >= limit) {
            return Vec::new();
        }
        match &self.kind {
            LoadGenerator::Counter { .. } => counter::updates_at(offset),
            LoadGenerator::Auction => auction::updates_at(self.seed, offset),
            LoadGenerator::KeyValue { keys } => key_value::updates_at(self.seed, *keys, offset),
        }
    }

    /// The updates of every offset in `offsets`, in offset order.
    pub fn updates_in(&self, offsets: std::ops::Range<u64>) -> Vec<GeneratedUpdate> {
        offsets.flat_map(|offset| self.updates_at(offset)).collect()
    }
}

/// A 64-bit mix of the seed and a stream position: cheap, stateless and well spread,
/// which is all a load generator needs.
pub(crate) use strata_controller_api::rng::mix_at as mix;

#[cfg(test)]
mod tests;
