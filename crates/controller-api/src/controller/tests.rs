//! The traits are implementable, dyn-compatible, and their provided methods forward.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::executor::block_on;
use futures::{FutureExt, StreamExt};
use timely::progress::{Antichain, ChangeBatch};

use super::*;
use crate::description::{
    CollectionDescription, CollectionMetadata, ExportDescription, IntrospectionType,
    SinkConnection, SourceConnection,
};
use crate::error::StorageError;
use crate::ids::{GlobalId, InstanceId, ReplicaId, ShardId};
use crate::read_hold::{ChangeTx, ReadHold, ReadHoldError};
use crate::read_policy::ReadPolicy;
use crate::row::{RelationDesc, Row};
use crate::timestamp::Timestamp;

type T = Timestamp;
type R<V> = Result<V, StorageError<T>>;

/// A controller that records calls and keeps only what the assertions need.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    collections: BTreeMap<GlobalId, CollectionDescription<T>>,
    migrated: BTreeSet<GlobalId>,
    params: StorageParameters,
}

impl Recorder {
    fn missing(&self, id: GlobalId) -> R<()> {
        if self.collections.contains_key(&id) {
            Ok(())
        } else {
            Err(StorageError::IdentifierMissing(id))
        }
    }

    fn frontiers(id: GlobalId) -> CollectionFrontiers<T> {
        let f = Antichain::from_elem(Timestamp::new(1));
        CollectionFrontiers {
            id,
            upper: f.clone(),
            implied_capability: f.clone(),
            since: f,
        }
    }
}

#[async_trait]
impl Collections<T> for Recorder {
    async fn prepare_state(
        &self,
        txn: &mut (dyn StorageTxn<T> + Send),
        add: BTreeSet<GlobalId>,
        _: BTreeSet<GlobalId>,
    ) -> R<()> {
        let fresh = add
            .iter()
            .map(|id| (*id, ShardId::from_bytes([id.to_string().len() as u8; 16])))
            .collect();
        txn.insert_collection_metadata(fresh)
    }
    async fn create_collections_for_bootstrap(
        &mut self,
        meta: &StorageMetadata,
        _: Option<T>,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
        migrated: &BTreeSet<GlobalId>,
    ) -> R<()> {
        for (id, desc) in collections {
            meta.get_collection_shard::<T>(id)?;
            self.collections.insert(id, desc);
        }
        self.migrated.clone_from(migrated);
        self.calls.push("create".into());
        Ok(())
    }
    fn check_alter_ingestion_source_desc(&self, id: GlobalId, _: &SourceConnection) -> R<()> {
        Err(StorageError::IdentifierInvalid(id))
    }
    async fn alter_ingestion_source_desc(&mut self, id: GlobalId, c: SourceConnection) -> R<()> {
        self.check_alter_ingestion_source_desc(id, &c)
    }
    async fn alter_ingestion_connections(
        &mut self,
        _: BTreeMap<GlobalId, SourceConnection>,
    ) -> R<()> {
        Ok(())
    }
    async fn drop_sources(&mut self, ids: Vec<GlobalId>) -> R<()> {
        ids.iter().try_for_each(|id| self.missing(*id))?;
        ids.iter().for_each(|id| drop(self.collections.remove(id)));
        Ok(())
    }
    async fn drop_sources_unvalidated(&mut self, ids: Vec<GlobalId>) -> R<()> {
        ids.iter().for_each(|id| drop(self.collections.remove(id)));
        Ok(())
    }
    fn collection_metadata(&self, id: GlobalId) -> R<CollectionMetadata> {
        self.missing(id)?;
        Err(StorageError::IdentifierInvalid(id))
    }
    fn collection_frontiers(&self, id: GlobalId) -> R<CollectionFrontiers<T>> {
        self.missing(id).map(|()| Self::frontiers(id))
    }
    fn collections_frontiers(&self, ids: Vec<GlobalId>) -> R<Vec<CollectionFrontiers<T>>> {
        ids.into_iter()
            .map(|id| self.collection_frontiers(id))
            .collect()
    }
    fn active_collection_frontiers(&self) -> Vec<CollectionFrontiers<T>> {
        self.collections
            .keys()
            .map(|id| Self::frontiers(*id))
            .collect()
    }
    fn active_collection_metadatas(&self) -> Vec<(GlobalId, CollectionMetadata)> {
        Vec::new()
    }
    fn check_exists(&self, id: GlobalId) -> R<()> {
        self.missing(id)
    }
}

#[async_trait]
impl Tables<T> for Recorder {
    fn append_table(
        &mut self,
        write_ts: T,
        advance_to: T,
        commands: TableWrite,
    ) -> R<AppendFuture<T>> {
        if commands
            .iter()
            .any(|(_, rows)| !rows.is_empty() && write_ts >= advance_to)
        {
            return Err(StorageError::InvalidAdvance {
                write_ts,
                advance_to,
            });
        }
        Ok(async { Ok(()) }.boxed())
    }
    fn monotonic_appender(&self, id: GlobalId) -> R<MonotonicAppender<T>> {
        Ok(MonotonicAppender::new(
            id,
            Arc::new(|_| async { Ok(()) }.boxed()),
        ))
    }
    async fn alter_table_desc(&mut self, id: GlobalId, _: RelationDesc, _: T, _: T) -> R<()> {
        self.missing(id)
    }
    async fn drop_tables(&mut self, ids: Vec<GlobalId>, _: T) -> R<()> {
        self.drop_sources(ids).await
    }
}

