//! Real-time recency: a time at which everything an ingestion's upstream had produced
//! when asked is visible.
//!
//! A load generator's upstream is the generator itself, and each ingestion round binds
//! every offset generated so far. So once an ingestion's upper passes the upper it had
//! when asked, the round at the time just before the new upper holds every offset that
//! existed at the call; that time is the answer. Sources that cannot report an upstream
//! frontier are skipped.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::FutureExt;
use strata_controller_api::{
    Antichain, DataSource, GlobalId, RtrFuture, ShardId, StorageError, StorageTimestamp,
};
use strata_persist_backend::PersistClient;

use super::fencing::peek_frontiers;
use super::{Controller, persist_err};

impl<T: StorageTimestamp> Controller<T> {
    /// See [`Reads::real_time_recency_timestamp`](strata_controller_api::Reads::real_time_recency_timestamp).
    pub(super) async fn real_time_recency_inner(
        &mut self,
        ids: BTreeSet<GlobalId>,
        timeout: Duration,
    ) -> Result<RtrFuture<T>, StorageError<T>> {
        self.drain_internal();
        let mut targets: Vec<(GlobalId, ShardId, Antichain<T>)> = Vec::new();
        for id in ids {
            let Ok(state) = self.registry.live(id) else {
                continue;
            };
            let DataSource::Ingestion(ingestion) = &state.description.data_source else {
                continue;
            };
            if !ingestion.connection.supports_real_time_recency() {
                continue;
            }
            let shard = state.shard;
            let upper = match peek_frontiers::<T>(&self.client, shard).await? {
                Some((_, upper)) => upper,
                None => Antichain::from_elem(T::minimum()),
            };
            targets.push((id, shard, upper));
        }
        let client = self.client.clone();
        Ok(async move {
            let mut result = T::minimum();
            for (id, shard, asked_at) in targets {
                let wait = advanced_past(&client, shard, &asked_at);
                let upper = tokio::time::timeout(timeout, wait)
                    .await
                    .map_err(|_| StorageError::RtrTimeout(id))??;
                if let Some(time) = upper.elements().first().and_then(|t| t.step_back())
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
