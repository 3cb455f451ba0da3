//! Maintenance: compaction, garbage collection, finalization and inspection.
//!
//! **Compaction** keeps the number of batches logarithmic in the data: it merges
//! adjacent batches whenever an older one is not more than twice the size of what
//! follows it (a size-tiered spine), so each update is rewritten O(log n) times in
//! total. One step merges the newest pair out of shape together with the older batches
//! its output would put out of shape (`pick_merge`), so a cascade is one merge, and
//! does bounded work: at most [`MAX_MERGE_INPUTS`] batches, and older batches join only
//! while the inputs are below [`MAX_MERGE_BYTES`]. Times before the since are forwarded
//! to it (clamped into the batch), then updates are consolidated.
//!
//! **GC** deletes garbage parts that no reader's pinned version still references,
//! deletes orphan parts (uploaded but never linked) whose writer is no longer
//! registered and that are older than the grace period, deletes the staging files that
//! puts interrupted as long ago left in a local directory (the private `staging`
//! module), and truncates consensus versions below the head. What a crash interrupted
//! (a merge, an upload, a truncation) is finished or removed by the next run. It is
//! idempotent and safe to run concurrently: deleting a deleted key is a no-op, and
//! every state change goes through CAS.

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_controller_api::RelationDesc;

use crate::batch::{Layout, read_hollow, write_hollow};
use crate::blob;
use crate::cmds;
use crate::error::{PersistError, Result};
use crate::machine::Machine;
use crate::part::CodedUpdate;
use crate::paths::{ObjectKey, Prefix};
use crate::state::State;

/// What one GC run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Garbage parts deleted.
    pub deleted_parts: usize,
    /// Orphan parts deleted.
    pub deleted_orphans: usize,
    /// Consensus versions deleted.
    pub truncated_versions: usize,
    /// Staging files of interrupted puts deleted (local file locations only).
    pub deleted_staging: usize,
}

/// The most batches one merge takes.
pub const MAX_MERGE_INPUTS: usize = 16;

/// A merge takes no more older batches once its inputs reach this many bytes.
pub const MAX_MERGE_BYTES: u64 = 64 << 20;

/// The run of adjacent batches to merge next, or `None` when the spine is in shape:
/// every batch more than twice the size of its successor.
///
/// The run starts as the newest pair out of shape. Older batches join it while each is
/// at most twice the run's total so far (they would be out of shape next to its
/// output), up to [`MAX_MERGE_INPUTS`] batches and [`MAX_MERGE_BYTES`]: a cascade of
/// pairwise merges becomes one merge, one pair of CASes instead of one per level.
pub(crate) fn pick_merge(state: &State) -> Option<std::ops::Range<usize>> {
    if state.tombstone || state.batches.len() < 2 {
        return None;
    }
    let size = |i: usize| state.batches[i].bytes.max(state.batches[i].len);
    let newest = (0..state.batches.len() - 1)
        .rev()
        .find(|&i| size(i) <= 2 * size(i + 1))?;
    let end = newest + 2;
    let (mut start, mut total) = (newest, size(newest) + size(newest + 1));
    while start > 0
        && end - start < MAX_MERGE_INPUTS
        && total < MAX_MERGE_BYTES
        && size(start - 1) <= 2 * total
    {
        start -= 1;
        total += size(start);
    }
    Some(start..end)
}

/// Forwards times before `since` to it, clamped so they stay below `upper`.
pub fn forward_times(updates: &mut [CodedUpdate], since: Option<u64>, upper: Option<u64>) {
    let target = match (since, upper) {
        (Some(s), Some(u)) => s.min(u.saturating_sub(1)),
        (Some(s), None) => s,
        (None, Some(u)) => u.saturating_sub(1),
        (None, None) => return,
    };
    updates
        .iter_mut()
        .filter(|u| u.1 < target)
        .for_each(|u| u.1 = target);
}

fn schema_of(machine: &Machine, state: &State) -> Result<RelationDesc> {
    serde_json::from_str(&state.schema_json).map_err(|e| {
        PersistError::InvalidUsage(format!("shard {} has no usable schema: {e}", machine.shard))
    })
}

