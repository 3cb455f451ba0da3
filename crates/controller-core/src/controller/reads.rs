//! [`Reads`]: snapshots (tables through the txns shard), read policies and read holds.
//!
//! A snapshot checks the since when it is issued and then runs without borrowing the
//! controller. Read holds report their changes through a channel that the controller
//! drains at the start of every `&mut self` call and in `process`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use strata_controller_api::{
    Antichain, GlobalId, ReadHold, ReadHoldError, ReadPolicy, Reads, Row, RtrFuture, ShardId,
    SnapshotCursor, SnapshotFuture, SnapshotPartStats, SnapshotPartsStats, SnapshotStats,
    StorageError, StorageTimestamp,
};
use strata_persist_backend::txns::{TxnsError, TxnsHandle};
use strata_persist_backend::{PersistClient, SourceData};

use super::{Controller, SharedReader, persist_err, txns_err};

/// Consolidates `(data, time, diff)` updates into rows with non-zero diffs.
pub(super) fn consolidate<T>(updates: Vec<(SourceData, T, i64)>) -> Vec<(Row, i64)> {
    let mut rows: BTreeMap<Row, i64> = BTreeMap::new();
    for (data, _, diff) in updates {
        if let Ok(row) = data {
            *rows.entry(row).or_default() += diff;
        }
    }
    rows.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// How a snapshot reads its collection.
#[derive(Clone)]
enum Source<T: StorageTimestamp> {
    /// A table registered with the txns shard.
    Txns {
        reader: SharedReader<T>,
        txns_shard: ShardId,
        desc: strata_controller_api::RelationDesc,
    },
    /// A shard read directly.
    Direct {
        desc: strata_controller_api::RelationDesc,
    },
}

/// Reads `shard` at `as_of`.
async fn read<T: StorageTimestamp>(
    client: PersistClient,
    source: Source<T>,
    shard: ShardId,
    as_of: T,
) -> Result<Vec<(Row, i64)>, StorageError<T>> {
    match source {
        Source::Txns {
            reader, txns_shard, ..
        } => loop {
            let mut guard = reader.lock().await;
            if guard.is_none() {
                let handle = TxnsHandle::open(client.clone(), txns_shard)
                    .await
                    .map_err(txns_err)?;
                *guard = Some(handle);
            }
            let Some(handle) = guard.as_mut() else {
                continue;
            };
            match handle.read_at_no_wait(shard, as_of).await {
                Ok(updates) => return Ok(consolidate(updates)),
                Err(TxnsError::NotYetReadable { .. }) => {
                    // Wait for the txns upper to pass `as_of` without holding the shared
                    // reader: the commit that moves it wakes the wait.
                    drop(guard);
                    client
                        .wait_for_upper_past(txns_shard, &Antichain::from_elem(as_of))
                        .await
                        .map_err(persist_err)?;
                }
                Err(error) => return Err(txns_err(error)),
            }
        },
        Source::Direct { desc } => {
            let mut handle = client
                .open_leased_reader::<T>(shard, desc)
                .await
                .map_err(persist_err)?;
            let updates = handle.snapshot(&as_of).await.map_err(persist_err)?;
            let _ = handle.expire().await;
            Ok(consolidate(updates))
        }
    }
}

/// Makes `shard` readable at `as_of` by a plain persist reader: for a table, links
/// every commit at or before `as_of` into it (waiting, without the shared reader, for
/// the txns upper to pass `as_of`). Returns the shard's relation description.
async fn prepare<T: StorageTimestamp>(
    client: &PersistClient,
    source: Source<T>,
    shard: ShardId,
    as_of: T,
) -> Result<strata_controller_api::RelationDesc, StorageError<T>> {
    match source {
        Source::Direct { desc } => Ok(desc),
        Source::Txns {
            reader,
            txns_shard,
            desc,
        } => {
            client
                .wait_for_upper_past(txns_shard, &Antichain::from_elem(as_of))
                .await
                .map_err(persist_err)?;
            let mut guard = reader.lock().await;
            let handle = match guard.as_mut() {
                Some(handle) => handle,
                None => guard.insert(
                    TxnsHandle::open(client.clone(), txns_shard)
                        .await
                        .map_err(txns_err)?,
                ),
            };
            handle.prepare_read(shard, as_of).await.map_err(txns_err)?;
            Ok(desc)
        }
    }
}

/// Streams `shard` at `as_of` one part at a time (see [`Reads::snapshot_cursor`]). The
/// stream owns a leased reader, which keeps `as_of` readable until the stream ends (it
/// then expires the reader) or is dropped (the reader expires in the background).
async fn cursor<T: StorageTimestamp>(
    client: PersistClient,
    source: Source<T>,
    shard: ShardId,
    as_of: T,
) -> Result<SnapshotCursor<T>, StorageError<T>> {
    let desc = prepare(&client, source, shard, as_of).await?;
    let mut handle = client
        .open_leased_reader::<T>(shard, desc)
        .await
        .map_err(persist_err)?;
    let cursor = handle.snapshot_cursor(&as_of).await.map_err(persist_err)?;
    let stream = futures::stream::unfold(Some((handle, cursor)), |state| async move {
        let (handle, mut cursor) = state?;
        loop {
            match cursor.next().await {
                Ok(Some(updates)) => {
                    let rows = consolidate(updates);
                    if !rows.is_empty() {
                        return Some((Ok(rows), Some((handle, cursor))));
                    }
                }
                Ok(None) => {
                    // Best effort: an unexpired reader's lease runs out on its own.
                    let _ = handle.expire().await;
                    return None;
                }
                Err(error) => return Some((Err(persist_err(error)), None)),
            }
        }
    });
    Ok(stream.boxed())
}

/// The batches of `shard` a snapshot at `as_of` reads (those starting at or before it),
/// after `prepare` at `prepare_at`.
async fn snapshot_batches<T: StorageTimestamp>(
    client: &PersistClient,
    (shard, source, prepare_at): (ShardId, Source<T>, Option<T>),
    as_of: &Antichain<T>,
) -> Result<Vec<strata_persist_backend::BatchInspect>, StorageError<T>> {
    if let Some(time) = prepare_at {
        prepare(client, source, shard, time).await?;
    }
    let state = client.inspect_shard(shard).await.map_err(persist_err)?;
    let bound = as_of
        .as_option()
        .map(strata_persist_backend::time_code)
        .unwrap_or(u64::MAX);
    Ok(state
        .batches
        .into_iter()
        .filter(|b| b.lower.first().is_some_and(|lower| *lower <= bound))
        .collect())
}

impl<T: StorageTimestamp> Controller<T> {
    /// Checks that live `id` is readable at `as_of` (the empty frontier allowed) and
    /// says how to read it, for the snapshot statistics.
    fn stats_source(
        &self,
        id: GlobalId,
        as_of: &Antichain<T>,
    ) -> Result<(ShardId, Source<T>, Option<T>), StorageError<T>> {
        self.registry.live(id)?;
        self.registry.frontiers.check_readable(id, as_of)?;
        // The empty as_of reads everything there is: link a table's commits up to its
        // latest complete time.
        let latest = || {
            self.registry
                .frontiers
                .upper(id)
                .and_then(|upper| upper.as_option().copied())
                .and_then(|upper| upper.step_back())
        };
        let readable = as_of
            .as_option()
            .copied()
            .or_else(latest)
            .and_then(|time| Some((time, self.snapshot_source(id, time).ok()?)));
        match readable {
            Some((time, (shard, source))) => Ok((shard, source, Some(time))),
            None => {
                let state = self.registry.live(id)?;
                let source = Source::Direct {
                    desc: state.description.desc.clone(),
                };
                Ok((state.shard, source, None))
            }
        }
    }

    /// Checks that `id` is readable at `as_of` and says how to read it.
    fn snapshot_source(
        &self,
        id: GlobalId,
        as_of: T,
    ) -> Result<(ShardId, Source<T>), StorageError<T>> {
        let state = self.registry.readable(id)?;
        self.registry
            .frontiers
            .check_held_readable(id, &Antichain::from_elem(as_of))?;
        // A dropped table was forgotten by the txns shard at its drop; its earlier
        // commits are still read through the txns shard, which knows what is applied.
        let dropped_table = state.description.is_table() && self.registry.frontiers.is_dropped(id);
        let source = if state.txns_registered || dropped_table {
            Source::Txns {
                reader: std::sync::Arc::clone(&self.reader),
                txns_shard: self.txns_shard,
                desc: state.description.desc.clone(),
            }
        } else {
            Source::Direct {
                desc: state.description.desc.clone(),
            }
        };
        Ok((state.shard, source))
    }
}

#[async_trait]
impl<T: StorageTimestamp> Reads<T> for Controller<T> {
    fn snapshot(&self, id: GlobalId, as_of: T) -> SnapshotFuture<T> {
        match self.snapshot_source(id, as_of) {
            Ok((shard, source)) => read(self.client.clone(), source, shard, as_of).boxed(),
            Err(error) => futures::future::ready(Err(error)).boxed(),
        }
    }

    async fn snapshot_latest(&mut self, id: GlobalId) -> Result<Vec<(Row, i64)>, StorageError<T>> {
        self.drain_internal();
        self.registry.live(id)?;
        let upper = self
            .registry
            .frontiers
            .upper(id)
            .cloned()
            .ok_or(StorageError::IdentifierMissing(id))?;
        let Some(upper) = upper.as_option().copied() else {
            return Err(StorageError::InvalidUsage(format!("{id} is closed")));
        };
        match upper.step_back() {
            None => Ok(Vec::new()),
            Some(as_of) => self.snapshot(id, as_of).await,
        }
    }

    async fn snapshot_cursor(
        &mut self,
        id: GlobalId,
        as_of: T,
    ) -> Result<SnapshotCursor<T>, StorageError<T>> {
        self.drain_internal();
        let (shard, source) = self.snapshot_source(id, as_of)?;
        cursor(self.client.clone(), source, shard, as_of).await
    }

    async fn snapshot_stats(
        &self,
        id: GlobalId,
        as_of: Antichain<T>,
    ) -> Result<SnapshotStats, StorageError<T>> {
        let source = self.stats_source(id, &as_of)?;
        let batches = snapshot_batches(&self.client, source, &as_of).await?;
        Ok(SnapshotStats {
            num_updates: batches.iter().map(|b| b.len).sum(),
        })
    }

    async fn snapshot_parts_stats(
        &self,
        id: GlobalId,
        as_of: Antichain<T>,
    ) -> Result<SnapshotPartsStats, StorageError<T>> {
        let source = self.stats_source(id, &as_of)?;
        let batches = snapshot_batches(&self.client, source, &as_of).await?;
        let mut parts = Vec::new();
        for batch in batches {
            let in_parts: u64 = batch.parts.iter().map(|p| p.len).sum();
            let inline = batch.len.saturating_sub(in_parts);
            if inline > 0 {
                let part_bytes: u64 = batch.parts.iter().map(|p| p.bytes).sum();
                parts.push(SnapshotPartStats {
                    key: None,
                    encoded_size_bytes: batch.bytes.saturating_sub(part_bytes),
                    num_updates: inline,
                });
            }
            parts.extend(batch.parts.into_iter().map(|p| SnapshotPartStats {
                key: Some(p.key),
                encoded_size_bytes: p.bytes,
                num_updates: p.len,
            }));
        }
        Ok(SnapshotPartsStats { parts })
    }

    fn set_read_policy(
        &mut self,
        policies: Vec<(GlobalId, ReadPolicy<T>)>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        let effects = self.registry.frontiers.set_read_policies(policies)?;
        self.execute(effects);
        Ok(())
    }

    fn acquire_read_holds(
        &mut self,
        ids: Vec<GlobalId>,
    ) -> Result<Vec<ReadHold<T>>, ReadHoldError<T>> {
        self.drain_internal();
        let held =
            self.registry
                .frontiers
                .acquire_read_holds(&ids)
                .map_err(|error| match error {
                    StorageError::IdentifierMissing(id) => ReadHoldError::CollectionMissing { id },
                    _ => ReadHoldError::CollectionMissing {
                        id: ids.first().copied().unwrap_or(GlobalId::Transient(0)),
                    },
                })?;
        let tx = self.change_tx();
        Ok(held
            .into_iter()
            .map(|(id, since)| ReadHold::new(id, since, std::sync::Arc::clone(&tx)))
            .collect())
    }

    async fn real_time_recency_timestamp(
        &mut self,
        ids: BTreeSet<GlobalId>,
        timeout: Duration,
    ) -> Result<RtrFuture<T>, StorageError<T>> {
        self.real_time_recency_inner(ids, timeout).await
    }
}
