//! Read-only questions about a [`FrontierState`].

use strata_controller_api::{
    Antichain, AntichainRef, GlobalId, InstanceId, ReadPolicy, StorageError, StorageTimestamp,
};
use timely::PartialOrder;

use super::{CollectionFrontiers, FrontierState};

impl<T: StorageTimestamp> FrontierState<T> {
    /// Whether `id` is registered and not yet finalized (it may be dropped).
    pub fn contains(&self, id: GlobalId) -> bool {
        self.collections.contains_key(&id)
    }

    /// Whether `id` is registered and not dropped.
    pub fn is_live(&self, id: GlobalId) -> bool {
        self.collections
            .get(&id)
            .is_some_and(|entry| !entry.dropped)
    }

    /// Whether `id` is registered and dropped, waiting for its since to reach `[]`.
    pub fn is_dropped(&self, id: GlobalId) -> bool {
        self.collections.get(&id).is_some_and(|entry| entry.dropped)
    }

    /// Whether the replicas were told to stop running `id` (`AllowCompaction([])` went
    /// out): it was dropped, or it is a sink whose upper reached `[]`.
    pub fn is_stopped(&self, id: GlobalId) -> bool {
        self.collections
            .get(&id)
            .is_some_and(|entry| entry.empty_compaction_sent)
    }

    /// Every registered id, ascending, dropped ones included.
    pub fn ids(&self) -> Vec<GlobalId> {
        let mut ids: Vec<GlobalId> = self.collections.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The number of registered ids.
    pub fn len(&self) -> usize {
        self.collections.len()
    }

    /// Whether no id is registered.
    pub fn is_empty(&self) -> bool {
        self.collections.is_empty()
    }

    /// The since of `id`.
    pub fn since(&self, id: GlobalId) -> Option<AntichainRef<'_, T>> {
        self.collections.get(&id).map(|entry| entry.since())
    }

    /// The upper of `id`.
    pub fn upper(&self, id: GlobalId) -> Option<&Antichain<T>> {
        self.collections.get(&id).map(|entry| &entry.upper)
    }

    /// The read policy of `id`; a dropped id has `ValidFrom([])`.
    pub fn read_policy(&self, id: GlobalId) -> Option<&ReadPolicy<T>> {
        self.collections.get(&id).map(|entry| &entry.read_policy)
    }

    /// The ids `id` holds reads on, ascending.
    pub fn dependencies(&self, id: GlobalId) -> Option<&[GlobalId]> {
        self.collections
            .get(&id)
            .map(|entry| entry.dependencies.as_slice())
    }

    /// The instance `id` runs on, if any.
    pub fn instance(&self, id: GlobalId) -> Option<InstanceId> {
        self.collections.get(&id).and_then(|entry| entry.instance)
    }

    /// The external read holds on `id`: each time with its number of holds.
    pub fn read_holds(&self, id: GlobalId) -> Option<Vec<(T, i64)>> {
        let entry = self.collections.get(&id)?;
        Some(entry.external_holds.iter().map(|(t, n)| (*t, *n)).collect())
    }

    /// The frontiers of `id`.
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] if `id` is not registered.
    pub fn frontiers(&self, id: GlobalId) -> Result<CollectionFrontiers<T>, StorageError<T>> {
        let entry = self
            .collections
            .get(&id)
            .ok_or(StorageError::IdentifierMissing(id))?;
        Ok(CollectionFrontiers {
            id,
            since: entry.since().to_owned(),
            implied_capability: entry.implied_capability.clone(),
            upper: entry.upper.clone(),
        })
    }

    /// The frontiers of every id in `ids`, in that order.
    ///
    /// # Errors
    ///
    /// [`StorageError::IdentifierMissing`] for the first id that is not registered.
    pub fn collections_frontiers(
        &self,
        ids: &[GlobalId],
    ) -> Result<Vec<CollectionFrontiers<T>>, StorageError<T>> {
        ids.iter().map(|id| self.frontiers(*id)).collect()
    }

    /// Checks that `id` is live and readable at `as_of`: the since is not beyond it.
    /// Whether the upper is beyond it (the read would wait) is not checked.
    ///
    /// # Errors
    ///
    /// - [`StorageError::IdentifierMissing`] if `id` is unknown or dropped;
    /// - [`StorageError::ReadBeforeSince`] if `as_of` is before the since.
    pub fn check_readable(
        &self,
        id: GlobalId,
        as_of: &Antichain<T>,
    ) -> Result<(), StorageError<T>> {
        let entry = self.live(id)?;
        Self::check_since(id, entry, as_of)
    }

    /// Like [`FrontierState::check_readable`], but a dropped collection stays readable
    /// at the times its remaining read holds cover, until the last is released and it
    /// is finalized. For snapshots under a hold taken before a drop; new holds on a
    /// dropped collection use `check_readable` and are refused.
    ///
    /// # Errors
    ///
    /// - [`StorageError::IdentifierMissing`] if `id` is unknown (or dropped and
    ///   finalized);
    /// - [`StorageError::ReadBeforeSince`] if `as_of` is before the since.
    pub fn check_held_readable(
        &self,
        id: GlobalId,
        as_of: &Antichain<T>,
    ) -> Result<(), StorageError<T>> {
        let entry = self
            .collections
            .get(&id)
            .ok_or(StorageError::IdentifierMissing(id))?;
        Self::check_since(id, entry, as_of)
    }

    fn check_since(
        id: GlobalId,
        entry: &super::collection::CollectionFrontierState<T>,
        as_of: &Antichain<T>,
    ) -> Result<(), StorageError<T>> {
        if PartialOrder::less_equal(&entry.since(), &as_of.borrow()) {
            Ok(())
        } else {
            Err(StorageError::ReadBeforeSince {
                id,
                since: entry.since().to_owned(),
            })
        }
    }
}
