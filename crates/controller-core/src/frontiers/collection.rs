//! The frontier state of one registry entry, and the rules that move its implied
//! capabilities.

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, AntichainRef, ChangeBatch, GlobalId, InstanceId, MutableAntichain, ReadPolicy,
    StorageTimestamp,
};
use timely::PartialOrder;

/// The frontier state of one collection.
///
/// # Invariants
///
/// - `read_capabilities` counts, with multiplicity: the implied capability, the hold
///   capability, every outstanding external read hold, and the since of every
///   registered entry that lists this one as a dependency. Its frontier is the since.
/// - `external_holds` counts the external read holds alone, per time; every count is
///   positive, so a release can be checked against it before it is applied.
/// - `implied_capability` and `hold_capability` only advance; `[]` once dropped.
/// - `allowed_compaction` is the last frontier sent in `AllowCompaction` (or the
///   registration since), and only advances; `empty_compaction_sent` records that
///   `AllowCompaction([])` went out, which happens at most once.
/// - Outside a pass, `pending` is empty, `queued`, `upper_moved` and `derive_pending`
///   are false and `before` is `None`.
#[derive(Debug)]
pub(super) struct CollectionFrontierState<T> {
    pub(super) upper: Antichain<T>,
    pub(super) read_policy: ReadPolicy<T>,
    pub(super) implied_capability: Antichain<T>,
    pub(super) hold_policy: Option<ReadPolicy<T>>,
    pub(super) hold_capability: Antichain<T>,
    pub(super) read_capabilities: MutableAntichain<T>,
    pub(super) external_holds: BTreeMap<T, i64>,
    pub(super) dependencies: Vec<GlobalId>,
    pub(super) instance: Option<InstanceId>,
    pub(super) has_shard: bool,
    pub(super) dropped: bool,
    pub(super) drop_confirmed: bool,
    pub(super) empty_compaction_sent: bool,
    pub(super) allowed_compaction: Antichain<T>,
    /// Changes queued by the current pass, not yet applied.
    pub(super) pending: ChangeBatch<T>,
    /// Whether the current pass has this id in its queue.
    pub(super) queued: bool,
    /// The since and upper before the current pass touched this entry.
    pub(super) before: Option<(Antichain<T>, Antichain<T>)>,
    /// Whether the current pass advanced the upper already.
    pub(super) upper_moved: bool,
    /// Whether the implied capabilities wait for the end of the pass to follow the
    /// upper (it advanced more than once in the pass; see `advance_upper`).
    pub(super) derive_pending: bool,
}

impl<T: StorageTimestamp> CollectionFrontierState<T> {
    /// The since: the lower bound of every read capability.
    pub(super) fn since(&self) -> AntichainRef<'_, T> {
        self.read_capabilities.frontier()
    }

    /// Re-derives both implied capabilities from the upper, and returns the change to
    /// the read capabilities. A policy's advice only ever advances a capability.
    ///
    /// A shard-less entry (a sink) whose upper is `[]` is complete: it will read
    /// nothing more, so both capabilities go to `[]` and it stops holding its input.
    /// (A policy alone would keep them: it gives no advice for a closed upper, since a
    /// complete collection with a shard stays readable.)
    pub(super) fn rederive_capabilities(&mut self) -> ChangeBatch<T> {
        let mut changes = ChangeBatch::new();
        let complete = !self.has_shard && self.upper.is_empty();
        let advise = |policy: &ReadPolicy<T>| {
            if complete {
                Antichain::new()
            } else {
                policy.frontier(self.upper.borrow())
            }
        };
        let advice = advise(&self.read_policy);
        let hold_advice = self.hold_policy.as_ref().map(advise);
        advance(&mut self.implied_capability, advice, &mut changes);
        if let Some(advice) = hold_advice {
            advance(&mut self.hold_capability, advice, &mut changes);
        }
        changes
    }

    /// Marks the entry dropped: both policies release through the empty frontier.
    /// Returns the change to the read capabilities.
    pub(super) fn release_policies(&mut self) -> ChangeBatch<T> {
        let mut changes = ChangeBatch::new();
        self.dropped = true;
        self.read_policy = ReadPolicy::ValidFrom(Antichain::new());
        self.hold_policy = None;
        advance(&mut self.implied_capability, Antichain::new(), &mut changes);
        advance(&mut self.hold_capability, Antichain::new(), &mut changes);
        changes
    }

    /// Checks a change to the external holds without applying it.
    pub(super) fn check_hold_change(&self, time: &T, diff: i64) -> Result<(), HoldChangeError> {
        if diff > 0 && !self.since().less_equal(time) {
            return Err(HoldChangeError::BeforeSince);
        }
        let count = self.external_holds.get(time).copied().unwrap_or(0);
        match count.checked_add(diff) {
            Some(n) if n < 0 => Err(HoldChangeError::Unmatched),
            Some(n) if n <= MAX_HOLDS => Ok(()),
            _ => Err(HoldChangeError::TooMany),
        }
    }

    /// Applies a change to the external holds that [`Self::check_hold_change`] allowed.
    pub(super) fn record_hold_change(&mut self, time: T, diff: i64) {
        let count = self.external_holds.entry(time).or_insert(0);
        *count += diff;
        if *count == 0 {
            self.external_holds.remove(&time);
        }
    }

    /// The `AllowCompaction` to send now, if any, recorded as sent: after a drop, `[]`
    /// unless it went out already (even if the since was already `[]` at registration,
    /// since the replicas must learn of the drop); otherwise the since when it advanced
    /// past the last frontier sent.
    pub(super) fn take_compaction(&mut self) -> Option<(InstanceId, Antichain<T>)> {
        let instance = self.instance?;
        let frontier = if self.dropped {
            if self.empty_compaction_sent {
                return None;
            }
            Antichain::new()
        } else {
            let since = self.since().to_owned();
            let advanced = since != self.allowed_compaction
                && PartialOrder::less_equal(&self.allowed_compaction, &since);
            if !advanced {
                return None;
            }
            since
        };
        self.empty_compaction_sent = frontier.is_empty();
        self.allowed_compaction.clone_from(&frontier);
        Some((instance, frontier))
    }

    /// Whether the entry can be forgotten and its shard finalized.
    pub(super) fn finalizable(&self) -> bool {
        self.dropped && self.since().is_empty() && (self.instance.is_none() || self.drop_confirmed)
    }
}

/// Why an external hold change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HoldChangeError {
    /// A new hold at a time before the since.
    BeforeSince,
    /// A release without a matching hold.
    Unmatched,
    /// More holds at one time than the counts can carry.
    TooMany,
}

/// The most external holds at one time. The bound leaves room in the `i64` counts of
/// the read capabilities for the implied capabilities and the dependents' holds, so a
/// caller's batch can never overflow them.
pub(super) const MAX_HOLDS: i64 = i64::MAX / 4;

/// Replaces `capability` with `advice` if that advances it, recording the change.
fn advance<T: StorageTimestamp>(
    capability: &mut Antichain<T>,
    advice: Antichain<T>,
    changes: &mut ChangeBatch<T>,
) {
    if advice == *capability || !PartialOrder::less_equal(capability, &advice) {
        return;
    }
    changes.extend(advice.iter().map(|t| (*t, 1)));
    changes.extend(capability.iter().map(|t| (*t, -1)));
    *capability = advice;
}
