//! Carrying out the [`Effect`]s the pure frontier state machine returns: since
//! downgrades and finalization go to the storage task, compaction to instances.

use strata_controller_api::StorageTimestamp;
use strata_instance_client::StorageCommand;

use super::Controller;
use super::storage_task::{Command, ShardKind};
use crate::frontiers::Effect;

impl<T: StorageTimestamp> Controller<T> {
    /// Carries out `effects`, in order.
    pub(super) fn execute(&mut self, effects: Vec<Effect<T>>) {
        for effect in effects {
            match effect {
                Effect::DowngradeSince { id, since } => {
                    if let Some(state) = self.registry.collections.get(&id) {
                        self.storage_task.send(Command::Downgrade {
                            shard: state.shard,
                            since,
                            kind: ShardKind::of(&state.description),
                        });
                    }
                }
                Effect::AllowCompaction {
                    instance,
                    id,
                    frontier,
                } => {
                    self.send_to_instance(
                        instance,
                        StorageCommand::AllowCompaction { id, frontier },
                    );
                }
                Effect::Finalize { id } => {
                    self.registry.exports.remove(&id);
                    if let Some(state) = self.registry.collections.remove(&id) {
                        self.storage_task.send(Command::Finalize {
                            shard: state.shard,
                            kind: ShardKind::of(&state.description),
                        });
                    }
                }
                Effect::RecordFrontiers { id, since, upper } => {
                    self.record_frontiers_hook(id, since, upper);
                }
            }
        }
    }
}
