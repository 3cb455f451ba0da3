//! Creating collections: validation, shard assignment, opening shards concurrently
//! (with a bound), registering tables with the txns shard, and entering the registry.
//! Also opening every collection when a read-only controller becomes writable.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};
use strata_controller_api::{
    Antichain, CollectionDescription, DataSource, GlobalId, IngestionDescription, InstanceId,
    ReadPolicy, RelationDesc, ShardId, StorageError, StorageMetadata, StorageTimestamp, StorageTxn,
};
use strata_persist_backend::SinceHandle;
use timely::PartialOrder;
use tokio::sync::oneshot;

use super::fencing::{fence_shard, peek_frontiers};
use super::registry::CollectionState;
use super::storage_task::Command;
use super::{Controller, persist_err, random_shard};
use crate::frontiers::CollectionConfig;

/// A shard's frontiers as bootstrap found them.
pub(super) struct Opened<T: StorageTimestamp> {
    pub(super) id: GlobalId,
    pub(super) since: Antichain<T>,
    pub(super) upper: Antichain<T>,
    /// The fenced critical since handle; `None` when read-only.
    pub(super) handle: Option<SinceHandle<T>>,
    /// Whether the shard existed (always true once opened for writing).
    pub(super) exists: bool,
}

/// The order in which one call enters collections into the registry: remap collections
/// first, then ingestions (which hold them), then subsources (which need their
/// ingestion).
fn creation_rank<T>(description: &CollectionDescription<T>) -> u8 {
    match description.data_source {
        DataSource::Progress => 0,
        DataSource::Ingestion(_) => 2,
        DataSource::IngestionExport { .. } => 3,
        _ => 1,
    }
}

/// How an ingestion-related collection is registered: what it holds, the instance it
/// runs on, and its policies.
struct Placement {
    dependencies: Vec<GlobalId>,
    instance: Option<InstanceId>,
    /// Ingestions and subsources hold their dependencies one step behind the upper.
    hold: bool,
    /// Ingestion collections and remap collections follow their upper, one step behind.
    step_back: bool,
}

impl<T: StorageTimestamp> Controller<T> {
    /// The ingestion description of `id`, from `batch` or else the registry.
    fn ingestion_in<'a>(
        &'a self,
        id: GlobalId,
        batch: &'a [(GlobalId, CollectionDescription<T>)],
    ) -> Result<&'a IngestionDescription<T>, StorageError<T>> {
        let description = match batch.iter().find(|(i, _)| *i == id) {
            Some((_, description)) => description,
            None => &self.registry.live(id)?.description,
        };
        match &description.data_source {
            DataSource::Ingestion(ingestion) => Ok(ingestion),
            _ => Err(StorageError::IdentifierInvalid(id)),
        }
    }

    /// Where `id` goes in the registry, looking up ingestions in `batch` first.
    fn placement(
        &self,
        id: GlobalId,
        description: &CollectionDescription<T>,
        batch: &[(GlobalId, CollectionDescription<T>)],
    ) -> Result<Placement, StorageError<T>> {
        let placement = match &description.data_source {
            DataSource::Ingestion(ingestion) => Placement {
                dependencies: vec![ingestion.remap_collection_id],
                instance: Some(ingestion.instance_id),
                hold: true,
                step_back: true,
            },
            DataSource::IngestionExport { ingestion_id, .. } => {
                let ingestion = self.ingestion_in(*ingestion_id, batch)?;
                Placement {
                    dependencies: vec![ingestion.remap_collection_id],
                    instance: Some(ingestion.instance_id),
                    hold: true,
                    step_back: true,
                }
            }
            DataSource::Progress => {
                let instance = batch.iter().find_map(|(_, d)| match &d.data_source {
                    DataSource::Ingestion(i) if i.remap_collection_id == id => Some(i.instance_id),
                    _ => None,
                });
                Placement {
                    dependencies: Vec::new(),
                    instance,
                    hold: false,
                    step_back: true,
                }
            }
            // The manager writes introspection collections on every tick; their since
            // follows the upper so their shards compact.
            DataSource::Introspection(_) => Placement {
                dependencies: Vec::new(),
                instance: None,
                hold: false,
                step_back: true,
            },
            _ => Placement {
                dependencies: Vec::new(),
                instance: None,
                hold: false,
                step_back: false,
            },
        };
        Ok(placement)
    }

    /// Collections in `batch` whose ingestion must (re)run once they exist: every new
    /// ingestion, and the ingestion of every new subsource.
    fn ingestions_to_run(batch: &[(GlobalId, CollectionDescription<T>)]) -> BTreeSet<GlobalId> {
        batch
            .iter()
            .filter_map(|(id, d)| match &d.data_source {
                DataSource::Ingestion(_) => Some(*id),
                DataSource::IngestionExport { ingestion_id, .. } => Some(*ingestion_id),
                _ => None,
            })
            .collect()
    }
}

