//! Data shard I/O of the txns shard: writing a commit's batches to blob, and linking
//! them into their data shards (apply).
//!
//! A commit's batch is written under `txns/{txns}/parts/{data}/{uuid}`, outside the
//! data shard's own part folder, so the data shard's orphan GC never deletes a batch
//! that is committed but not yet applied. Once linked, the data shard references the
//! part like any other and compaction and GC treat it as their own.
//!
//! Apply is idempotent: a batch committed at `ts` is linked at the data shard's current
//! physical upper `p` (its lower rewritten to `p`, all its updates are at `ts >= p`) and
//! moves the upper to `ts + 1`. Nothing moves a registered shard's upper past a commit
//! time without linking that commit, so an upper already past `ts` proves the batch was
//! linked, by this or a concurrent applier.

use std::marker::PhantomData;

use strata_controller_api::{Antichain, RelationDesc, ShardId, StorageTimestamp};

use super::error::{TxnsError, TxnsResult};
use crate::batch::Batch;
use crate::client::PersistClient;
use crate::error::PersistError;
use crate::part::{CodedUpdate, SourceData, consolidate};
use crate::state::{HollowBatch, InlineUpdate, PartRef};
use crate::update::{frontier_code, frontier_of};
use crate::write::WriteHandle;

/// Writes `updates` of `shard` at time code `ts` as a batch `[ts, ts + 1)`, inline
/// when small. Rows are checked against `desc` first. Returns `None` when the updates
/// consolidate to nothing.
pub(crate) async fn write_batch(
    client: &PersistClient,
    txns: ShardId,
    shard: ShardId,
    desc: &RelationDesc,
    updates: &[(SourceData, i64)],
    ts: u64,
) -> TxnsResult<Option<HollowBatch>> {
    let upper = ts
        .checked_add(1)
        .ok_or_else(|| TxnsError::InvalidUsage("cannot commit at the maximum time".into()))?;
    let mut coded: Vec<CodedUpdate> = Vec::with_capacity(updates.len());
    for (data, diff) in updates {
        if let Ok(row) = data {
            desc.validate_row(row)
                .map_err(|mismatch| PersistError::InvalidRow { shard, mismatch })?;
        }
        coded.push((data.clone(), ts, *diff));
    }
    consolidate(&mut coded);
    if coded.is_empty() {
        return Ok(None);
    }
    let len = coded.len() as u64;
    let bytes: u64 = coded
        .iter()
        .map(|(d, _, _)| 20 + d.as_ref().map_or_else(|e| e.len(), |r| r.as_bytes().len()) as u64)
        .sum();
    let mut batch = HollowBatch {
        lower: ts,
        upper: Some(upper),
        since: ts,
        parts: vec![],
        inline: vec![],
        len,
        bytes,
    };
    if bytes <= client.config().inline_threshold_bytes {
        batch.inline = coded
            .into_iter()
            .map(|(data, ts, diff)| match data {
                Ok(row) => InlineUpdate {
                    row: row.into_bytes().into(),
                    err: None,
                    ts,
                    diff,
                },
                Err(e) => InlineUpdate {
                    row: Default::default(),
                    err: Some(e),
                    ts,
                    diff,
                },
            })
            .collect();
    } else {
        let encoded = crate::part::encode_part(desc, &coded).map_err(PersistError::from)?;
        let key = crate::paths::ObjectKey::new_txns_part(txns, shard).to_string();
        batch.bytes = encoded.len() as u64;
        client
            .machine(shard)
            .put_blob(&key, encoded)
            .await
            .map_err(PersistError::from)?;
        batch.parts.push(PartRef {
            key,
            len,
            bytes: batch.bytes,
        });
    }
    Ok(Some(batch))
}

/// Best-effort deletion of the parts of batches that were never committed.
pub(crate) async fn delete_uncommitted(client: &PersistClient, batches: &[(ShardId, HollowBatch)]) {
    for (shard, batch) in batches {
        crate::part_write::delete_parts(&client.machine(*shard), &batch.parts).await;
    }
}

fn upper_code<T: StorageTimestamp>(w: &WriteHandle<T>) -> Option<u64> {
    frontier_code(w.upper())
}

