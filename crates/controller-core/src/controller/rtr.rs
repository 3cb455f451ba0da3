//! Real-time recency: a time at which everything an ingestion's upstream had produced
//! when asked is visible.
//!
//! Two kinds of ingestion can answer:
//! - A load generator is its own upstream, and each ingestion round binds every offset
//!   generated so far. So once the ingestion's upper passes the upper it had when
//!   asked, the round at the time just before the new upper holds every offset that
//!   existed at the call; that time is the answer.
//! - A registered connector whose kind has an [`UpstreamProbe`] in
//!   [`ControllerConfig::upstream_probes`](super::ControllerConfig::upstream_probes):
//!   the probe gives the upstream frontier `f` (every committed update is at an offset
//!   below it). The ingestion's remap collection holds, at each time, the offset upper
//!   bound by then; the answer is a time at which that offset upper is at least `f`,
//!   and the future resolves once the ingestion's upper has passed it, so a read at the
//!   answer does not wait.
//!
//! Other sources are skipped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use strata_controller_api::{
    Antichain, ConnectorConfig, DataSource, Datum, GlobalId, RelationDesc, Row, RtrFuture, ShardId,
    SourceConnection, StorageError, StorageTimestamp, UpstreamProbe,
};
use strata_persist_backend::PersistClient;

use super::fencing::peek_frontiers;
use super::reads::consolidate;
use super::{Controller, persist_err};

/// How one ingestion answers.
enum Target<T: StorageTimestamp> {
    /// A load generator: wait for the upper to pass the one it had when asked.
    Upper { asked_at: Antichain<T> },
    /// A probed connector: ask the upstream, then wait for the remap binding.
    Probe {
        probe: Arc<dyn UpstreamProbe>,
        config: ConnectorConfig,
        remap_shard: ShardId,
        remap_desc: RelationDesc,
    },
}

impl<T: StorageTimestamp> Controller<T> {
    /// See [`Reads::real_time_recency_timestamp`](strata_controller_api::Reads::real_time_recency_timestamp).
    pub(super) async fn real_time_recency_inner(
        &mut self,
        ids: BTreeSet<GlobalId>,
        timeout: Duration,
    ) -> Result<RtrFuture<T>, StorageError<T>> {
        self.drain_internal();
        let mut targets: Vec<(GlobalId, ShardId, Target<T>)> = Vec::new();
        for id in ids {
            let Ok(state) = self.registry.live(id) else {
                continue;
            };
            let DataSource::Ingestion(ingestion) = &state.description.data_source else {
                continue;
            };
            let shard = state.shard;
            let target = match &ingestion.connection {
                connection if connection.supports_real_time_recency() => {
                    let asked_at = match peek_frontiers::<T>(&self.client, shard).await? {
                        Some((_, upper)) => upper,
                        None => Antichain::from_elem(T::minimum()),
                    };
                    Target::Upper { asked_at }
                }
                SourceConnection::Connector(config) => {
                    let Some(probe) = self.config.upstream_probes.get(&config.kind) else {
                        continue;
                    };
                    let remap = self.registry.live(ingestion.remap_collection_id)?;
                    Target::Probe {
                        probe,
                        config: config.clone(),
                        remap_shard: remap.shard,
                        remap_desc: remap.description.desc.clone(),
                    }
                }
                SourceConnection::LoadGenerator { .. } => continue,
            };
            targets.push((id, shard, target));
        }
        let client = self.client.clone();
        Ok(async move {
            let mut result = T::minimum();
            for (id, shard, target) in targets {
                let answer = tokio::time::timeout(timeout, answer(&client, id, shard, target))
                    .await
                    .map_err(|_| StorageError::RtrTimeout(id))??;
                if let Some(time) = answer
                    && result < time
                {
                    result = time;
                }
            }
            Ok(result)
        }
        .boxed())
    }
}

