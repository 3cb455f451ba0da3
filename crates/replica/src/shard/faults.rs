//! [`Faulty`]: a decorator over any [`Shards`](super::Shards) that fails operations at
//! pseudo-random points, for crash and restart tests.
//!
//! A failed `compare_and_append` is sometimes *indeterminate after the fact*: the append
//! reaches the inner backend and the caller still sees an error, which is the case that
//! breaks naive retry logic. Reads and upper probes fail determinately.

use std::sync::{Arc, Mutex};

use strata_controller_api::rng::SplitMix64;
use strata_controller_api::{Antichain, Certainty, ShardId, Timestamp};

use super::{ShardError, ShardReader, ShardSince, ShardWriter, Update, UpperMismatch};

#[derive(Debug)]
struct FaultState {
    rng: SplitMix64,
    countdown: u64,
    mean_gap: u64,
    enabled: bool,
    injected: u64,
}

impl FaultState {
    /// Whether this operation fails; if so, whether an append still takes effect.
    fn roll(&mut self) -> Option<bool> {
        if !self.enabled {
            return None;
        }
        if self.countdown > 0 {
            self.countdown -= 1;
            return None;
        }
        self.countdown = self.rng.below(2 * self.mean_gap.max(1));
        self.injected += 1;
        Some(self.rng.below(2) == 0)
    }
}

/// Shards that fail every so often. Clones share the fault schedule.
#[derive(Debug, Clone)]
pub struct Faulty<S> {
    inner: S,
    state: Arc<Mutex<FaultState>>,
}

impl<S> Faulty<S> {
    /// Wraps `inner`; on average one operation in `mean_gap` fails, chosen by `seed`.
    pub fn new(inner: S, seed: u64, mean_gap: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let state = FaultState {
            countdown: rng.below(2 * mean_gap.max(1)),
            rng,
            mean_gap,
            enabled: true,
            injected: 0,
        };
        Faulty {
            inner,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Turns fault injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.enabled = enabled;
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().map(|s| s.injected).unwrap_or(0)
    }

    fn roll(&self) -> Option<bool> {
        self.state.lock().ok().and_then(|mut s| s.roll())
    }
}

fn injected(shard: ShardId, certainty: Certainty) -> ShardError {
    ShardError::Unavailable {
        shard,
        reason: "injected fault".to_owned(),
        certainty,
    }
}

impl<S: ShardWriter> ShardWriter for Faulty<S> {
    fn register_schema(&self, shard: ShardId, desc: &strata_controller_api::RelationDesc) {
        self.inner.register_schema(shard, desc);
    }

    fn upper(&self, shard: ShardId) -> Result<Antichain<Timestamp>, ShardError> {
        match self.roll() {
            Some(_) => Err(injected(shard, Certainty::Determinate)),
            None => self.inner.upper(shard),
        }
    }

    fn compare_and_append(
        &self,
        shard: ShardId,
        updates: &[Update],
        expected_upper: &Antichain<Timestamp>,
        new_upper: &Antichain<Timestamp>,
    ) -> Result<Result<(), UpperMismatch>, ShardError> {
        match self.roll() {
            None => self
                .inner
                .compare_and_append(shard, updates, expected_upper, new_upper),
            Some(applied) => {
                if applied {
                    // The outcome is lost, as after a timeout: only the error is seen.
                    let _ =
                        self.inner
                            .compare_and_append(shard, updates, expected_upper, new_upper);
                }
                Err(injected(shard, Certainty::Indeterminate))
            }
        }
    }
}

impl<S: ShardReader> ShardReader for Faulty<S> {
    fn snapshot(
        &self,
        shard: ShardId,
        as_of: Timestamp,
    ) -> Result<Option<Vec<Update>>, ShardError> {
        match self.roll() {
            Some(_) => Err(injected(shard, Certainty::Determinate)),
            None => self.inner.snapshot(shard, as_of),
        }
    }

    fn listen_from(
        &self,
        shard: ShardId,
        lower: Timestamp,
    ) -> Result<(Vec<Update>, Antichain<Timestamp>), ShardError> {
        match self.roll() {
            Some(_) => Err(injected(shard, Certainty::Determinate)),
            None => self.inner.listen_from(shard, lower),
        }
    }
}

impl<S: ShardSince> ShardSince for Faulty<S> {
    fn downgrade_since(
        &self,
        shard: ShardId,
        since: &Antichain<Timestamp>,
    ) -> Result<(), ShardError> {
        self.inner.downgrade_since(shard, since)
    }

    fn release(&self, shard: ShardId) {
        self.inner.release(shard);
    }
}
