//! [`Introspection`]: the frontier-recording hook, append-only introspection writes, and
//! persist state inspection.

use async_trait::async_trait;
use strata_controller_api::{
    Antichain, DataSource, GlobalId, Introspection, IntrospectionType, Row, StorageError,
    StorageTimestamp,
};
use tokio::sync::oneshot;

use super::worker::Command;
use super::{Controller, persist_err};

impl<T: StorageTimestamp> Controller<T> {
    /// Called for every `RecordFrontiers` effect. Introspection collections are wired up
    /// by a later issue; until then there is nothing to record.
    pub(super) fn record_frontiers_hook(
        &mut self,
        _id: GlobalId,
        _since: Antichain<T>,
        _upper: Antichain<T>,
    ) {
    }
}

#[async_trait]
impl<T: StorageTimestamp> Introspection<T> for Controller<T> {
    fn record_frontiers(&mut self) {
        self.drain_internal();
    }

    fn append_introspection_updates(
        &mut self,
        kind: IntrospectionType,
        updates: Vec<(Row, i64)>,
    ) -> Result<(), StorageError<T>> {
        if kind.is_differential() {
            return Err(StorageError::InvalidUsage(format!(
                "{kind:?} is differential, not append-only"
            )));
        }
        let target = self.registry.collections.iter().find(|(id, c)| {
            c.description.data_source == DataSource::Introspection(kind)
                && !self.registry.frontiers.is_dropped(**id)
        });
        let Some((id, state)) = target else {
            return Ok(());
        };
        for (row, _) in &updates {
            state
                .description
                .desc
                .validate_row(row)
                .map_err(|mismatch| StorageError::InvalidRow { id: *id, mismatch })?;
        }
        if self.read_only || updates.is_empty() {
            return Ok(());
        }
        let (reply, _) = oneshot::channel();
        self.worker.send(Command::AppendDirect {
            id: *id,
            shard: state.shard,
            desc: state.description.desc.clone(),
            updates,
            reply,
        });
        Ok(())
    }

    async fn inspect_persist_state(
        &self,
        id: GlobalId,
    ) -> Result<serde_json::Value, StorageError<T>> {
        let state = self.registry.live(id)?;
        self.client.inspect(state.shard).await.map_err(persist_err)
    }
}
