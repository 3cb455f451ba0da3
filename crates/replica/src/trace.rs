//! What the replica's `tracing` spans say about a command: its kind and the collection
//! it names, so that one ingestion can be followed from its command to its writes (see
//! "Following an ingestion in the logs" in docs/OPERATIONS.md).

use strata_controller_api::{GlobalId, Timestamp};
use strata_instance_client::StorageCommand;

/// The command's variant, as the `command` field of the `replica.command` span.
pub(crate) fn command_kind(command: &StorageCommand<Timestamp>) -> &'static str {
    match command {
        StorageCommand::Hello { .. } => "Hello",
        StorageCommand::InitializationComplete => "InitializationComplete",
        StorageCommand::AllowWrites => "AllowWrites",
        StorageCommand::UpdateConfiguration(_) => "UpdateConfiguration",
        StorageCommand::RunIngestion(_) => "RunIngestion",
        StorageCommand::RunSink(_) => "RunSink",
        StorageCommand::AllowCompaction { .. } => "AllowCompaction",
    }
}

/// The collection the command is about, if any, as the `collection` field.
pub(crate) fn command_collection(command: &StorageCommand<Timestamp>) -> Option<GlobalId> {
    match command {
        StorageCommand::RunIngestion(cmd) => Some(cmd.id),
        StorageCommand::RunSink(cmd) => Some(cmd.id),
        StorageCommand::AllowCompaction { id, .. } => Some(*id),
        StorageCommand::Hello { .. }
        | StorageCommand::InitializationComplete
        | StorageCommand::AllowWrites
        | StorageCommand::UpdateConfiguration(_) => None,
    }
}