impl<T: StorageTimestamp> Controller<T> {
    /// Validates a create call; returns the collections that are new. Changes nothing.
    fn validate_new(
        &self,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
    ) -> Result<Vec<(GlobalId, CollectionDescription<T>)>, StorageError<T>> {
        let mut seen = BTreeSet::new();
        let mut new = Vec::new();
        for (id, description) in collections {
            if !seen.insert(id) {
                return Err(StorageError::DuplicateId(id));
            }
            match self.registry.collections.get(&id) {
                Some(existing)
                    if existing.description == description
                        && !self.registry.frontiers.is_dropped(id) => {}
                Some(_) => return Err(StorageError::CollectionIdReused(id)),
                None if self.registry.frontiers.contains(id) => {
                    return Err(StorageError::CollectionIdReused(id));
                }
                None => new.push((id, description)),
            }
        }
        for (id, description) in &new {
            let placement = self.placement(*id, description, &new)?;
            for dependency in placement.dependencies {
                if !seen.contains(&dependency) && self.registry.live(dependency).is_err() {
                    return Err(StorageError::IdentifierMissing(dependency));
                }
            }
            if let DataSource::Ingestion(ingestion) = &description.data_source
                && !self.instances.contains_key(&ingestion.instance_id)
            {
                return Err(StorageError::InstanceMissing(ingestion.instance_id));
            }
            if let Some(since) = &description.since
                && since.is_empty()
            {
                return Err(StorageError::InvalidUsage(format!(
                    "{id} cannot be created with an empty since"
                )));
            }
        }
        Ok(new)
    }

    /// The shard of each new collection: from `storage_metadata`, else from the
    /// catalog, else a fresh one recorded in the catalog.
    async fn assign_shards(
        &self,
        storage_metadata: &StorageMetadata,
        ids: &[GlobalId],
    ) -> Result<BTreeMap<GlobalId, ShardId>, StorageError<T>> {
        let mut txn = (self.catalog)();
        let known = txn.get_collection_metadata();
        let mut shards = BTreeMap::new();
        let mut fresh = BTreeMap::new();
        for id in ids {
            let shard = match storage_metadata.collection_metadata.get(id) {
                Some(shard) => *shard,
                None => match known.get(id) {
                    Some(shard) => *shard,
                    None => *fresh.entry(*id).or_insert_with(random_shard),
                },
            };
            shards.insert(*id, shard);
        }
        if !fresh.is_empty() {
            txn.insert_collection_metadata(fresh)?;
            txn.commit().await?;
        }
        Ok(shards)
    }

