//! Conversions of whole commands and responses.

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, GlobalId, SinkStatistics, SourceStatistics, Status, StatusUpdate, StorageTimestamp,
};

use super::{
    ProtoError, export_from_proto, export_to_proto, frontier_from_proto, frontier_to_proto,
    ingestion_from_proto, ingestion_to_proto, metadata_from_proto, metadata_to_proto, parse_id,
    replica_from_proto, required,
};
use crate::proto::{
    self, ProtoStatus, ProtoStorageCommand, ProtoStorageResponse, proto_storage_command as cmd,
    proto_storage_response as resp,
};
use crate::protocol::{
    ReplicaParameters, ReplicaResponse, RunIngestionCommand, RunSinkCommand, StorageCommand,
};

impl<T: StorageTimestamp> From<&StorageCommand<T>> for ProtoStorageCommand {
    fn from(command: &StorageCommand<T>) -> Self {
        let kind = match command {
            StorageCommand::Hello { nonce, epoch } => cmd::Kind::Hello(proto::ProtoHello {
                nonce: *nonce,
                epoch: *epoch,
            }),
            StorageCommand::InitializationComplete => {
                cmd::Kind::InitializationComplete(proto::ProtoEmpty {})
            }
            StorageCommand::AllowWrites => cmd::Kind::AllowWrites(proto::ProtoEmpty {}),
            StorageCommand::UpdateConfiguration(params) => {
                cmd::Kind::UpdateConfiguration(proto::ProtoUpdateConfiguration {
                    params: params
                        .params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
            }
            StorageCommand::RunIngestion(run) => {
                cmd::Kind::RunIngestion(proto::ProtoRunIngestion {
                    id: run.id.to_string(),
                    description: Some(ingestion_to_proto(&run.description)),
                    storage_metadata: run
                        .storage_metadata
                        .iter()
                        .map(|(id, meta)| proto::ProtoCollectionMetadataEntry {
                            id: id.to_string(),
                            metadata: Some(metadata_to_proto(meta)),
                        })
                        .collect(),
                })
            }
            StorageCommand::RunSink(run) => cmd::Kind::RunSink(proto::ProtoRunSink {
                id: run.id.to_string(),
                description: Some(export_to_proto(&run.description)),
                from_metadata: Some(metadata_to_proto(&run.from_metadata)),
            }),
            StorageCommand::AllowCompaction { id, frontier } => {
                cmd::Kind::AllowCompaction(proto::ProtoAllowCompaction {
                    id: id.to_string(),
                    frontier: Some(frontier_to_proto(frontier)),
                })
            }
        };
        ProtoStorageCommand { kind: Some(kind) }
    }
}

impl<T: StorageTimestamp> From<StorageCommand<T>> for ProtoStorageCommand {
    fn from(command: StorageCommand<T>) -> Self {
        ProtoStorageCommand::from(&command)
    }
}

fn run_ingestion_from_proto<T: StorageTimestamp>(
    proto: proto::ProtoRunIngestion,
) -> Result<RunIngestionCommand<T>, ProtoError> {
    let id: GlobalId = parse_id("run_ingestion.id", &proto.id)?;
    let description =
        ingestion_from_proto(required("run_ingestion.description", proto.description)?)?;
    let mut storage_metadata = BTreeMap::new();
    for entry in proto.storage_metadata {
        let entry_id: GlobalId = parse_id("run_ingestion.storage_metadata.id", &entry.id)?;
        let known = description.source_exports.contains_key(&entry_id)
            || entry_id == description.remap_collection_id;
        if !known {
            return Err(ProtoError::InvalidValue {
                field: "run_ingestion.storage_metadata",
                reason: format!("metadata for {entry_id}, which the ingestion does not write"),
            });
        }
        let meta = metadata_from_proto(required(
            "run_ingestion.storage_metadata.metadata",
            entry.metadata,
        )?)?;
        if storage_metadata.insert(entry_id, meta).is_some() {
            return Err(ProtoError::InvalidValue {
                field: "run_ingestion.storage_metadata",
                reason: format!("metadata for {entry_id} appears more than once"),
            });
        }
    }
    if let Some(missing) = description
        .source_exports
        .keys()
        .find(|e| !storage_metadata.contains_key(e))
    {
        return Err(ProtoError::InvalidValue {
            field: "run_ingestion.storage_metadata",
            reason: format!("no metadata for export {missing}"),
        });
    }
    Ok(RunIngestionCommand {
        id,
        description,
        storage_metadata,
    })
}

impl<T: StorageTimestamp> TryFrom<ProtoStorageCommand> for StorageCommand<T> {
    type Error = ProtoError;

    fn try_from(proto: ProtoStorageCommand) -> Result<Self, ProtoError> {
        Ok(match required("command.kind", proto.kind)? {
            cmd::Kind::Hello(h) => StorageCommand::Hello {
                nonce: h.nonce,
                epoch: h.epoch,
            },
            cmd::Kind::InitializationComplete(_) => StorageCommand::InitializationComplete,
            cmd::Kind::AllowWrites(_) => StorageCommand::AllowWrites,
            cmd::Kind::UpdateConfiguration(c) => {
                StorageCommand::UpdateConfiguration(ReplicaParameters {
                    params: c.params.into_iter().collect(),
                })
            }
            cmd::Kind::RunIngestion(run) => {
                StorageCommand::RunIngestion(run_ingestion_from_proto(run)?)
            }
            cmd::Kind::RunSink(run) => StorageCommand::RunSink(RunSinkCommand {
                id: parse_id("run_sink.id", &run.id)?,
                description: export_from_proto(required("run_sink.description", run.description)?)?,
                from_metadata: metadata_from_proto(required(
                    "run_sink.from_metadata",
                    run.from_metadata,
                )?)?,
            }),
            cmd::Kind::AllowCompaction(c) => StorageCommand::AllowCompaction {
                id: parse_id("allow_compaction.id", &c.id)?,
                frontier: frontier_from_proto(
                    "allow_compaction.frontier",
                    required("allow_compaction.frontier", c.frontier)?,
                )?,
            },
        })
    }
}

fn status_to_proto(status: Status) -> ProtoStatus {
    match status {
        Status::Starting => ProtoStatus::Starting,
        Status::Running => ProtoStatus::Running,
        Status::Paused => ProtoStatus::Paused,
        Status::Stalled => ProtoStatus::Stalled,
        Status::Dropped => ProtoStatus::Dropped,
    }
}

fn status_from_proto(value: i32) -> Result<Status, ProtoError> {
    let unknown = ProtoError::UnknownEnum {
        field: "status_update.status",
        value,
    };
    Ok(
        match ProtoStatus::try_from(value).map_err(|_| unknown.clone())? {
            ProtoStatus::Unspecified => return Err(unknown),
            ProtoStatus::Starting => Status::Starting,
            ProtoStatus::Running => Status::Running,
            ProtoStatus::Paused => Status::Paused,
            ProtoStatus::Stalled => Status::Stalled,
            ProtoStatus::Dropped => Status::Dropped,
        },
    )
}

impl<T: StorageTimestamp> From<&ReplicaResponse<T>> for ProtoStorageResponse {
    fn from(response: &ReplicaResponse<T>) -> Self {
        let kind = match response {
            ReplicaResponse::FrontierUppers(uppers) => {
                resp::Kind::FrontierUppers(proto::ProtoFrontierUppers {
                    uppers: uppers
                        .iter()
                        .map(|(id, upper)| proto::ProtoFrontierUpper {
                            id: id.to_string(),
                            upper: Some(frontier_to_proto(upper)),
                        })
                        .collect(),
                })
            }
            ReplicaResponse::DroppedId(id) => {
                resp::Kind::DroppedId(proto::ProtoDroppedId { id: id.to_string() })
            }
            ReplicaResponse::StatisticsUpdates { sources, sinks } => {
                resp::Kind::StatisticsUpdates(proto::ProtoStatisticsUpdates {
                    sources: sources.iter().map(source_stats_to_proto).collect(),
                    sinks: sinks.iter().map(sink_stats_to_proto).collect(),
                })
            }
            ReplicaResponse::StatusUpdate(s) => {
                resp::Kind::StatusUpdate(proto::ProtoStatusUpdate {
                    id: s.id.to_string(),
                    status: status_to_proto(s.status) as i32,
                    timestamp_ms: s.timestamp_ms,
                    error: s.error.clone(),
                    hints: s.hints.clone(),
                    replica: s.replica_id.map(|r| r.to_string()),
                })
            }
        };
        ProtoStorageResponse { kind: Some(kind) }
    }
}

impl<T: StorageTimestamp> From<ReplicaResponse<T>> for ProtoStorageResponse {
    fn from(response: ReplicaResponse<T>) -> Self {
        ProtoStorageResponse::from(&response)
    }
}

/// One collection's upper; the field names say where it sits, for errors.
fn upper_from_proto<T: StorageTimestamp>(
    (id_field, upper_field): (&'static str, &'static str),
    f: proto::ProtoFrontierUpper,
) -> Result<(GlobalId, Antichain<T>), ProtoError> {
    let id = parse_id(id_field, &f.id)?;
    let upper = frontier_from_proto(upper_field, required(upper_field, f.upper)?)?;
    Ok((id, upper))
}

fn source_stats_to_proto((id, s): &(GlobalId, SourceStatistics)) -> proto::ProtoSourceStatistics {
    proto::ProtoSourceStatistics {
        id: id.to_string(),
        messages_received: s.messages_received,
        bytes_received: s.bytes_received,
        updates_staged: s.updates_staged,
        updates_committed: s.updates_committed,
        snapshot_committed: s.snapshot_committed,
        offset_known: s.offset_known,
        offset_committed: s.offset_committed,
    }
}

fn sink_stats_to_proto((id, s): &(GlobalId, SinkStatistics)) -> proto::ProtoSinkStatistics {
    proto::ProtoSinkStatistics {
        id: id.to_string(),
        messages_staged: s.messages_staged,
        messages_committed: s.messages_committed,
        bytes_staged: s.bytes_staged,
        bytes_committed: s.bytes_committed,
    }
}

impl<T: StorageTimestamp> TryFrom<ProtoStorageResponse> for ReplicaResponse<T> {
    type Error = ProtoError;

    fn try_from(proto: ProtoStorageResponse) -> Result<Self, ProtoError> {
        Ok(match required("response.kind", proto.kind)? {
            resp::Kind::FrontierUpper(f) => {
                ReplicaResponse::FrontierUppers(vec![upper_from_proto(
                    ("frontier_upper.id", "frontier_upper.upper"),
                    f,
                )?])
            }
            resp::Kind::FrontierUppers(f) => ReplicaResponse::FrontierUppers(
                f.uppers
                    .into_iter()
                    .map(|f| {
                        let fields = ("frontier_uppers.uppers.id", "frontier_uppers.uppers.upper");
                        upper_from_proto(fields, f)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            resp::Kind::DroppedId(d) => {
                ReplicaResponse::DroppedId(parse_id("dropped_id.id", &d.id)?)
            }
            resp::Kind::StatisticsUpdates(s) => ReplicaResponse::StatisticsUpdates {
                sources: s
                    .sources
                    .into_iter()
                    .map(|s| {
                        let id = parse_id("statistics.sources.id", &s.id)?;
                        Ok((
                            id,
                            SourceStatistics {
                                messages_received: s.messages_received,
                                bytes_received: s.bytes_received,
                                updates_staged: s.updates_staged,
                                updates_committed: s.updates_committed,
                                snapshot_committed: s.snapshot_committed,
                                offset_known: s.offset_known,
                                offset_committed: s.offset_committed,
                            },
                        ))
                    })
                    .collect::<Result<_, ProtoError>>()?,
                sinks: s
                    .sinks
                    .into_iter()
                    .map(|s| {
                        let id = parse_id("statistics.sinks.id", &s.id)?;
                        Ok((
                            id,
                            SinkStatistics {
                                messages_staged: s.messages_staged,
                                messages_committed: s.messages_committed,
                                bytes_staged: s.bytes_staged,
                                bytes_committed: s.bytes_committed,
                            },
                        ))
                    })
                    .collect::<Result<_, ProtoError>>()?,
            },
            resp::Kind::StatusUpdate(s) => ReplicaResponse::StatusUpdate(StatusUpdate {
                id: parse_id("status_update.id", &s.id)?,
                status: status_from_proto(s.status)?,
                timestamp_ms: s.timestamp_ms,
                error: s.error,
                hints: s.hints,
                replica_id: replica_from_proto(s.replica)?,
            }),
        })
    }
}
