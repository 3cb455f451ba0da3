//! Tunables of a [`PersistClient`](crate::PersistClient).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A wall clock in milliseconds since the Unix epoch; injectable for lease tests.
pub type NowFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system wall clock.
pub fn system_now() -> NowFn {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// Tunables. `PersistConfig::default()` suits production; tests shorten leases and
/// grace periods.
#[derive(Clone)]
pub struct PersistConfig {
    /// How long a leased reader's hold lasts without a heartbeat.
    pub reader_lease: Duration,
    /// How long a writer's registration lasts without a heartbeat or an append.
    pub writer_lease: Duration,
    /// Whether handles renew their leases from a background task (every lease / 4).
    pub heartbeat_in_background: bool,
    /// Batches whose encoded updates are at most this many bytes live inline in the state.
    pub inline_threshold_bytes: u64,
    /// A batch is inlined only while the state's inline updates stay at or below this
    /// many bytes with it, and compaction moves inline updates to parts beyond it, so
    /// every state (and every CAS, which rewrites it) stays small.
    pub max_inline_state_bytes: u64,
    /// Parts at least this many bytes are read as two concurrent range requests, each
    /// half decoded on its own thread as it arrives.
    pub split_fetch_bytes: u64,
    /// Appends of more (estimated) bytes than this are written as several parts of about
    /// this size (at most `part::MAX_PARTS_PER_APPEND`, larger parts beyond that), each
    /// coded while the ones before it upload (compaction writes one part).
    pub append_part_bytes: u64,
    /// Compaction starts in the background when a shard has more batches than this.
    pub compaction_trigger_batches: usize,
    /// Whether appends start compaction and GC in the background.
    pub background_maintenance: bool,
    /// An unreferenced part of an unregistered writer younger than this is kept: it may
    /// be about to be linked.
    pub orphan_grace: Duration,
    /// How many conflicting CAS attempts an operation makes before giving up.
    pub cas_attempts: usize,
    /// How many times a failed storage call is retried.
    pub io_attempts: usize,
    /// How often a waiter re-reads the state when no local write wakes it.
    pub poll_interval: Duration,
    /// The wall clock used for leases.
    pub now: NowFn,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            reader_lease: Duration::from_secs(60),
            writer_lease: Duration::from_secs(60),
            heartbeat_in_background: true,
            inline_threshold_bytes: 4096,
            max_inline_state_bytes: 32 << 10,
            split_fetch_bytes: 4 << 20,
            append_part_bytes: 512 << 10,
            compaction_trigger_batches: 8,
            background_maintenance: true,
            orphan_grace: Duration::from_secs(60),
            cas_attempts: 200,
            io_attempts: 8,
            poll_interval: Duration::from_millis(25),
            now: system_now(),
        }
    }
}

impl fmt::Debug for PersistConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistConfig")
            .field("reader_lease", &self.reader_lease)
            .field("writer_lease", &self.writer_lease)
            .field("heartbeat_in_background", &self.heartbeat_in_background)
            .field("inline_threshold_bytes", &self.inline_threshold_bytes)
            .field("max_inline_state_bytes", &self.max_inline_state_bytes)
            .field("split_fetch_bytes", &self.split_fetch_bytes)
            .field("append_part_bytes", &self.append_part_bytes)
            .field(
                "compaction_trigger_batches",
                &self.compaction_trigger_batches,
            )
            .field("background_maintenance", &self.background_maintenance)
            .field("orphan_grace", &self.orphan_grace)
            .field("cas_attempts", &self.cas_attempts)
            .field("io_attempts", &self.io_attempts)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl PersistConfig {
    /// Settings for deterministic tests: no background tasks, no orphan grace.
    pub fn for_tests() -> Self {
        PersistConfig {
            heartbeat_in_background: false,
            background_maintenance: false,
            orphan_grace: Duration::ZERO,
            ..PersistConfig::default()
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        (self.now)()
    }
}
