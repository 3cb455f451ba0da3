//! Batches: writing updates to a part (or inline) and reading them back.

use std::borrow::Borrow;
use std::marker::PhantomData;

use bytes::Bytes;
use strata_controller_api::{Antichain, RelationDesc, Row, ShardId, StorageTimestamp};

use crate::consolidate::consolidate_in_place;
use crate::error::{CodecError, PersistError, Result};
use crate::machine::Machine;
use crate::part::{CodedUpdate, SourceData, decode_part_into, encode_updates};
use crate::part_fetch::fetch_halves;
use crate::part_write::{MAX_PARTS_PER_APPEND, check_rows, new_part_key, write_parts};
use crate::state::{HollowBatch, InlineUpdate, PartRef};
use crate::update::{before, frontier_of};

/// Updates written to blob (or inlined) but not yet linked into the shard. Link it with
/// [`WriteHandle::compare_and_append_batch`](crate::WriteHandle::compare_and_append_batch).
///
/// A batch that is never linked leaves an orphan part, which GC deletes once its writer
/// is gone and the orphan grace period has passed.
#[derive(Debug, Clone)]
pub struct Batch<T> {
    pub(crate) shard: ShardId,
    pub(crate) hollow: HollowBatch,
    pub(crate) _time: PhantomData<T>,
}

impl<T: StorageTimestamp> Batch<T> {
    /// The shard this batch was written for.
    pub fn shard_id(&self) -> ShardId {
        self.shard
    }

    /// The batch's lower: the expected upper when it is linked.
    pub fn lower(&self) -> Antichain<T> {
        frontier_of(Some(self.hollow.lower))
    }

    /// The batch's upper: the shard's upper after it is linked.
    pub fn upper(&self) -> Antichain<T> {
        frontier_of(self.hollow.upper)
    }

    /// The number of updates, consolidated within each part.
    pub fn len(&self) -> u64 {
        self.hollow.len
    }

    /// Whether the batch holds no updates.
    pub fn is_empty(&self) -> bool {
        self.hollow.len == 0
    }

    /// The keys of the blob parts it wrote (empty when inlined).
    pub fn part_keys(&self) -> Vec<String> {
        self.hollow.parts.iter().map(|p| p.key.clone()).collect()
    }
}

fn inline_size<D: Borrow<SourceData>>(updates: &[(D, u64, i64)]) -> u64 {
    updates
        .iter()
        .map(|(d, _, _)| {
            20 + d
                .borrow()
                .as_ref()
                .map_or_else(|e| e.len(), |r| r.as_bytes().len()) as u64
        })
        .sum()
}

/// How [`write_hollow`] lays out a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    /// Batches of more (estimated) bytes are split into parts of about this size.
    pub(crate) part_bytes: u64,
    /// Whether every row is checked against the description first (appends; compaction
    /// rewrites rows that were checked when they were appended).
    pub(crate) check_rows: bool,
}

impl Layout {
    /// Appends: checked rows, large batches split by [`PersistConfig::append_part_bytes`].
    ///
    /// [`PersistConfig::append_part_bytes`]: crate::PersistConfig::append_part_bytes
    pub(crate) fn append(machine: &Machine) -> Self {
        Layout {
            part_bytes: machine.cfg.append_part_bytes,
            check_rows: true,
        }
    }

    /// Compaction: one part, whatever its size, since merging exists to cut parts.
    pub(crate) const COMPACTION: Layout = Layout {
        part_bytes: u64::MAX,
        check_rows: false,
    };
}