/// The batches of `links` (commit time, batch; ascending) not yet linked at upper `p`,
/// as one batch `[p, last + 1)`: their parts and inline updates together. `None` when
/// every commit is already applied.
pub(crate) fn merge_links(links: &[(u64, HollowBatch)], p: u64) -> Option<HollowBatch> {
    let pending: Vec<&HollowBatch> = links
        .iter()
        .filter(|(ts, _)| *ts >= p)
        .map(|(_, b)| b)
        .collect();
    let last = pending.last()?;
    let mut merged = HollowBatch {
        lower: p,
        upper: last.upper,
        since: p,
        parts: Vec::new(),
        inline: Vec::new(),
        len: 0,
        bytes: 0,
    };
    for b in pending {
        merged.parts.extend(b.parts.iter().cloned());
        merged.inline.extend(b.inline.iter().cloned());
        merged.len += b.len;
        merged.bytes += b.bytes;
    }
    Some(merged)
}

/// Links every commit of `links` (ascending commit times) that the shard's upper is
/// not past yet, with one compare-and-append: one CAS per data shard per apply,
/// however many commits it carries.
pub(crate) async fn link<T: StorageTimestamp>(
    w: &mut WriteHandle<T>,
    links: &[(u64, HollowBatch)],
) -> TxnsResult<()> {
    let attempts = w.machine.cfg.cas_attempts;
    for _ in 0..attempts {
        let p = match upper_code(w) {
            None if links.is_empty() => return Ok(()),
            None => return Err(closed(w.shard_id())),
            Some(p) => p,
        };
        let Some(hollow) = merge_links(links, p) else {
            return Ok(());
        };
        let linked = Batch {
            shard: w.shard_id(),
            hollow,
            _time: PhantomData,
        };
        match w.compare_and_append_batch(&linked).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_mismatch)) => {}
            Err(PersistError::LeaseExpired { .. }) => w.register().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PersistError::Contention {
        shard: w.shard_id(),
        attempts,
    }
    .into())
}

/// Moves the shard's upper to at least `target` with empty appends.
pub(crate) async fn advance<T: StorageTimestamp>(
    w: &mut WriteHandle<T>,
    target: u64,
) -> TxnsResult<()> {
    let attempts = w.machine.cfg.cas_attempts;
    for _ in 0..attempts {
        let p = match upper_code(w) {
            None => return Ok(()),
            Some(p) if p >= target => return Ok(()),
            Some(p) => p,
        };
        let (from, to): (Antichain<T>, Antichain<T>) =
            (frontier_of(Some(p)), frontier_of(Some(target)));
        match w.compare_and_append(&[], from, to).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_mismatch)) => {}
            // A passive writer whose lease lapsed while its shard was idle.
            Err(PersistError::LeaseExpired { .. }) => w.register().await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(PersistError::Contention {
        shard: w.shard_id(),
        attempts,
    }
    .into())
}

fn closed(shard: ShardId) -> TxnsError {
    TxnsError::InvalidUsage(format!(
        "data shard {shard} was closed outside txns; its commits cannot be applied"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ts: u64, part: &str, len: u64) -> (u64, HollowBatch) {
        let b = HollowBatch {
            lower: ts,
            upper: Some(ts + 1),
            since: ts,
            parts: vec![PartRef {
                key: part.into(),
                len,
                bytes: 10 * len,
            }],
            inline: vec![],
            len,
            bytes: 10 * len,
        };
        (ts, b)
    }

    #[test]
    fn merged_links_cover_what_the_upper_has_not_passed() {
        let links = [batch(3, "a", 1), batch(6, "b", 2), batch(9, "c", 4)];
        // (upper, expected parts, lower, upper, len)
        type Case = (u64, &'static [&'static str], u64, Option<u64>, u64);
        let table: &[Case] = &[
            (0, &["a", "b", "c"], 0, Some(10), 7),
            (3, &["a", "b", "c"], 3, Some(10), 7),
            (4, &["b", "c"], 4, Some(10), 6),
            (9, &["c"], 9, Some(10), 4),
        ];
        for (p, parts, lower, upper, len) in table {
            let m = merge_links(&links, *p).unwrap_or_else(|| panic!("upper {p}"));
            let keys: Vec<&str> = m.parts.iter().map(|p| p.key.as_str()).collect();
            assert_eq!(
                (keys.as_slice(), m.lower, m.upper, m.len),
                (*parts, *lower, *upper, *len),
                "upper {p}"
            );
            assert_eq!(m.bytes, 10 * len);
        }
        assert_eq!(merge_links(&links, 10), None, "everything applied");
        assert_eq!(merge_links(&[], 0), None);
    }
}
