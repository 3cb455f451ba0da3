//! [`Tables`]: validated table writes queued for the storage task's group commit,
//! monotonic appenders, schema changes and table drops.

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use strata_controller_api::{
    AppendFuture, GlobalId, MonotonicAppender, RelationDesc, Row, StorageError, StorageTimestamp,
    TableWrite, Tables,
};
use tokio::sync::oneshot;

use super::Controller;
use super::storage_task::{AppendRequest, Command, StorageTaskHandle};

/// Waits for a storage-task reply.
async fn reply<T, R>(
    rx: oneshot::Receiver<Result<R, StorageError<T>>>,
) -> Result<R, StorageError<T>> {
    rx.await.map_err(|_| StorageError::ShuttingDown)?
}

/// A validated table write: the first table named, and the rows for each table and
/// its data shard.
type ValidatedWrite = (GlobalId, Vec<super::migrated::MigratedWrite>);

impl<T: StorageTimestamp> Controller<T> {
    /// A `write_ts` for [`Tables::append_table`] that joins the next group commit, for a
    /// host without a timestamp oracle of its own: the tables' shared upper, or the time
    /// after the group commit in flight if that is later. Every caller that asks while a
    /// commit is in flight gets the same time, so their writes commit together as one
    /// compare-and-append on the txns shard, right after the one in flight. (Writing at
    /// the upper instead races the commit in flight, and a write that loses fails with
    /// [`StorageError::UpdateBeforeUpper`].) A write can still lose when a commit
    /// started after this call; retry it at a new `table_write_ts`. `None` once the
    /// tables' upper is closed.
    pub fn table_write_ts(&mut self) -> Option<T> {
        self.drain_internal();
        let upper = self.tables_upper.as_option().copied()?;
        let after_committing = self.committing_ts.map(|ts| ts.step_forward());
        Some(after_committing.map_or(upper, |next| next.max(upper)))
    }

    /// Validates an `append_table` call and returns its writes by shard. Changes nothing.
    fn validate_append(
        &self,
        write_ts: T,
        advance_to: T,
        commands: TableWrite,
    ) -> Result<ValidatedWrite, StorageError<T>> {
        self.check_fenced()?;
        let mut first_id = None;
        let mut writes = Vec::with_capacity(commands.len());
        for (id, rows) in commands {
            let state = self.registry.live_table(id)?;
            if self.read_only && !state.migrated {
                return Err(StorageError::ReadOnly);
            }
            if write_ts >= advance_to {
                return Err(StorageError::InvalidAdvance {
                    write_ts,
                    advance_to,
                });
            }
            if let Some(upper) = self.registry.frontiers.upper(id)
                && !upper.less_equal(&write_ts)
            {
                return Err(StorageError::UpdateBeforeUpper {
                    id,
                    write_ts,
                    upper: upper.clone(),
                });
            }
            for (row, _) in &rows {
                state
                    .description
                    .desc
                    .validate_row(row)
                    .map_err(|mismatch| StorageError::InvalidRow { id, mismatch })?;
            }
            first_id.get_or_insert(id);
            writes.push((id, state.shard, rows));
        }
        match first_id {
            Some(id) => Ok((id, writes)),
            None if write_ts < advance_to => Ok((GlobalId::Transient(0), writes)),
            None => Err(StorageError::InvalidAdvance {
                write_ts,
                advance_to,
            }),
        }
    }
}

/// A monotonic append: validate diffs and rows, then one direct append at the upper.
fn monotonic_append<T: StorageTimestamp>(
    storage_task: &StorageTaskHandle<T>,
    id: GlobalId,
    shard: strata_controller_api::ShardId,
    desc: &RelationDesc,
    updates: Vec<(Row, i64)>,
) -> AppendFuture<T> {
    if let Some((_, diff)) = updates.iter().find(|(_, d)| *d <= 0) {
        let error =
            StorageError::InvalidUsage(format!("monotonic append to {id} with diff {diff}"));
        return futures::future::ready(Err(error)).boxed();
    }
    for (row, _) in &updates {
        if let Err(mismatch) = desc.validate_row(row) {
            return futures::future::ready(Err(StorageError::InvalidRow { id, mismatch })).boxed();
        }
    }
    let (tx, rx) = oneshot::channel();
    storage_task.send(Command::AppendDirect {
        id,
        shard,
        desc: desc.clone(),
        updates,
        reply: tx,
    });
    reply(rx).boxed()
}

