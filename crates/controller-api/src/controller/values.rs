//! Plain values the controller traits take and return: frontiers, statistics, responses,
//! status, replica locations, and the future and stream types of asynchronous results.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use timely::progress::Antichain;

use crate::error::StorageError;
use crate::ids::{GlobalId, ReplicaId};
use crate::row::Row;
use crate::timestamp::Timestamp;

/// Table writes: for each table, rows with their diffs. The controller picks no time;
/// the caller passes `write_ts` alongside.
pub type TableWrite = Vec<(GlobalId, Vec<(Row, i64)>)>;

/// Resolves when a write is durable (`Ok`) or has failed. It does not borrow the
/// controller, so the caller may await it while it keeps using the controller.
pub type AppendFuture<T = Timestamp> = BoxFuture<'static, Result<(), StorageError<T>>>;

/// Resolves to the consolidated contents of a collection at one time: every row whose
/// accumulated diff is not zero, with that diff.
pub type SnapshotFuture<T = Timestamp> =
    BoxFuture<'static, Result<Vec<(Row, i64)>, StorageError<T>>>;

/// A snapshot delivered in chunks, so a large collection need not fit in memory at once.
/// The chunks are not consolidated with each other; consolidating their concatenation
/// gives what [`SnapshotFuture`] gives for the same `as_of`.
pub type SnapshotCursor<T = Timestamp> =
    BoxStream<'static, Result<Vec<(Row, i64)>, StorageError<T>>>;

/// Resolves to a real-time recency timestamp: a time at which every update the upstream
/// systems had committed when the request was made is visible.
pub type RtrFuture<T = Timestamp> = BoxFuture<'static, Result<T, StorageError<T>>>;

/// The frontiers of one collection, as the controller tracks them.
///
/// # Invariant
///
/// `since` is the lower bound of `implied_capability` and every outstanding
/// [`ReadHold`](crate::ReadHold), so it is never beyond `implied_capability`; it is the
/// collection's effective since. `implied_capability` follows `upper` according
/// to the collection's [`ReadPolicy`](crate::ReadPolicy), and only moves forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionFrontiers<T = Timestamp> {
    /// The collection.
    pub id: GlobalId,
    /// The upper: every update at a time not beyond it is final.
    pub upper: Antichain<T>,
    /// The since the collection's read policy allows.
    pub implied_capability: Antichain<T>,
    /// The frontier of all read capabilities: the since actually in force.
    pub since: Antichain<T>,
}

/// Statistics about a snapshot, cheap to compute from shard metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// An upper bound on the number of updates (not rows after consolidation) the
    /// snapshot reads: every update of every batch that starts at or before the as_of,
    /// so updates at later times in those batches, and updates that consolidate away,
    /// are counted too. Never less than the updates the snapshot reads.
    pub num_updates: u64,
}

/// The parts a snapshot reads, for a planner deciding how to read it. Their
/// `num_updates` add up to [`SnapshotStats::num_updates`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotPartsStats {
    /// One entry per blob part, in the order a cursor reads them, plus one per batch
    /// whose updates are stored inline in the shard's state.
    pub parts: Vec<SnapshotPartStats>,
}

/// One part of [`SnapshotPartsStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotPartStats {
    /// The part's key relative to the location, or `None` for updates stored inline.
    pub key: Option<String>,
    /// Its encoded size in bytes.
    pub encoded_size_bytes: u64,
    /// How many updates it holds (an upper bound on those the snapshot reads from it).
    pub num_updates: u64,
}

/// The status of a source or sink on a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Created, not yet producing.
    Starting,
    /// Producing normally.
    Running,
    /// Paused, for example because its instance has no replicas.
    Paused,
    /// Failing; it keeps retrying.
    Stalled,
    /// Dropped; no further status follows.
    Dropped,
}

impl Status {
    /// The lower-case name used in the status-history collections.
    ///
    /// # Examples
    ///
    /// ```
    /// use strata_controller_api::Status;
    /// assert_eq!(Status::Stalled.as_str(), "stalled");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stalled => "stalled",
            Status::Dropped => "dropped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status change of a source or sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusUpdate {
    /// The source or sink.
    pub id: GlobalId,
    /// The replica that reported it; `None` when the controller itself decided it.
    pub replica_id: Option<ReplicaId>,
    /// The new status.
    pub status: Status,
    /// When it changed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The error that caused a [`Status::Stalled`], if any.
    pub error: Option<String>,
    /// Suggestions for an operator on how to resolve the error.
    pub hints: Vec<String>,
}

/// What [`Lifecycle::process`](crate::Lifecycle::process) reports to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageResponse<T = Timestamp> {
    /// The uppers of these collections or exports advanced.
    FrontierUpdates(Vec<(GlobalId, Antichain<T>)>),
    /// These collections or exports are gone on every replica that ran them.
    DroppedIds(BTreeSet<GlobalId>),
    /// Sources or sinks changed status.
    StatusUpdates(Vec<StatusUpdate>),
}

