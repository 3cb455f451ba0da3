//! The sink half of the connector API: what a destination implements so that the
//! replica can export a collection to it exactly once.
//!
//! # Division of labour
//!
//! The replica reads the sink's input (a snapshot at `as_of` if asked, then every
//! update after it, batch by batch) and owns progress: it asks the destination where
//! it durably is ([`SinkWriter::recover`]), hands it one batch of a time range at a
//! time, and reports the sink's upper only once the destination says the batch is
//! durable. The destination only has to make a batch's data and its progress durable
//! together: after [`SinkWriter::commit`] of a batch, `recover` returns the batch's
//! upper; before it, or after a crash between [`SinkWriter::write`] and `commit`,
//! `recover` returns the batch's lower and no trace of the batch is visible to readers
//! of the destination.

use strata_controller_api::{Antichain, GlobalId, RelationDesc, Row, Timestamp};

use super::ConnectorError;

/// One batch of a sink's input: every update at a time in `[lower, upper)`.
#[derive(Debug, Clone, Copy)]
pub struct SinkBatch<'a> {
    /// The first time the batch covers (0 for the snapshot).
    pub lower: Timestamp,
    /// The batch holds every update before this; `[]` once the input is closed.
    pub upper: &'a Antichain<Timestamp>,
    /// The updates, each with its time.
    pub updates: &'a [(Row, Timestamp, i64)],
}

/// What [`SinkWriter::commit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkCommit {
    /// The batch is durable; the destination now holds everything before its upper.
    Committed,
    /// Another writer of the same sink (another replica) committed this range first;
    /// the batch was not applied, and the replica recovers before going on.
    LostRace,
}

/// What a sink writes to: a destination kind. Registered by kind in the
/// [`super::ConnectorRegistry`].
pub trait SinkConnector: Send + Sync {
    /// The connector's kind, for messages.
    fn kind(&self) -> &str;

    /// Opens the destination of sink `sink`, whose input has schema `desc`.
    fn open(
        &self,
        sink: GlobalId,
        desc: &RelationDesc,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError>;
}

/// An open destination, driven from one timely worker.
pub trait SinkWriter: Send {
    /// Where the destination durably is: every update of the input before the returned
    /// frontier (and at or after `start`) is in it, exactly once; `start` if it holds
    /// nothing yet; `[]` once a batch up to the closed input was committed. A writer
    /// also discards here anything a crash left half-written.
    fn recover(&mut self, start: Timestamp) -> Result<Antichain<Timestamp>, ConnectorError>;

    /// Writes `batch`'s data, not yet as progress: until [`commit`](Self::commit), a
    /// crash or a [`recover`](Self::recover) forgets it. Returns the bytes written, for
    /// the sink's statistics.
    fn write(&mut self, batch: &SinkBatch<'_>) -> Result<u64, ConnectorError>;

    /// Makes `batch` (just written) durable, with its progress, atomically.
    fn commit(&mut self, batch: &SinkBatch<'_>) -> Result<SinkCommit, ConnectorError>;
}
