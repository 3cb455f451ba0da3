//! What the controller wants its introspection collections to hold, kept whether or not
//! they can be written yet, and the [`CollectionManager`] that writes them.
//!
//! The controller mirrors the desired contents of the differential kinds it maintains
//! itself (`ShardMapping`, `Frontiers`, `ReplicaFrontiers`), one entry per key (the
//! frontiers as frontiers: they change on every upper report, so their rows are built
//! only when a collection of their kind is written). A change becomes a retraction of
//! the key's old row plus an insertion of its new one, sent to every registered
//! collection of that kind. A collection registered later
//! (created later, or when a read-only controller becomes writable) starts from the
//! whole mirror, so the manager never writes a partial state.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use strata_controller_api::{
    Antichain, Datum, GlobalId, IntrospectionType, ReplicaId, Row, ShardId, StatusUpdate,
    StorageError, StorageTimestamp, StorageWriteOp,
};
use strata_introspection::schema::frontier_text;
use strata_introspection::{
    CollectionManager, Metrics, SinkStatistics, SourceStatistics, StatisticsScraper,
};

/// The introspection side of the controller. See the module docs.
pub(crate) struct IntrospectionState<T: StorageTimestamp> {
    pub(crate) manager: CollectionManager<T>,
    pub(crate) metrics: Metrics,
    /// Live introspection collections and their kinds.
    pub(crate) collections: BTreeMap<GlobalId, IntrospectionType>,
    /// The subset of `collections` the manager writes (opened for writing).
    pub(crate) registered: BTreeSet<GlobalId>,
    shard_mapping: BTreeMap<GlobalId, Row>,
    /// Frontiers change on every upper report, so they are kept as frontiers and made
    /// rows only for a registered collection of their kind (or its registration).
    frontiers: FxHashMap<GlobalId, (Antichain<T>, Antichain<T>)>,
    /// Per collection, each replica's upper (collections run on few replicas).
    replica_frontiers: FxHashMap<GlobalId, ReplicaUppers<T>>,
    pub(crate) source_statistics: BTreeMap<GlobalId, StatisticsScraper<SourceStatistics, T>>,
    pub(crate) sink_statistics: BTreeMap<GlobalId, StatisticsScraper<SinkStatistics, T>>,
    /// The desired contents of the differential kinds a coordinator writes.
    coordinator: BTreeMap<IntrospectionType, BTreeMap<Row, i64>>,
}

/// Each replica's upper of one collection.
type ReplicaUppers<T> = SmallVec<[(ReplicaId, Antichain<T>); 1]>;

fn text(s: String) -> Datum {
    Datum::String(s)
}

/// The `Frontiers` row of `id`.
fn frontiers_row<T: StorageTimestamp>(
    id: GlobalId,
    since: &Antichain<T>,
    upper: &Antichain<T>,
) -> Row {
    Row::pack(&[
        text(id.to_string()),
        text(frontier_text(since)),
        text(frontier_text(upper)),
    ])
}

/// The `ReplicaFrontiers` row of `id` on `replica`.
fn replica_frontier_row<T: StorageTimestamp>(
    id: GlobalId,
    replica: ReplicaId,
    upper: &Antichain<T>,
) -> Row {
    Row::pack(&[
        text(id.to_string()),
        text(replica.to_string()),
        text(frontier_text(upper)),
    ])
}

/// Replaces `key`'s row in `map` with `row` (or removes it); returns the difference.
fn upsert<K: Ord>(map: &mut BTreeMap<K, Row>, key: K, row: Option<Row>) -> Vec<(Row, i64)> {
    let old = match &row {
        Some(row) => map.insert(key, row.clone()),
        None => map.remove(&key),
    };
    if old == row {
        return Vec::new();
    }
    old.map(|r| (r, -1))
        .into_iter()
        .chain(row.map(|r| (r, 1)))
        .collect()
}

impl<T: StorageTimestamp> IntrospectionState<T> {
    pub(crate) fn new(manager: CollectionManager<T>, metrics: Metrics) -> Self {
        IntrospectionState {
            manager,
            metrics,
            collections: BTreeMap::new(),
            registered: BTreeSet::new(),
            shard_mapping: BTreeMap::new(),
            frontiers: FxHashMap::default(),
            replica_frontiers: FxHashMap::default(),
            source_statistics: BTreeMap::new(),
            sink_statistics: BTreeMap::new(),
            coordinator: BTreeMap::new(),
        }
    }