/// Where a replica runs and how to reach it. Opaque to everything but the transports.
#[derive(Clone, PartialEq, Eq)]
pub enum ReplicaLocation {
    /// A replica in this process, on `workers` timely workers, over local channels.
    InProcess {
        /// The number of timely workers.
        workers: usize,
    },
    /// A replica server reached over gRPC.
    Grpc {
        /// The server address, such as `http://127.0.0.1:2100`.
        addr: String,
        /// Whether to use TLS.
        tls: bool,
        /// A bearer token to present, if the server requires one.
        token: Option<String>,
    },
}

impl fmt::Debug for ReplicaLocation {
    /// Shows everything but the token, which is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaLocation::InProcess { workers } => f
                .debug_struct("InProcess")
                .field("workers", workers)
                .finish(),
            ReplicaLocation::Grpc { addr, tls, token } => f
                .debug_struct("Grpc")
                .field("addr", addr)
                .field("tls", tls)
                .field("token", &token.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// How to run a replica, passed to [`Instances::connect_replica`](crate::Instances::connect_replica).
///
/// # Examples
///
/// ```
/// use strata_controller_api::{ReplicaConfig, ReplicaLocation};
/// let config = ReplicaConfig {
///     location: ReplicaLocation::Grpc { addr: "http://r1:2100".into(), tls: true, token: Some("secret".into()) },
/// };
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// Where the replica runs.
    pub location: ReplicaLocation,
}

/// An append-only writer to one collection (a webhook or an append-only introspection
/// collection). Cheap to clone; it does not borrow the controller.
///
/// # Contract
///
/// Each call to [`MonotonicAppender::append`] writes all its updates at one time the
/// appender chooses, atomically, after every earlier append of the same appender. Every
/// diff must be positive; otherwise the future fails with
/// [`StorageError::InvalidUsage`] and nothing is written.
#[derive(Clone)]
pub struct MonotonicAppender<T = Timestamp> {
    id: GlobalId,
    append: AppendFn<T>,
}

/// The function behind a [`MonotonicAppender`].
pub type AppendFn<T = Timestamp> = Arc<dyn Fn(Vec<(Row, i64)>) -> AppendFuture<T> + Send + Sync>;

impl<T> MonotonicAppender<T> {
    /// An appender to `id` that writes through `append`.
    pub fn new(id: GlobalId, append: AppendFn<T>) -> Self {
        MonotonicAppender { id, append }
    }

    /// The collection this appender writes.
    pub fn id(&self) -> GlobalId {
        self.id
    }

    /// Appends `updates`; see the type's contract.
    pub fn append(&self, updates: Vec<(Row, i64)>) -> AppendFuture<T> {
        (self.append)(updates)
    }
}

impl<T> fmt::Debug for MonotonicAppender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonotonicAppender")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::Datum;

    #[test]
    fn status_names() {
        for (status, name) in [
            (Status::Starting, "starting"),
            (Status::Running, "running"),
            (Status::Paused, "paused"),
            (Status::Stalled, "stalled"),
            (Status::Dropped, "dropped"),
        ] {
            assert_eq!(status.as_str(), name);
            assert_eq!(status.to_string(), name);
        }
    }

    #[test]
    fn replica_location_debug_redacts_the_token() {
        let with = ReplicaLocation::Grpc {
            addr: "http://a:1".into(),
            tls: false,
            token: Some("hunter2".into()),
        };
        let text = format!("{with:?}");
        assert!(
            text.contains("http://a:1") && text.contains("redacted") && !text.contains("hunter2"),
            "{text}"
        );
        let without = ReplicaLocation::Grpc {
            addr: "http://a:1".into(),
            tls: false,
            token: None,
        };
        assert!(format!("{without:?}").contains("None"));
        assert_eq!(
            format!("{:?}", ReplicaLocation::InProcess { workers: 2 }),
            "InProcess { workers: 2 }"
        );
    }

    #[test]
    fn monotonic_appender_calls_its_function() {
        let appender: MonotonicAppender = MonotonicAppender::new(
            GlobalId::User(3),
            Arc::new(|updates: Vec<(Row, i64)>| {
                let ok = updates.iter().all(|(_, d)| *d > 0);
                Box::pin(async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(StorageError::InvalidUsage("negative diff".into()))
                    }
                })
            }),
        );
        let row = Row::pack(&[Datum::Int64(1)]);
        assert_eq!(appender.id(), GlobalId::User(3));
        assert!(futures::executor::block_on(appender.append(vec![(row.clone(), 1)])).is_ok());
        assert!(futures::executor::block_on(appender.clone().append(vec![(row, -1)])).is_err());
        assert!(format!("{appender:?}").contains("User(3)"));
    }
}