    /// Opens (writable) or peeks at (read-only) shards, at most `open_concurrency` at
    /// once.
    pub(super) async fn open_shards(
        &self,
        shards: Vec<(GlobalId, ShardId, RelationDesc, Option<String>, bool)>,
    ) -> Result<Vec<Opened<T>>, StorageError<T>> {
        let client = self.client.clone();
        let (epoch, read_only) = (self.epoch, self.read_only);
        let bound = self.config.open_concurrency.max(1);
        stream::iter(shards)
            .map(|(id, shard, desc, name, is_table)| {
                let client = client.clone();
                async move {
                    if read_only {
                        let minimum = || Antichain::from_elem(T::minimum());
                        let (exists, (since, upper)) = match peek_frontiers(&client, shard).await? {
                            Some(frontiers) => (true, frontiers),
                            None => (false, (minimum(), minimum())),
                        };
                        return Ok(Opened {
                            id,
                            since,
                            upper,
                            handle: None,
                            exists,
                        });
                    }
                    // A table's writer is the txns shard's, which registers it next
                    // (recording its schema), and its upper is the txns shard's: the
                    // fence below creates the shard, and no read is needed here. Any
                    // other shard gets its schema from a writer now.
                    let upper = if is_table {
                        Antichain::from_elem(T::minimum())
                    } else {
                        let writer = client
                            .open_writer::<T>(shard, desc)
                            .await
                            .map_err(persist_err)?;
                        writer.upper().clone()
                    };
                    let handle = fence_shard(&client, shard, epoch).await?;
                    if let Some(name) = name {
                        // Off the create path: a name is for people, and a create must
                        // not wait on it (a failure is logged, and the next open retries).
                        let client = client.clone();
                        tokio::spawn(async move {
                            if let Err(error) = client.set_shard_name(shard, &name).await {
                                tracing::debug!(%shard, %error, "cannot name a shard");
                            }
                        });
                    }
                    let since = handle.since().clone();
                    Ok(Opened {
                        id,
                        since,
                        upper,
                        handle: Some(handle),
                        exists: true,
                    })
                }
            })
            .buffer_unordered(bound)
            .try_collect()
            .await
    }