/// The real-time recency time of one ingestion, once its data shard is readable there;
/// `None` for an ingestion whose upper is closed.
async fn answer<T: StorageTimestamp>(
    client: &PersistClient,
    id: GlobalId,
    shard: ShardId,
    target: Target<T>,
) -> Result<Option<T>, StorageError<T>> {
    match target {
        Target::Upper { asked_at } => {
            let upper = advanced_past(client, shard, &asked_at).await?;
            Ok(upper.elements().first().and_then(|t| t.step_back()))
        }
        Target::Probe {
            probe,
            config,
            remap_shard,
            remap_desc,
        } => {
            let frontier = probe
                .upstream_frontier(&config)
                .await
                .map_err(|reason| StorageError::RtrUpstream { id, reason })?;
            let Some(time) = bound_at(client, id, remap_shard, remap_desc, frontier).await? else {
                return Ok(None);
            };
            advanced_past(client, shard, &Antichain::from_elem(time)).await?;
            Ok(Some(time))
        }
    }
}

/// Waits until the remap collection in `remap_shard` binds every offset below
/// `frontier`, and returns a time by which it does; `None` if the remap collection is
/// closed first.
async fn bound_at<T: StorageTimestamp>(
    client: &PersistClient,
    id: GlobalId,
    remap_shard: ShardId,
    remap_desc: RelationDesc,
    frontier: u64,
) -> Result<Option<T>, StorageError<T>> {
    // One reader for the whole wait: each binding is one snapshot, not a new lease.
    let mut reader = client
        .open_leased_reader::<T>(remap_shard, remap_desc)
        .await
        .map_err(persist_err)?;
    let mut upper: Antichain<T> = client
        .fetch_recent_upper(remap_shard)
        .await
        .map_err(persist_err)?;
    let answer = loop {
        let Some(latest) = upper.as_option().copied() else {
            break None;
        };
        if let Some(as_of) = latest.step_back() {
            let rows = consolidate(reader.snapshot(&as_of).await.map_err(persist_err)?);
            if offset_upper(&rows).map_err(|reason| StorageError::RtrUpstream { id, reason })?
                >= frontier
            {
                break Some(as_of);
            }
        }
        upper = advanced_past(client, remap_shard, &upper).await?;
    };
    let _ = reader.expire().await;
    Ok(answer)
}

/// The offset upper a remap collection holds at one time: its one row, a `UInt64`
/// (see `strata_replica::remap`); 0 before the first binding.
fn offset_upper(rows: &[(Row, i64)]) -> Result<u64, String> {
    match rows {
        [] => Ok(0),
        [(row, 1)] => match row.unpack().as_slice() {
            [Datum::UInt64(offset)] => Ok(*offset),
            other => Err(format!(
                "the remap collection holds {other:?}, not an offset"
            )),
        },
        other => Err(format!(
            "the remap collection holds {} rows at one time, not one offset",
            other.len()
        )),
    }
}

/// Waits until `shard`'s upper is beyond `asked_at` (or closed) and returns it. The
/// wait subscribes to the shard's states: an upper this process sees move wakes it.
async fn advanced_past<T: StorageTimestamp>(
    client: &PersistClient,
    shard: ShardId,
    asked_at: &Antichain<T>,
) -> Result<Antichain<T>, StorageError<T>> {
    if asked_at.is_empty() {
        return Ok(Antichain::new());
    }
    client
        .wait_for_upper_past(shard, asked_at)
        .await
        .map_err(persist_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remap_offset_upper_is_its_one_row() {
        let row = |d: Datum| Row::pack(&[d]);
        assert_eq!(offset_upper(&[]), Ok(0));
        assert_eq!(offset_upper(&[(row(Datum::UInt64(7)), 1)]), Ok(7));
        let two = [(row(Datum::UInt64(7)), 1), (row(Datum::UInt64(9)), 1)];
        assert!(offset_upper(&two).unwrap_err().contains("2 rows"));
        assert!(offset_upper(&[(row(Datum::UInt64(7)), 2)]).is_err());
        assert!(
            offset_upper(&[(row(Datum::Int64(7)), 1)])
                .unwrap_err()
                .contains("not an offset")
        );
    }
}