#[async_trait]
impl Exports<T> for Recorder {
    async fn create_exports(&mut self, _: Vec<(GlobalId, ExportDescription<T>)>) -> R<()> {
        Ok(())
    }
    async fn alter_export(&mut self, id: GlobalId, _: ExportDescription<T>) -> R<()> {
        Err(StorageError::IdentifierMissing(id))
    }
    async fn alter_export_connections(&mut self, _: BTreeMap<GlobalId, SinkConnection>) -> R<()> {
        Ok(())
    }
    fn drop_sinks(&mut self, ids: Vec<GlobalId>) -> R<()> {
        ids.first()
            .map_or(Ok(()), |id| Err(StorageError::IdentifierMissing(*id)))
    }
    fn drop_sinks_unvalidated(&mut self, _: Vec<GlobalId>) -> R<()> {
        Ok(())
    }
    fn export(&self, id: GlobalId) -> R<ExportDescription<T>> {
        Err(StorageError::IdentifierMissing(id))
    }
}

impl Instances<T> for Recorder {
    fn create_instance(&mut self, id: InstanceId) -> R<()> {
        Err(StorageError::InstanceExists(id))
    }
    fn drop_instance(&mut self, id: InstanceId) -> R<()> {
        Err(StorageError::InstanceMissing(id))
    }
    fn connect_replica(
        &mut self,
        instance: InstanceId,
        replica: ReplicaId,
        _: ReplicaConfig,
    ) -> R<()> {
        Err(StorageError::ReplicaExists { instance, replica })
    }
    fn drop_replica(&mut self, instance: InstanceId, replica: ReplicaId) -> R<()> {
        Err(StorageError::ReplicaMissing { instance, replica })
    }
}

#[async_trait]
impl Reads<T> for Recorder {
    fn snapshot(&self, _: GlobalId, _: T) -> SnapshotFuture<T> {
        async { Ok(Vec::new()) }.boxed()
    }
    async fn snapshot_latest(&mut self, id: GlobalId) -> R<Vec<(Row, i64)>> {
        self.snapshot(id, Timestamp::new(0)).await
    }
    async fn snapshot_cursor(&mut self, _: GlobalId, _: T) -> R<SnapshotCursor<T>> {
        Ok(futures::stream::iter([Ok(Vec::new())]).boxed())
    }
    async fn snapshot_stats(&self, _: GlobalId, _: Antichain<T>) -> R<SnapshotStats> {
        Ok(SnapshotStats { num_updates: 7 })
    }
    async fn snapshot_parts_stats(
        &self,
        _: GlobalId,
        _: Antichain<T>,
    ) -> R<crate::SnapshotPartsStats> {
        Ok(crate::SnapshotPartsStats::default())
    }
    fn set_read_policy(&mut self, policies: Vec<(GlobalId, ReadPolicy<T>)>) -> R<()> {
        policies.iter().try_for_each(|(id, _)| self.missing(*id))
    }
    fn acquire_read_holds(
        &mut self,
        ids: Vec<GlobalId>,
    ) -> Result<Vec<ReadHold<T>>, ReadHoldError<T>> {
        let tx: ChangeTx<T> = Arc::new(|_, _: ChangeBatch<T>| Ok(()));
        ids.into_iter()
            .map(|id| match self.collections.contains_key(&id) {
                true => Ok(ReadHold::new(
                    id,
                    Antichain::from_elem(Timestamp::new(1)),
                    Arc::clone(&tx),
                )),
                false => Err(ReadHoldError::CollectionMissing { id }),
            })
            .collect()
    }
    async fn real_time_recency_timestamp(
        &mut self,
        _: BTreeSet<GlobalId>,
        _: Duration,
    ) -> R<RtrFuture<T>> {
        Ok(async { Ok(Timestamp::new(0)) }.boxed())
    }
}

#[async_trait]
impl Lifecycle<T> for Recorder {
    fn initialization_complete(&mut self) {
        self.calls.push("initialization_complete".into());
    }
    async fn allow_writes(&mut self, _: Option<T>) -> R<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        true
    }
    fn update_parameters(&mut self, params: StorageParameters) {
        self.params.update(params);
    }
    fn parameters(&self) -> &StorageParameters {
        &self.params
    }
    async fn ready(&mut self) {}
    fn process(&mut self) -> R<Option<StorageResponse<T>>> {
        Ok(Some(StorageResponse::FrontierUpdates(vec![(
            GlobalId::User(1),
            Antichain::new(),
        )])))
    }
}