/// Consolidates updates (owned, or borrowed from the caller) and writes them as a batch
/// with `(lower, upper, since)`: inline in the state if small, else as one part, or as
/// several (see [`write_parts`]) if larger than the layout's part size.
pub(crate) async fn write_hollow<D: Borrow<SourceData> + Sync>(
    machine: &Machine,
    desc: &RelationDesc,
    writer: &str,
    mut updates: Vec<(D, u64, i64)>,
    (lower, upper, since): (u64, Option<u64>, u64),
    layout: Layout,
) -> Result<HollowBatch> {
    let mut batch = HollowBatch {
        lower,
        upper,
        since,
        parts: vec![],
        inline: vec![],
        len: 0,
        bytes: 0,
    };
    let size = inline_size(&updates);
    let part_bytes = layout.part_bytes.max(machine.cfg.inline_threshold_bytes);
    if size > part_bytes {
        // Every part is a reference in the state until compaction merges the batch, so a
        // huge append gets larger parts rather than more of them.
        let parts = usize::try_from(size.div_ceil(part_bytes.max(1)))
            .unwrap_or(usize::MAX)
            .min(MAX_PARTS_PER_APPEND);
        let check = layout.check_rows.then_some(desc);
        batch.parts = write_parts(machine, desc, writer, &updates, parts, check).await?;
        batch.len = batch.parts.iter().map(|p| p.len).sum();
        batch.bytes = batch.parts.iter().map(|p| p.bytes).sum();
        return Ok(batch);
    }
    if layout.check_rows {
        check_rows(machine.shard, desc, &updates)?;
    }
    let before = updates.len();
    consolidate_in_place(&mut updates);
    batch.len = updates.len() as u64;
    // The size counts data only, so it changed only if consolidation merged updates.
    let bytes = match updates.len() == before {
        true => size,
        false => inline_size(&updates),
    };
    if updates.is_empty() {
        return Ok(batch);
    }
    // The state this process saw last tells, without I/O, whether the state has room.
    let inline_now = machine.cached().map_or(0, |s| s.inline_bytes());
    let room = inline_now.saturating_add(bytes) <= machine.cfg.max_inline_state_bytes;
    if bytes <= machine.cfg.inline_threshold_bytes && (room || !layout.check_rows) {
        batch.bytes = bytes;
        batch.inline = updates
            .iter()
            .map(|(data, ts, diff)| match data.borrow() {
                Ok(row) => InlineUpdate {
                    row: Bytes::copy_from_slice(row.as_bytes()),
                    err: None,
                    ts: *ts,
                    diff: *diff,
                },
                Err(e) => InlineUpdate {
                    row: Bytes::new(),
                    err: Some(e.clone()),
                    ts: *ts,
                    diff: *diff,
                },
            })
            .collect();
    } else {
        let encoded = encode_updates(desc, &updates)?;
        drop(updates);
        let key = new_part_key(machine, writer);
        batch.bytes = encoded.len() as u64;
        machine.put_blob(&key, encoded).await?;
        batch.parts.push(PartRef {
            key,
            len: batch.len,
            bytes: batch.bytes,
        });
    }
    Ok(batch)
}

/// Every update of a batch, in no particular order.
pub(crate) async fn read_hollow(
    machine: &Machine,
    desc: &RelationDesc,
    batch: &HollowBatch,
) -> Result<Vec<CodedUpdate>> {
    let mut out = Vec::new();
    read_hollow_into(machine, desc, batch, &mut out).await?;
    Ok(out)
}

/// [`read_hollow`], appending to `out`.
pub(crate) async fn read_hollow_into(
    machine: &Machine,
    desc: &RelationDesc,
    batch: &HollowBatch,
    out: &mut Vec<CodedUpdate>,
) -> Result<()> {
    read_inline_into(machine, desc, batch, out)?;
    for part in &batch.parts {
        read_part_into(machine, desc, part, None, out).await?;
    }
    Ok(())
}

