//! [`SourceStatistics`] and [`SinkStatistics`]: the counters a replica keeps for each
//! source and sink it runs.
//!
//! A replica reports their current values (not deltas); the controller's introspection
//! consolidates reports per `(id, replica)` into the statistics collections.

/// A source's counters on one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStatistics {
    /// Messages read from upstream (counter).
    pub messages_received: u64,
    /// Bytes read from upstream (counter).
    pub bytes_received: u64,
    /// Updates staged for a write (counter).
    pub updates_staged: u64,
    /// Updates committed to the shard (counter).
    pub updates_committed: u64,
    /// Whether the initial snapshot is committed (gauge).
    pub snapshot_committed: bool,
    /// The latest upstream offset known, if the source knows one (gauge).
    pub offset_known: Option<u64>,
    /// The latest upstream offset committed, if any (gauge).
    pub offset_committed: Option<u64>,
}

/// A sink's counters on one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStatistics {
    /// Messages staged for a write (counter).
    pub messages_staged: u64,
    /// Messages committed to the sink's destination (counter).
    pub messages_committed: u64,
    /// Bytes staged for a write (counter).
    pub bytes_staged: u64,
    /// Bytes committed to the sink's destination (counter).
    pub bytes_committed: u64,
}
