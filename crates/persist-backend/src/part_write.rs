//! Writing a large batch as several parts, coded while the earlier ones upload.
//!
//! A part's put ends in a flush that waits for every byte, so one large part
//! serializes the CPU work (consolidating, encoding) and the I/O. Split into parts of
//! at most [`PersistConfig::append_part_rows`](crate::PersistConfig) updates, the first
//! parts upload while the later ones are still being coded: one coding thread per
//! core takes the parts in input order, and each part's put is spawned as soon as its
//! bytes exist.
//!
//! Each part is consolidated on its own, so the same data may appear in more than one
//! part of a batch; readers consolidate across parts, and compaction merges them.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_controller_api::{RelationDesc, ShardId};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

use crate::consolidate::consolidate_in_place;
use crate::error::{PersistError, Result};
use crate::machine::Machine;
use crate::part::{NEW_PART, SourceData, encode_updates, part_error};
use crate::state::PartRef;

/// The most parts one append is split into.
pub const MAX_PARTS_PER_APPEND: usize = 16;

/// Where a part of `writer`'s goes in `machine`'s shard.
pub(crate) fn new_part_key(machine: &Machine, writer: &str) -> String {
    crate::paths::ObjectKey::new_part(machine.shard, writer).to_string()
}

/// Checks every row against `desc`; the first that does not match is the error.
pub(crate) fn check_rows<D: Borrow<SourceData>>(
    shard: ShardId,
    desc: &RelationDesc,
    updates: &[(D, u64, i64)],
) -> Result<()> {
    for (data, _, _) in updates {
        if let Ok(row) = data.borrow() {
            desc.validate_row(row)
                .map_err(|mismatch| PersistError::InvalidRow { shard, mismatch })?;
        }
    }
    Ok(())
}

/// A chunk's outcome: its part's put, spawned, or why there is none.
enum Slot {
    /// Consolidated to nothing: no part.
    Nothing,
    Put(JoinHandle<Result<PartRef>>),
    Failed(PersistError),
}

/// Checks (against `check`, if given), consolidates and encodes `updates` as `parts`
/// parts of equal length and puts them. Returns the parts in input order, leaving out
/// chunks that consolidate to nothing. On failure, every put is awaited, the parts put
/// are deleted (best effort; GC finds any left behind), and the error of the earliest
/// failed part is returned, so a bad row is reported as if checked in input order.
pub(crate) async fn write_parts<D: Borrow<SourceData> + Sync>(
    machine: &Machine,
    desc: &RelationDesc,
    writer: &str,
    updates: &[(D, u64, i64)],
    parts: usize,
    check: Option<&RelationDesc>,
) -> Result<Vec<PartRef>> {
    let per_part = updates.len().div_ceil(parts.max(1)).max(1);
    let chunks: Vec<_> = updates.chunks(per_part).collect();
    let next = AtomicUsize::new(0);
    let handle = Handle::current();
    // Each coding thread claims chunks in input order and returns what it did with them.
    let code = || {
        let mut coded = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(index) else {
                break;
            };
            let slot = match check.map(|desc| check_rows(machine.shard, desc, chunk)) {
                Some(Err(e)) => Slot::Failed(e),
                _ => code_and_spawn_put(&handle, machine, desc, writer, chunk),
            };
            coded.push((index, slot));
        }
        coded
    };
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    let threads = cores.min(chunks.len());
    let run = || {
        std::thread::scope(|scope| {
            let others: Vec<_> = (1..threads).map(|_| scope.spawn(code)).collect();
            let mut all = code();
            for other in others {
                // A slot lost to a panic would be a part silently missing: pass it on.
                all.extend(
                    other
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p)),
                );
            }
            all
        })
    };
    // Coding blocks this thread; on a multi-threaded runtime, other tasks move away.
    let mut slots = match handle.runtime_flavor() {
        RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
        _ => run(),
    };
    slots.sort_by_key(|(index, _)| *index);
    let mut parts = Vec::with_capacity(slots.len());
    let mut first_err = None;
    for (_, slot) in slots {
        let outcome = match slot {
            Slot::Nothing => continue,
            Slot::Put(put) => put.await.unwrap_or_else(|e| {
                Err(part_error(NEW_PART, &format!("a part's put failed: {e}")).into())
            }),
            Slot::Failed(e) => Err(e),
        };
        match outcome {
            Ok(part) => parts.push(part),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        delete_parts(machine, &parts).await;
        return Err(e);
    }
    Ok(parts)
}

/// Codes one chunk on this thread and spawns its put.
fn code_and_spawn_put<D: Borrow<SourceData>>(
    handle: &Handle,
    machine: &Machine,
    desc: &RelationDesc,
    writer: &str,
    chunk: &[(D, u64, i64)],
) -> Slot {
    let mut coded: Vec<(&SourceData, u64, i64)> = chunk
        .iter()
        .map(|(d, t, diff)| (d.borrow(), *t, *diff))
        .collect();
    consolidate_in_place(&mut coded);
    if coded.is_empty() {
        return Slot::Nothing;
    }
    let len = coded.len() as u64;
    let bytes = match encode_updates(desc, &coded) {
        Ok(bytes) => bytes,
        Err(e) => return Slot::Failed(e.into()),
    };
    drop(coded);
    let key = new_part_key(machine, writer);
    let machine = machine.clone();
    Slot::Put(handle.spawn(async move {
        let size = bytes.len() as u64;
        machine.put_blob(&key, bytes).await?;
        Ok(PartRef {
            key,
            len,
            bytes: size,
        })
    }))
}

/// Best-effort removal of parts that were never linked (GC finds any left behind).
pub(crate) async fn delete_parts(machine: &Machine, parts: &[PartRef]) {
    let keys = parts.iter().map(|p| machine.loc.key(&p.key)).collect();
    if let Err(e) = crate::blob::delete_many(machine.loc.store.as_ref(), keys).await {
        tracing::debug!(error = %e, "leaving unlinked parts to GC");
    }
}