#[async_trait]
impl Introspection<T> for Recorder {
    fn record_frontiers(&mut self) {
        self.calls.push("record_frontiers".into());
    }
    fn update_introspection_collection(
        &mut self,
        kind: IntrospectionType,
        _: crate::StorageWriteOp,
    ) -> R<()> {
        Err(StorageError::InvalidUsage(format!("{kind:?}")))
    }
    fn append_introspection_updates(
        &mut self,
        kind: IntrospectionType,
        _: Vec<(Row, i64)>,
    ) -> R<()> {
        match kind.is_differential() {
            true => Err(StorageError::InvalidUsage(format!(
                "{kind:?} is differential"
            ))),
            false => Ok(()),
        }
    }
    async fn inspect_persist_state(&self, id: GlobalId) -> R<serde_json::Value> {
        self.missing(id)?;
        Ok(serde_json::json!({ "id": id.to_string() }))
    }
}

#[test]
fn a_whole_controller_is_usable_as_a_trait_object() {
    let catalog = MemoryCatalog::new();
    let mut controller: Box<dyn StorageController<T>> = Box::new(Recorder::default());
    let (a, b) = (GlobalId::User(1), GlobalId::User(22));

    let mut txn = catalog.begin::<T>();
    block_on(controller.prepare_state(&mut txn, BTreeSet::from([a, b]), BTreeSet::new())).unwrap();
    block_on(txn.commit()).unwrap();
    let meta = StorageMetadata::from_txn(&txn);

    let table = CollectionDescription::table(RelationDesc::empty());
    block_on(controller.create_collections(
        &meta,
        Some(Timestamp::new(1)),
        vec![(a, table.clone()), (b, table)],
    ))
    .unwrap();
    controller.check_exists(a).unwrap();
    assert_eq!(
        controller
            .collections_frontiers(vec![b, a])
            .unwrap()
            .iter()
            .map(|f| f.id)
            .collect::<Vec<_>>(),
        vec![b, a]
    );
    assert!(matches!(
        controller.check_exists(GlobalId::User(3)),
        Err(StorageError::IdentifierMissing(_))
    ));

    let holds = controller.acquire_read_holds(vec![a, b]).unwrap();
    assert_eq!(holds.len(), 2);
    assert!(matches!(
        controller.acquire_read_holds(vec![GlobalId::User(3)]),
        Err(ReadHoldError::CollectionMissing { .. })
    ));

    let write = vec![(a, vec![(Row::pack(&[]), 1)])];
    assert!(matches!(
        controller.append_table(Timestamp::new(5), Timestamp::new(5), write.clone()),
        Err(StorageError::InvalidAdvance { .. })
    ));
    block_on(
        controller
            .append_table(Timestamp::new(5), Timestamp::new(6), write)
            .unwrap(),
    )
    .unwrap();

    let chunks: Vec<_> = block_on(async {
        let cursor = controller
            .snapshot_cursor(a, Timestamp::new(1))
            .await
            .unwrap();
        cursor.collect().await
    });
    assert_eq!(chunks.len(), 1);
    assert_eq!(
        block_on(controller.snapshot_stats(a, Antichain::new()))
            .unwrap()
            .num_updates,
        7
    );
    assert_eq!(
        block_on(controller.inspect_persist_state(a)).unwrap()["id"],
        "u1"
    );

    controller.update_parameters(StorageParameters {
        sink_batch_max_updates: Some(3),
        ..Default::default()
    });
    assert_eq!(controller.parameters().sink_batch_max_updates(), 3);
    assert!(matches!(
        controller.process().unwrap(),
        Some(StorageResponse::FrontierUpdates(_))
    ));
    assert!(
        controller
            .append_introspection_updates(IntrospectionType::Frontiers, vec![])
            .is_err()
            && controller
                .append_introspection_updates(IntrospectionType::SourceStatusHistory, vec![])
                .is_ok()
    );
}

#[test]
fn create_collections_forwards_with_no_migrated_collections() {
    let mut recorder = Recorder {
        migrated: BTreeSet::from([GlobalId::System(1)]),
        ..Default::default()
    };
    let meta = StorageMetadata::default();
    block_on(recorder.create_collections(&meta, None, vec![])).unwrap();
    assert_eq!(recorder.calls, vec!["create".to_owned()]);
    assert!(recorder.migrated.is_empty());
}

/// Narrow traits are usable on their own, as generic bounds.
fn instance_errors<I: Instances<T> + ?Sized>(instances: &mut I) -> Vec<String> {
    let (i, r) = (InstanceId(1), ReplicaId(2));
    let config = ReplicaConfig {
        location: ReplicaLocation::InProcess { workers: 1 },
    };
    [
        instances.create_instance(i),
        instances.drop_instance(i),
        instances.connect_replica(i, r, config),
        instances.drop_replica(i, r),
    ]
    .into_iter()
    .map(|res| res.unwrap_err().to_string())
    .collect()
}

#[test]
fn instance_errors_name_the_ids() {
    let errors = instance_errors(&mut Recorder::default());
    assert_eq!(
        errors,
        vec![
            "instance already exists: i1",
            "instance does not exist: i1",
            "replica r2 already exists on instance i1",
            "replica r2 does not exist on instance i1",
        ]
    );
}