    /// Registers tables with the txns shard at `register_ts`; returns the txns upper.
    pub(super) async fn register_tables(
        &self,
        register_ts: T,
        shards: Vec<(ShardId, RelationDesc)>,
    ) -> Result<Antichain<T>, StorageError<T>> {
        let (reply, rx) = oneshot::channel();
        self.storage_task.send(Command::Register {
            ts: register_ts,
            shards,
            reply,
        });
        rx.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// The upper of a table as a read-only controller sees it: a table whose shard
    /// exists was registered with the txns shard by an earlier controller, so its upper
    /// is the txns upper.
    async fn read_only_table_upper(
        &self,
        upper: Antichain<T>,
        exists: bool,
    ) -> Result<Antichain<T>, StorageError<T>> {
        if !exists {
            return Ok(upper);
        }
        Ok(
            match peek_frontiers::<T>(&self.client, self.txns_shard).await? {
                Some((_, txns_upper)) if PartialOrder::less_than(&upper, &txns_upper) => txns_upper,
                _ => upper,
            },
        )
    }

    /// See [`Collections::create_collections_for_bootstrap`](strata_controller_api::Collections::create_collections_for_bootstrap).
    pub(super) async fn create_collections_inner(
        &mut self,
        storage_metadata: &StorageMetadata,
        register_ts: Option<T>,
        collections: Vec<(GlobalId, CollectionDescription<T>)>,
        migrated: &BTreeSet<GlobalId>,
    ) -> Result<(), StorageError<T>> {
        self.drain_internal();
        self.check_fenced()?;
        let mut new = self.validate_new(collections)?;
        if new.is_empty() {
            return Ok(());
        }
        new.sort_by_key(|(_, d)| creation_rank(d));
        let to_run = Self::ingestions_to_run(&new);
        let has_tables = new.iter().any(|(_, d)| d.is_table());
        if has_tables && register_ts.is_none() && !self.read_only {
            return Err(StorageError::InvalidUsage(
                "register_ts is required when creating tables".into(),
            ));
        }
        let ids: Vec<GlobalId> = new.iter().map(|(id, _)| *id).collect();
        let shards = self.assign_shards(storage_metadata, &ids).await?;
        let to_open = new
            .iter()
            .filter_map(|(id, d)| {
                shards
                    .get(id)
                    .map(|s| (*id, *s, d.desc.clone(), d.display_name(), d.is_table()))
            })
            .collect();
        let mut opened: BTreeMap<GlobalId, Opened<T>> = self
            .open_shards(to_open)
            .await?
            .into_iter()
            .map(|o| (o.id, o))
            .collect();
        let tables: Vec<(ShardId, RelationDesc)> = new
            .iter()
            .filter(|(_, d)| d.is_table())
            .filter_map(|(id, d)| shards.get(id).map(|s| (*s, d.desc.clone())))
            .collect();
        let mut txns_upper = None;
        if let (false, Some(ts), false) = (self.read_only, register_ts, tables.is_empty()) {
            txns_upper = Some(self.register_tables(ts, tables).await?);
        }
        let handles = opened
            .values_mut()
            .filter_map(|o| o.handle.take())
            .collect();
        self.storage_task.send(Command::Adopt { handles });
        let batch = new.clone();
        // A remap collection created with its ingestion follows its upper only once the
        // ingestion's collections hold it: after a restart its upper is ahead of theirs
        // (a binding is minted before its data is written), and entered first with its
        // policy it would drag their sinces past their uppers.
        let mut deferred = Vec::new();
        for (id, description) in new {
            let (Some(shard), Some(o)) = (shards.get(&id), opened.remove(&id)) else {
                continue;
            };
            let mut placement = self.placement(id, &description, &batch)?;
            if matches!(description.data_source, DataSource::Progress)
                && placement.instance.is_some()
                && placement.step_back
            {
                placement.step_back = false;
                deferred.push((id, ReadPolicy::step_back()));
            }
            let mut upper = o.upper;
            if description.is_table() {
                upper = match &txns_upper {
                    Some(txns_upper) => txns_upper.clone(),
                    None => self.read_only_table_upper(upper, o.exists).await?,
                };
            }
            self.insert_collection(
                id,
                description,
                placement,
                *shard,
                (o.since, upper),
                migrated.contains(&id),
                txns_upper.is_some(),
            )?;
            self.follow_upper(id, o.exists);
            self.write_if_migrated(id);
        }
        let effects = self.registry.frontiers.set_read_policies(deferred)?;
        self.execute(effects);
        for id in to_run {
            self.run_ingestion(id)?;
        }
        self.register_introspection().await
    }

    /// Enters one opened collection into the registry.
    #[allow(clippy::too_many_arguments)]
    fn insert_collection(
        &mut self,
        id: GlobalId,
        description: CollectionDescription<T>,
        placement: Placement,
        shard: ShardId,
        (shard_since, upper): (Antichain<T>, Antichain<T>),
        migrated: bool,
        txns_registered: bool,
    ) -> Result<(), StorageError<T>> {
        let mut since = shard_since;
        if let Some(wanted) = &description.since
            && PartialOrder::less_than(&since, wanted)
        {
            since = wanted.clone();
        }
        let mut config =
            CollectionConfig::new(since, upper).with_dependencies(placement.dependencies);
        if placement.step_back {
            config = config.with_read_policy(ReadPolicy::step_back());
        }
        if placement.hold {
            config = config.with_hold_policy(ReadPolicy::step_back());
        }
        if let Some(instance) = placement.instance {
            config = config.on_instance(instance);
        }
        let is_table = description.is_table();
        let effects = self.registry.frontiers.register(id, config)?;
        if let (DataSource::Ingestion(ingestion), Some(instance)) =
            (&description.data_source, placement.instance)
        {
            // A remap collection created in an earlier call learns its instance now.
            self.registry
                .frontiers
                .set_instance(ingestion.remap_collection_id, instance);
        }
        self.registry.collections.insert(
            id,
            CollectionState {
                description,
                shard,
                migrated,
                txns_registered: txns_registered && is_table,
            },
        );
        self.introspection_created(id);
        self.execute(effects);
        Ok(())
    }

    /// Starts following `id`'s upper in persist if nothing else will report it: always
    /// for a collection written outside the controller, and while read-only for every
    /// collection the previous controller may still write (a table through the txns
    /// shard, if its shard existed, since only then did a controller register it).
    fn follow_upper(&mut self, id: GlobalId, exists: bool) {
        let (Some(state), Some(upper)) = (
            self.registry.collections.get(&id),
            self.registry.frontiers.upper(id),
        ) else {
            return;
        };
        let shard = match &state.description.data_source {
            DataSource::Other => state.shard,
            // Written here while read-only (see `migrated`), which reports its upper.
            DataSource::Table if self.read_only && state.migrated => return,
            DataSource::Table if self.read_only && exists => self.txns_shard,
            DataSource::Table => return,
            _ if self.read_only => state.shard,
            _ => return,
        };
        let upper = upper.clone();
        self.upper_watch.watch(id, shard, upper);
    }

    /// While read-only, hands a migrated table to the migrated-table writer.
    fn write_if_migrated(&mut self, id: GlobalId) {
        let Some(state) = self.registry.collections.get(&id) else {
            return;
        };
        if !(self.read_only && state.migrated && state.description.is_table()) {
            return;
        }
        let (shard, desc) = (state.shard, state.description.desc.clone());
        let client = self.client.clone();
        let (txns_shard, events) = (self.txns_shard, self.events_tx.clone());
        self.migrated_tables
            .get_or_insert_with(|| {
                super::migrated::MigratedTables::spawn(client, txns_shard, events)
            })
            .add(id, shard, desc);
    }

    /// Stops following the uppers that, writable, the controller learns itself: all but
    /// those of collections written outside it.
    pub(super) fn follow_writable_uppers(&mut self) {
        let own: Vec<GlobalId> = self
            .upper_watch
            .ids()
            .filter(|id| {
                !self
                    .registry
                    .collections
                    .get(id)
                    .is_some_and(|c| matches!(c.description.data_source, DataSource::Other))
            })
            .collect();
        self.upper_watch.unwatch(own);
    }

    /// Opens every collection a read-only controller created: fences their shards and
    /// registers their tables at `register_ts`.
    pub(super) async fn open_for_writes(
        &mut self,
        register_ts: Option<T>,
    ) -> Result<(), StorageError<T>> {
        let live: Vec<(GlobalId, ShardId, RelationDesc, bool, Option<String>)> = self
            .registry
            .collections
            .iter()
            .filter(|(id, _)| !self.registry.frontiers.is_dropped(**id))
            .map(|(id, c)| {
                (
                    *id,
                    c.shard,
                    c.description.desc.clone(),
                    c.description.is_table(),
                    c.description.display_name(),
                )
            })
            .collect();
        let tables: Vec<(ShardId, RelationDesc)> = live
            .iter()
            .filter(|c| c.3)
            .map(|c| (c.1, c.2.clone()))
            .collect();
        let opened = self
            .open_shards(
                live.iter()
                    .map(|c| (c.0, c.1, c.2.clone(), c.4.clone(), c.3))
                    .collect(),
            )
            .await?;
        let handles = opened.into_iter().filter_map(|o| o.handle).collect();
        self.storage_task.send(Command::Adopt { handles });
        if !tables.is_empty() {
            let ts = register_ts.ok_or_else(|| {
                StorageError::InvalidUsage("register_ts is required to make tables writable".into())
            })?;
            self.register_tables(ts, tables).await?;
            for (id, ..) in live.iter().filter(|c| c.3) {
                if let Some(state) = self.registry.collections.get_mut(id) {
                    state.txns_registered = true;
                }
            }
        }
        Ok(())
    }
}

/// Writes the durable side of creating and dropping collections into `txn`.
pub(super) fn prepare_state_in<T: StorageTimestamp>(
    txn: &mut (dyn StorageTxn<T> + Send),
    ids_to_add: BTreeSet<GlobalId>,
    ids_to_drop: BTreeSet<GlobalId>,
) -> Result<(), StorageError<T>> {
    let known = txn.get_collection_metadata();
    let fresh: BTreeMap<GlobalId, ShardId> = ids_to_add
        .into_iter()
        .filter(|id| !known.contains_key(id))
        .map(|id| (id, random_shard()))
        .collect();
    txn.insert_collection_metadata(fresh)?;
    let dropped = txn.delete_collection_metadata(ids_to_drop);
    txn.insert_unfinalized_shards(dropped.into_iter().map(|(_, shard)| shard).collect())
}
