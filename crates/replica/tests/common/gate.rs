//! [`ShardGate`]: a decorator over any [`Shards`] that refuses the writes of a window a
//! test forbids, at the moment they are made, and records them. The replica's crate
//! must not depend on testkit, so this is the shard-seam twin of testkit's
//! object-store `WriteGate`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use strata_controller_api::{Antichain, Certainty, RelationDesc, ShardId, Timestamp};
use strata_replica::shard::{
    ShardError, ShardReader, ShardSince, ShardWriter, Shards, Update, UpperMismatch,
};

/// Passes reads through always (and counts them), and writes (`compare_and_append`,
/// `downgrade_since`) only while allowed. Starts denying.
pub struct ShardGate {
    inner: Arc<dyn Shards>,
    allowed: AtomicBool,
    reads: AtomicU64,
    refused: Mutex<Vec<String>>,
}

impl ShardGate {
    /// Wraps `inner`, denying writes until [`ShardGate::allow`].
    pub fn new(inner: Arc<dyn Shards>) -> Arc<ShardGate> {
        Arc::new(ShardGate {
            inner,
            allowed: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            refused: Mutex::new(Vec::new()),
        })
    }

    /// From now on, lets writes through.
    pub fn allow(&self) {
        self.allowed.store(true, Ordering::SeqCst);
    }

    /// How many `snapshot` and `listen_from` calls went through so far: a running
    /// sink's polls, an observable count of its worker's rounds.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Panics, listing them, if any write was refused so far.
    #[track_caller]
    pub fn assert_nothing_refused(&self, what: &str) {
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            refused.is_empty(),
            "{} forbidden write(s) {what}: {}",
            refused.len(),
            refused.join(", ")
        );
    }

    /// `Err` (recorded) if writes are denied now.
    fn check(&self, op: &str, shard: ShardId) -> Result<(), ShardError> {
        if self.allowed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let write = format!("{op} {shard}");
        eprintln!("shard gate: forbidden write refused: {write}");
        self.refused
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(write.clone());
        Err(ShardError::Unavailable {
            shard,
            reason: format!("forbidden write refused: {write}"),
            certainty: Certainty::Determinate,
        })
    }
}

impl ShardWriter for ShardGate {
    fn register_schema(&self, shard: ShardId, desc: &RelationDesc) {
        self.inner.register_schema(shard, desc);
    }

    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError> {
        self.inner.upper(shard)
    }

    fn close(&self) {
        self.inner.close();
    }

    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError> {
        self.check("compare_and_append", shard)?;
        self.inner
            .compare_and_append(shard, updates, expected_upper, new_upper)
    }
}

impl ShardReader for ShardGate {
    fn snapshot(
        &self,
        shard: ShardId,
        as_of: Timestamp,
    ) -> Result<Option<Vec<Update>>, ShardError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.snapshot(shard, as_of)
    }

    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.listen_from(shard, lower)
    }
}

impl ShardSince for ShardGate {
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError> {
        self.check("downgrade_since", shard)?;
        self.inner.downgrade_since(shard, since)
    }

    fn release(&self, shard: ShardId) {
        self.inner.release(shard);
    }
}
