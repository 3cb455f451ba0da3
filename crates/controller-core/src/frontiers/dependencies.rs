//! Changing which entries a registered entry holds, as `alter_export` needs when a
//! sink moves to another collection.

use std::collections::BTreeSet;

use strata_controller_api::{ChangeBatch, GlobalId, StorageError, StorageTimestamp};
use timely::PartialOrder;

use super::propagate::Pass;
use super::{Effect, FrontierState};

impl<T: StorageTimestamp> FrontierState<T> {
    /// Replaces the dependencies of `id`: it releases its hold on every dependency it
    /// no longer lists and holds every new one at its own since.
    ///
    /// # Errors
    ///
    /// Nothing changes on error:
    /// - [`StorageError::IdentifierMissing`] if `id` or a dependency is unknown or
    ///   dropped;
    /// - [`StorageError::ReadBeforeSince`] if a new dependency's since is beyond the
    ///   since of `id`, which therefore cannot hold it;
    /// - [`StorageError::InvalidUsage`] if the new dependencies would form a cycle.
    pub fn set_dependencies(
        &mut self,
        id: GlobalId,
        dependencies: Vec<GlobalId>,
    ) -> Result<Vec<Effect<T>>, StorageError<T>> {
        let since = self.live(id)?.since().to_owned();
        let new: BTreeSet<GlobalId> = dependencies.into_iter().collect();
        for dependency in &new {
            let entry = self.live(*dependency)?;
            if !PartialOrder::less_equal(&entry.since(), &since.borrow()) {
                return Err(StorageError::ReadBeforeSince {
                    id: *dependency,
                    since: entry.since().to_owned(),
                });
            }
            if self.reaches(*dependency, id) {
                return Err(StorageError::InvalidUsage(format!(
                    "{id} cannot depend on {dependency}, which depends on {id}"
                )));
            }
        }
        let Some(entry) = self.collections.get_mut(&id) else {
            return Err(StorageError::IdentifierMissing(id));
        };
        let old: BTreeSet<GlobalId> = entry.dependencies.iter().copied().collect();
        entry.dependencies = new.iter().copied().collect();
        let mut pass = Pass::new();
        for (dependencies, diff) in [(new.difference(&old), 1), (old.difference(&new), -1)] {
            for dependency in dependencies {
                let mut changes = ChangeBatch::new();
                changes.extend(since.iter().map(|t| (*t, diff)));
                if let Some(held) = self.collections.get_mut(dependency) {
                    pass.push(*dependency, held, changes);
                }
            }
        }
        Ok(self.finish(pass))
    }

    /// Whether `to` is `from` or one of its transitive dependencies.
    fn reaches(&self, from: GlobalId, to: GlobalId) -> bool {
        let mut stack = vec![from];
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if next == to {
                return true;
            }
            if seen.insert(next)
                && let Some(entry) = self.collections.get(&next)
            {
                stack.extend(entry.dependencies.iter().copied());
            }
        }
        false
    }
}