    /// The registered collections of `kind`.
    pub(crate) fn registered_of(&self, kind: IntrospectionType) -> Vec<GlobalId> {
        self.collections
            .iter()
            .filter(|(id, k)| **k == kind && self.registered.contains(id))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The desired contents of a kind the controller mirrors; `None` for the others.
    pub(crate) fn desired(&self, kind: IntrospectionType) -> Option<Vec<(Row, i64)>> {
        match kind {
            IntrospectionType::ShardMapping => Some(
                self.shard_mapping
                    .values()
                    .map(|r| (r.clone(), 1))
                    .collect(),
            ),
            IntrospectionType::Frontiers => Some(
                self.frontiers
                    .iter()
                    .map(|(id, (since, upper))| (frontiers_row(*id, since, upper), 1))
                    .collect(),
            ),
            IntrospectionType::ReplicaFrontiers => Some(
                self.replica_frontiers
                    .iter()
                    .flat_map(|(id, uppers)| {
                        uppers
                            .iter()
                            .map(|(replica, upper)| (replica_frontier_row(*id, *replica, upper), 1))
                    })
                    .collect(),
            ),
            kind if kind.is_differential() && !kind.is_controller_written() => Some(
                self.coordinator
                    .get(&kind)
                    .map(|rows| rows.iter().map(|(r, d)| (r.clone(), *d)).collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    /// Applies a coordinator's change to the desired contents of a differential kind it
    /// writes, and sends it to every registered collection of that kind.
    pub(crate) fn update_coordinator(
        &mut self,
        kind: IntrospectionType,
        op: StorageWriteOp,
    ) -> Result<(), StorageError<T>> {
        op.apply_to(self.coordinator.entry(kind).or_default());
        for id in self.registered_of(kind) {
            self.manager.update_desired(id, op.clone())?;
        }
        Ok(())
    }

    /// Sends a change of a mirrored kind to every registered collection of that kind.
    fn send(&self, kind: IntrospectionType, diffs: Vec<(Row, i64)>) {
        if diffs.is_empty() {
            return;
        }
        for id in self.registered_of(kind) {
            if let Err(error) = self.manager.differential_append(id, diffs.clone()) {
                tracing::warn!(%id, %error, "updating an introspection collection failed");
            }
        }
    }

    /// Records that collection `id` lives in `shard`.
    pub(crate) fn set_shard(&mut self, id: GlobalId, shard: ShardId) {
        let row = Row::pack(&[text(id.to_string()), text(shard.to_string())]);
        let diffs = upsert(&mut self.shard_mapping, id, Some(row));
        self.send(IntrospectionType::ShardMapping, diffs);
    }

    /// Whether a collection of `kind` is registered, so that changes must be sent.
    fn is_written(&self, kind: IntrospectionType) -> bool {
        self.collections
            .iter()
            .any(|(id, k)| *k == kind && self.registered.contains(id))
    }

    /// Records `id`'s since and upper.
    pub(crate) fn set_frontiers(
        &mut self,
        id: GlobalId,
        since: &Antichain<T>,
        upper: &Antichain<T>,
    ) {
        let old = match self.frontiers.get_mut(&id) {
            Some(current) if current.0 == *since && current.1 == *upper => return,
            Some(current) => Some(std::mem::replace(current, (since.clone(), upper.clone()))),
            None => {
                self.frontiers.insert(id, (since.clone(), upper.clone()));
                None
            }
        };
        if self.is_written(IntrospectionType::Frontiers) {
            let mut diffs = vec![(frontiers_row(id, since, upper), 1)];
            diffs.extend(old.map(|(s, u)| (frontiers_row(id, &s, &u), -1)));
            self.send(IntrospectionType::Frontiers, diffs);
        }
    }

    /// Retracts `id`'s frontiers.
    pub(crate) fn remove_frontiers(&mut self, id: GlobalId) {
        if let Some((since, upper)) = self.frontiers.remove(&id)
            && self.is_written(IntrospectionType::Frontiers)
        {
            let diffs = vec![(frontiers_row(id, &since, &upper), -1)];
            self.send(IntrospectionType::Frontiers, diffs);
        }
    }

    /// Records replica `replica`'s uppers of some live collections, sent as one batch
    /// of diffs. Introspection collections themselves are not recorded.
    pub(crate) fn set_replica_frontiers<'a>(
        &mut self,
        replica: ReplicaId,
        uppers: impl IntoIterator<Item = &'a (GlobalId, Antichain<T>)>,
    ) where
        T: 'a,
    {
        let written = self.is_written(IntrospectionType::ReplicaFrontiers);
        let mut diffs = Vec::new();
        for (id, upper) in uppers {
            if self.collections.contains_key(id) {
                continue;
            }
            let replicas = self.replica_frontiers.entry(*id).or_default();
            let Some((_, current)) = replicas.iter_mut().find(|(r, _)| *r == replica) else {
                replicas.push((replica, upper.clone()));
                if written {
                    diffs.push((replica_frontier_row(*id, replica, upper), 1));
                }
                continue;
            };
            if current == upper {
                continue;
            }
            if written {
                diffs.push((replica_frontier_row(*id, replica, current), -1));
                diffs.push((replica_frontier_row(*id, replica, upper), 1));
            }
            current.clone_from(upper);
        }
        if !diffs.is_empty() {
            self.send(IntrospectionType::ReplicaFrontiers, diffs);
        }
    }

    /// Retracts the replica frontiers `gone` lists, if that kind is written (the rows
    /// are made only then).
    fn retract_replica_frontiers(
        &mut self,
        gone: impl IntoIterator<Item = (GlobalId, ReplicaId, Antichain<T>)>,
    ) {
        if !self.is_written(IntrospectionType::ReplicaFrontiers) {
            return;
        }
        let diffs: Vec<(Row, i64)> = gone
            .into_iter()
            .map(|(id, replica, upper)| (replica_frontier_row(id, replica, &upper), -1))
            .collect();
        if !diffs.is_empty() {
            self.send(IntrospectionType::ReplicaFrontiers, diffs);
        }
    }

    /// Retracts everything recorded about collection (or sink) `id`.
    pub(crate) fn forget_object(&mut self, id: GlobalId) {
        let diffs = upsert(&mut self.shard_mapping, id, None);
        self.send(IntrospectionType::ShardMapping, diffs);
        self.remove_frontiers(id);
        let gone: Vec<_> = self
            .replica_frontiers
            .remove(&id)
            .into_iter()
            .flatten()
            .map(|(replica, upper)| (id, replica, upper))
            .collect();
        self.retract_replica_frontiers(gone);
        for scraper in self.source_statistics.values() {
            scraper.drop_id(id);
        }
        for scraper in self.sink_statistics.values() {
            scraper.drop_id(id);
        }
    }

    /// Retracts everything recorded about `replica`.
    pub(crate) fn forget_replica(&mut self, replica: ReplicaId) {
        let mut gone = Vec::new();
        self.replica_frontiers.retain(|id, uppers| {
            uppers.retain(|(r, upper)| {
                let leaves = *r == replica;
                if leaves {
                    gone.push((*id, replica, std::mem::take(upper)));
                }
                !leaves
            });
            !uppers.is_empty()
        });
        self.retract_replica_frontiers(gone);
        for scraper in self.source_statistics.values() {
            scraper.drop_replica(replica);
        }
        for scraper in self.sink_statistics.values() {
            scraper.drop_replica(replica);
        }
    }

    /// Appends status updates to every registered collection of `kind` (a status
    /// history), which de-duplicates them per `(id, replica)`.
    pub(crate) fn append_statuses(&self, kind: IntrospectionType, updates: &[StatusUpdate]) {
        if updates.is_empty() {
            return;
        }
        for id in self.registered_of(kind) {
            // The command is queued before the future is returned; durability is not
            // awaited (a failed write is retried by the manager and logged).
            drop(self.manager.append_status(id, updates.to_vec()));
        }
    }
}