/// Merges one run of batches (see [`pick_merge`]). Returns whether there was work to do.
pub(crate) async fn compact_step(machine: &Machine) -> Result<bool> {
    let state = machine.fetch().await?;
    let Some(run) = pick_merge(&state) else {
        return Ok(false);
    };
    let desc = schema_of(machine, &state)?;
    let inputs = state.batches[run].to_vec();
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Ok(false);
    };
    let (lower, upper, first_since) = (first.lower, last.upper, first.since);
    let compactor = format!("compactor-{}", uuid::Uuid::new_v4().simple());
    let (lease, now) = (
        machine.cfg.writer_lease.as_millis() as u64,
        machine.cfg.now_ms(),
    );
    machine
        .apply_plain(|s: &State| cmds::register_writer(s, &compactor, lease, now))
        .await?;
    let merged = async {
        let mut updates = Vec::new();
        for b in &inputs {
            updates.extend(read_hollow(machine, &desc, b).await?);
        }
        forward_times(&mut updates, state.since, upper);
        let since = state.since.unwrap_or(lower).max(first_since);
        write_hollow(
            machine,
            &desc,
            &compactor,
            updates,
            (lower, upper, since),
            Layout::COMPACTION,
        )
        .await
    };
    let output = match merged.await {
        Ok(output) => output,
        Err(error) => {
            // The compactor holds nothing: its inputs may have been merged by another
            // compactor and their parts collected while it read them. Then its merge
            // could never apply, and the step is moot; otherwise the error stands.
            let _ = machine
                .apply_plain(|s: &State| cmds::expire_writer(s, &compactor))
                .await;
            let fresh = machine.fetch().await?;
            let still_there = fresh.batches.windows(inputs.len()).any(|w| w == inputs);
            return if still_there { Err(error) } else { Ok(true) };
        }
    };
    let res = machine
        .apply_plain(|s: &State| {
            let (next, applied) = cmds::apply_merge(s, &inputs, &output)?;
            let mut next = next.unwrap_or_else(|| s.clone());
            next.writers.retain(|w| w.id != compactor);
            Ok((Some(next), applied))
        })
        .await;
    match res {
        Ok((_, true)) => Ok(true),
        Ok((state, false)) => {
            // An earlier attempt of ours may have linked the output before a conflict
            // or fault, and another compactor may have merged it on since: delete it
            // only if no batch and no garbage entry names it.
            let named = |key: &str| {
                state.live_parts().any(|p| p.key == key)
                    || state.garbage.iter().any(|g| g.key == key)
            };
            if !output.parts.iter().any(|p| named(&p.key)) {
                crate::part_write::delete_parts(machine, &output.parts).await;
            }
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Compacts until the spine is in shape or `max_steps` merges were made.
pub(crate) async fn compact(machine: &Machine, max_steps: usize) -> Result<usize> {
    let mut steps = 0;
    while steps < max_steps && compact_step(machine).await? {
        steps += 1;
    }
    Ok(steps)
}

/// One GC run.
pub(crate) async fn gc(machine: &Machine) -> Result<GcReport> {
    let mut report = GcReport::default();
    let state = machine.fetch().await?;
    let min_hold = state
        .leased_readers
        .iter()
        .map(|r| r.seqno)
        .min()
        .unwrap_or(state.seqno)
        .min(state.seqno);
    let deletable: Vec<String> = state
        .garbage
        .iter()
        .filter(|g| g.removed_at <= min_hold)
        .map(|g| g.key.clone())
        .collect();
    let keys = deletable.iter().map(|k| machine.loc.key(k)).collect();
    blob::delete_many(machine.loc.store.as_ref(), keys).await?;
    report.deleted_parts = deletable.len();
    if !deletable.is_empty() {
        machine
            .apply_plain(|s: &State| cmds::remove_garbage(s, &deletable))
            .await?;
    }
    let listed = blob::list(
        machine.loc.store.as_ref(),
        &machine.loc.prefix_of(Prefix::Parts(machine.shard)),
    )
    .await?;
    let fresh = machine.fetch().await?;
    let referenced: BTreeSet<&str> = fresh
        .live_parts()
        .map(|p| p.key.as_str())
        .chain(fresh.garbage.iter().map(|g| g.key.as_str()))
        .collect();
    let writers: BTreeSet<&str> = fresh.writers.iter().map(|w| w.id.as_str()).collect();
    let now = crate::config::system_now()();
    let grace = machine.cfg.orphan_grace.as_millis() as i64;
    let mut orphans = Vec::new();
    let ours =
        |key: &ObjectKey| matches!(key, ObjectKey::Part { shard, .. } if *shard == machine.shard);
    for (key, meta) in machine.loc.expected_keys(listed, "shard parts", ours) {
        let ObjectKey::Part { writer, .. } = &key else {
            continue;
        };
        let age = now as i64 - meta.last_modified.timestamp_millis();
        let referenced = referenced.contains(key.to_string().as_str());
        if referenced || writers.contains(writer.as_str()) || age < grace {
            continue;
        }
        orphans.push(meta.location);
    }
    report.deleted_orphans = orphans.len();
    blob::delete_many(machine.loc.store.as_ref(), orphans).await?;
    report.deleted_staging = sweep_staging(machine, Prefix::Shard(machine.shard)).await?;
    report.truncated_versions = machine
        .consensus
        .truncate(
            machine.shard,
            crate::consensus::truncation_point(fresh.seqno),
        )
        .await?;
    Ok(report)
}

/// Deletes the staging files of interrupted puts under `prefix`, if the location is a
/// local directory: the same grace as orphan parts protects puts in flight.
pub(crate) async fn sweep_staging(machine: &Machine, prefix: Prefix) -> Result<usize> {
    let Some(dir) = machine.loc.local_dir(&prefix) else {
        return Ok(0);
    };
    let grace = machine.cfg.orphan_grace;
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_millis(machine.cfg.now_ms());
    let swept = tokio::task::spawn_blocking(move || crate::staging::sweep(&dir, grace, now))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    swept.map_err(|e| {
        PersistError::from(crate::error::ExternalError::determinate(
            "sweeping staging files",
            e,
        ))
    })
}

/// Turns a shard with `since = upper = []` into a tombstone and deletes its parts.
pub(crate) async fn finalize(machine: &Machine) -> Result<()> {
    machine.apply_plain(cmds::finalize).await?;
    gc(machine).await?;
    Ok(())
}

/// Starts compaction and GC in the background when the shard needs it.
/// On a register, GC sweeps for orphan parts once per this many versions.
pub const REGISTER_SWEEP_EVERY: u64 = 1024;

pub(crate) fn maybe_start_background(machine: &Arc<Machine>, state: &State) {
    if !machine.cfg.background_maintenance {
        return;
    }
    let compact_due = state.batches.len() > machine.cfg.compaction_trigger_batches
        || state.inline_bytes() > machine.cfg.max_inline_state_bytes;
    // A log needs GC to truncate old versions; a register keeps none, so its GC only
    // sweeps for orphan parts now and then, besides deleting compaction's garbage.
    let sweep_every = match machine.consensus.kind() {
        crate::consensus::ConsensusKind::Log => crate::consensus::FENCE_SLOT,
        _ => REGISTER_SWEEP_EVERY,
    };
    let gc_due =
        state.seqno.is_multiple_of(sweep_every) || (compact_due && !state.garbage.is_empty());
    if !(compact_due || gc_due) || !machine.try_claim_compaction() {
        return;
    }
    let machine = Arc::clone(machine);
    tokio::spawn(async move {
        if compact_due && let Err(e) = compact(&machine, 16).await {
            tracing::debug!(shard = %machine.shard, error = %e, "background compaction failed");
        }
        if let Err(e) = gc(&machine).await {
            tracing::debug!(shard = %machine.shard, error = %e, "background gc failed");
        }
        machine.release_compaction();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::HollowBatch;

    fn check(sizes: &[u64], expected: Option<std::ops::Range<usize>>) {
        let mut state = State::initial("s", 0, String::new());
        state.batches = sizes
            .iter()
            .enumerate()
            .map(|(i, b)| HollowBatch {
                lower: i as u64,
                upper: Some(i as u64 + 1),
                bytes: *b,
                len: 1,
                ..HollowBatch::default()
            })
            .collect();
        assert_eq!(pick_merge(&state), expected, "{sizes:?}");
    }

    #[test]
    fn spine_policy() {
        check(&[], None);
        check(&[10], None);
        check(&[10, 10], Some(0..2));
        check(&[100, 40, 10], None);
        check(&[1000, 400, 150, 60, 20, 8], None);
        // The newest pair out of shape, then every older batch it would put out of shape.
        check(&[100, 60, 10], Some(0..2));
        check(&[100, 40, 10, 10], Some(0..4));
        check(&[1000, 40, 10, 10], Some(1..4));
        check(&[8, 4, 2, 1, 1], Some(0..5));
        check(&[500, 100, 30, 1, 1], Some(3..5));
        // A newer pair out of shape is merged even when an older one is too.
        check(&[10, 10, 100, 1, 1], Some(3..5));
        // Bounded by the number of inputs.
        let ones = vec![1; MAX_MERGE_INPUTS + 4];
        check(&ones, Some(4..MAX_MERGE_INPUTS + 4));
        // Bounded by bytes: a batch is not taken once the run holds MAX_MERGE_BYTES.
        check(
            &[MAX_MERGE_BYTES, MAX_MERGE_BYTES / 2, MAX_MERGE_BYTES / 2],
            Some(1..3),
        );
    }

    #[test]
    fn forwarding_stays_inside_the_batch() {
        let mk = |t| (Ok(strata_controller_api::Row::default()), t, 1);
        let mut u = vec![mk(1), mk(5), mk(9)];
        forward_times(&mut u, Some(6), Some(10));
        assert_eq!(u.iter().map(|x| x.1).collect::<Vec<_>>(), [6, 6, 9]);
        let mut u = vec![mk(1), mk(5)];
        forward_times(&mut u, Some(60), Some(8));
        assert_eq!(u.iter().map(|x| x.1).collect::<Vec<_>>(), [7, 7]);
    }
}