/// Appends the updates of a batch at or before `as_of`, advanced to `as_of`, to `out`.
/// Returns whether `out` is still consolidated as is: strictly increasing data (so no
/// two updates share a time, which is `as_of` for all) and no zero diff.
pub(crate) async fn read_hollow_at(
    machine: &Machine,
    desc: &RelationDesc,
    batch: &HollowBatch,
    as_of: u64,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool> {
    let start = out.len();
    read_inline_into(machine, desc, batch, out)?;
    let mut consolidated = advance_from(out, start, as_of);
    for part in &batch.parts {
        consolidated &= read_part_into(machine, desc, part, Some(as_of), out).await?;
    }
    Ok(consolidated)
}

/// Advances `out[start..]` as [`advance_to`] does; returns whether `out` is still
/// consolidated (see [`read_hollow_at`]).
fn advance_from(out: &mut Vec<CodedUpdate>, start: usize, as_of: u64) -> bool {
    let tail = out.split_off(start);
    let mut consolidated = true;
    for (data, t, diff) in tail {
        if t <= as_of {
            consolidated = consolidated && diff != 0 && out.last().is_none_or(|p| p.0 < data);
            out.push((data, as_of, diff));
        }
    }
    consolidated
}

pub(crate) fn read_inline(
    machine: &Machine,
    desc: &RelationDesc,
    batch: &HollowBatch,
) -> Result<Vec<CodedUpdate>> {
    let mut out = Vec::new();
    read_inline_into(machine, desc, batch, &mut out)?;
    Ok(out)
}

/// `row` as a row of `arity` columns: a row written under an earlier version of the
/// relation gets NULL in the columns added since, one written under a later version
/// loses them (as parts of other versions read, see `RowsReader`).
fn fit_row(row: Row, arity: usize) -> Row {
    let len = row.len();
    if len == arity {
        return row;
    }
    let mut packer = strata_controller_api::RowPacker::with_capacity(row.as_bytes().len() + arity);
    for datum in row.iter().take(arity) {
        packer.push(&datum);
    }
    for _ in len..arity {
        packer.push_null();
    }
    packer.finish()
}

fn read_inline_into(
    machine: &Machine,
    desc: &RelationDesc,
    batch: &HollowBatch,
    out: &mut Vec<CodedUpdate>,
) -> Result<()> {
    out.reserve(batch.inline.len());
    for u in &batch.inline {
        let data: SourceData = match &u.err {
            Some(e) => Err(e.clone()),
            None => Ok(fit_row(
                Row::from_bytes(u.row.to_vec()).map_err(|e| CodecError::State {
                    key: format!("shards/{}/state", machine.shard),
                    reason: format!("inline row: {e}"),
                })?,
                desc.arity(),
            )),
        };
        out.push((data, u.ts, u.diff));
    }
    Ok(())
}

pub(crate) async fn read_part(
    machine: &Machine,
    desc: &RelationDesc,
    part: &PartRef,
) -> Result<Vec<CodedUpdate>> {
    let mut out = Vec::new();
    read_part_into(machine, desc, part, None, &mut out).await?;
    Ok(out)
}

/// Appends a part's updates to `out`; see `decode_part_into` for `as_of` and the answer.
async fn read_part_into(
    machine: &Machine,
    desc: &RelationDesc,
    part: &PartRef,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<bool> {
    if part.bytes >= machine.cfg.split_fetch_bytes
        && let Some(consolidated) = fetch_halves(machine, desc, part, as_of, out).await?
    {
        return Ok(consolidated);
    }
    let Some(bytes) = machine.get_blob(&part.key).await? else {
        return Err(PersistError::Codec(CodecError::Part {
            key: part.key.clone(),
            reason: "part is missing".into(),
        }));
    };
    Ok(decode_part_into(&part.key, desc, bytes, as_of, out)?)
}

/// Keeps the updates at or before `as_of`, advanced to `as_of`.
pub(crate) fn advance_to(updates: &mut Vec<CodedUpdate>, as_of: u64) {
    updates.retain(|u| u.1 <= as_of);
    updates.iter_mut().for_each(|u| u.1 = as_of);
}

/// Keeps the updates with times in `[lower, upper)`.
pub(crate) fn restrict(updates: &mut Vec<CodedUpdate>, lower: u64, upper: Option<u64>) {
    updates.retain(|u| u.1 >= lower && before(u.1, upper));
}