#[async_trait]
impl<T: StorageTimestamp> Tables<T> for Controller<T> {
    fn append_table(
        &mut self,
        write_ts: T,
        advance_to: T,
        commands: TableWrite,
    ) -> Result<AppendFuture<T>, StorageError<T>> {
        self.drain_internal();
        let (first_id, writes) = self.validate_append(write_ts, advance_to, commands)?;
        if self.read_only {
            // Only migrated tables passed validation: their own writer appends.
            let Some(migrated) = &self.migrated_tables else {
                return Err(StorageError::ReadOnly);
            };
            return Ok(reply(migrated.append(write_ts, advance_to, writes)).boxed());
        }
        self.table_uppers
            .note_written(writes.iter().map(|(id, _, _)| *id));
        let writes = writes
            .into_iter()
            .map(|(_, shard, rows)| (shard, rows))
            .collect();
        let (tx, rx) = oneshot::channel();
        self.storage_task.send(Command::Append(AppendRequest {
            write_ts,
            advance_to,
            first_id,
            writes,
            reply: tx,
        }));
        Ok(reply(rx).boxed())
    }

    fn monotonic_appender(&self, id: GlobalId) -> Result<MonotonicAppender<T>, StorageError<T>> {
        let state = self.registry.live(id)?;
        let append_only = match &state.description.data_source {
            strata_controller_api::DataSource::Webhook => true,
            strata_controller_api::DataSource::Introspection(kind) => !kind.is_differential(),
            _ => false,
        };
        if !append_only {
            return Err(StorageError::IdentifierInvalid(id));
        }
        let storage_task = self.storage_task.clone_handle();
        let (shard, desc) = (state.shard, state.description.desc.clone());
        Ok(MonotonicAppender::new(
            id,
            Arc::new(move |updates| monotonic_append(&storage_task, id, shard, &desc, updates)),
        ))
    }

    async fn alter_table_desc(
        &mut self,
        table_id: GlobalId,
        new_desc: RelationDesc,
        forget_ts: T,
        register_ts: T,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_fenced()?;
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        let state = self.registry.live_table(table_id)?;
        if forget_ts >= register_ts {
            return Err(StorageError::InvalidUsage(format!(
                "altering {table_id} needs forget_ts < register_ts"
            )));
        }
        // Only nullable columns added at the end: the shard then reads its older parts
        // under the new version (NULL in the added columns) and readers of the older
        // version keep working. Checked before anything is forgotten.
        strata_controller_api::check_evolution(&state.description.desc, &new_desc).map_err(
            |reason| StorageError::IncompatibleAlter {
                id: table_id,
                reason: reason.to_string(),
            },
        )?;
        let shard = state.shard;
        let (tx, rx) = oneshot::channel();
        self.storage_task.send(Command::Forget {
            ts: forget_ts,
            shards: vec![shard],
            reply: tx,
        });
        reply(rx).await?;
        self.client
            .evolve_schema(shard, &new_desc)
            .await
            .map_err(super::persist_err)?;
        self.register_tables(register_ts, vec![(shard, new_desc.clone())])
            .await?;
        if let Some(state) = self.registry.collections.get_mut(&table_id) {
            state.description.desc = new_desc;
        }
        Ok(())
    }

    async fn drop_tables(&mut self, ids: Vec<GlobalId>, ts: T) -> Result<(), StorageError<T>> {
        self.drain_internal();
        // A table fed by a source (an ingestion export) is dropped as the subsource it
        // is, as the reference does; every id is checked before anything is dropped.
        let mut written = Vec::new();
        let mut fed = Vec::new();
        for id in ids {
            let state = self.registry.live(id)?;
            match &state.description.data_source {
                strata_controller_api::DataSource::Table => written.push(id),
                strata_controller_api::DataSource::IngestionExport { .. } => fed.push(id),
                _ => return Err(StorageError::IdentifierInvalid(id)),
            }
        }
        if !written.is_empty() {
            self.drop_tables_inner(written, ts).await?;
        }
        if !fed.is_empty() {
            self.drop_sources_inner(fed, true).await?;
        }
        Ok(())
    }
}
