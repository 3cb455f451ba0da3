//! Conversions between the protocol types in [`crate::protocol`] and the wire messages in
//! [`crate::proto`].
//!
//! Rust to proto is infallible. Proto to Rust validates everything: ids parse, frontiers
//! are antichains, enum values are known, required fields are present, and ingestions
//! carry metadata for each of their exports. Any violation is a [`ProtoError`], never a
//! panic.

use std::collections::BTreeMap;

use strata_controller_api::{
    Antichain, CollectionMetadata, ColumnType, ConnectorConfig, ExportDescription, GlobalId,
    IdParseError, IngestionDescription, LoadGenerator, RelationDesc, ReplicaId, ScalarType,
    ShardId, SinkConnection, SourceConnection, SourceOutput, StorageTimestamp,
};

use crate::proto::{
    self, ProtoCollectionMetadata, ProtoExportDescription, ProtoFrontier,
    ProtoIngestionDescription, ProtoRelationDesc, ProtoScalarType, ProtoSinkConnection,
    ProtoSourceConnection, proto_load_generator, proto_sink_connection, proto_source_connection,
};

mod messages;
#[cfg(test)]
mod tests;

/// A wire message that does not describe a valid protocol value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A required field or oneof is absent.
    #[error("missing field {field}")]
    MissingField {
        /// The field's path, such as `run_sink.description.as_of`.
        field: &'static str,
    },
    /// A field that holds an id does not parse.
    #[error("invalid id in {field}: {source}")]
    InvalidId {
        /// The field's path.
        field: &'static str,
        /// Why the id does not parse.
        source: IdParseError,
    },
    /// An enum field holds a value this version does not know.
    #[error("unknown value {value} of enum field {field}")]
    UnknownEnum {
        /// The field's path.
        field: &'static str,
        /// The raw value.
        value: i32,
    },
    /// A frontier whose elements are not pairwise incomparable.
    #[error("frontier in {field} is not an antichain")]
    NotAnAntichain {
        /// The field's path.
        field: &'static str,
    },
    /// A field whose value breaks a rule no other variant names.
    #[error("invalid value in {field}: {reason}")]
    InvalidValue {
        /// The field's path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The bytes are not a protobuf message of the expected type.
    #[error("undecodable message: {reason}")]
    Decode {
        /// The decoder's description of the problem.
        reason: String,
    },
}

impl From<prost::DecodeError> for ProtoError {
    fn from(e: prost::DecodeError) -> Self {
        ProtoError::Decode {
            reason: e.to_string(),
        }
    }
}

/// Parses an id from its text form, naming the field on failure.
pub(crate) fn parse_id<I>(field: &'static str, text: &str) -> Result<I, ProtoError>
where
    I: std::str::FromStr<Err = IdParseError>,
{
    text.parse()
        .map_err(|source| ProtoError::InvalidId { field, source })
}

/// Unwraps a required message field.
pub(crate) fn required<M>(field: &'static str, value: Option<M>) -> Result<M, ProtoError> {
    value.ok_or(ProtoError::MissingField { field })
}

/// The wire form of a frontier: each time's order-preserving encoding as a u64.
pub fn frontier_to_proto<T: StorageTimestamp>(frontier: &Antichain<T>) -> ProtoFrontier {
    ProtoFrontier {
        elements: frontier
            .elements()
            .iter()
            .map(|t| u64::from_be_bytes(t.encode()))
            .collect(),
    }
}

/// Decodes a frontier, rejecting element lists that are not antichains.
pub fn frontier_from_proto<T: StorageTimestamp>(
    field: &'static str,
    proto: ProtoFrontier,
) -> Result<Antichain<T>, ProtoError> {
    let times: Vec<T> = proto
        .elements
        .into_iter()
        .map(|e| T::decode(e.to_be_bytes()))
        .collect();
    for (i, a) in times.iter().enumerate() {
        if times[i + 1..]
            .iter()
            .any(|b| a.less_equal(b) || b.less_equal(a))
        {
            return Err(ProtoError::NotAnAntichain { field });
        }
    }
    let mut frontier = Antichain::new();
    frontier.extend(times);
    Ok(frontier)
}

fn scalar_to_proto(t: ScalarType) -> ProtoScalarType {
    match t {
        ScalarType::Bool => ProtoScalarType::Bool,
        ScalarType::Int64 => ProtoScalarType::Int64,
        ScalarType::UInt64 => ProtoScalarType::Uint64,
        ScalarType::Float64 => ProtoScalarType::Float64,
        ScalarType::String => ProtoScalarType::String,
        ScalarType::Bytes => ProtoScalarType::Bytes,
        ScalarType::Jsonb => ProtoScalarType::Jsonb,
        ScalarType::TimestampMillis => ProtoScalarType::TimestampMillis,
    }
}

fn scalar_from_proto(field: &'static str, value: i32) -> Result<ScalarType, ProtoError> {
    let unknown = ProtoError::UnknownEnum { field, value };
    Ok(
        match ProtoScalarType::try_from(value).map_err(|_| unknown.clone())? {
            ProtoScalarType::Unspecified => return Err(unknown),
            ProtoScalarType::Bool => ScalarType::Bool,
            ProtoScalarType::Int64 => ScalarType::Int64,
            ProtoScalarType::Uint64 => ScalarType::UInt64,
            ProtoScalarType::Float64 => ScalarType::Float64,
            ProtoScalarType::String => ScalarType::String,
            ProtoScalarType::Bytes => ScalarType::Bytes,
            ProtoScalarType::Jsonb => ScalarType::Jsonb,
            ProtoScalarType::TimestampMillis => ScalarType::TimestampMillis,
        },
    )
}

/// The wire form of a relation description.
pub fn relation_desc_to_proto(desc: &RelationDesc) -> ProtoRelationDesc {
    ProtoRelationDesc {
        columns: desc
            .columns()
            .map(|(name, typ)| proto::ProtoColumn {
                name: name.to_owned(),
                scalar_type: scalar_to_proto(typ.scalar_type) as i32,
                nullable: typ.nullable,
            })
            .collect(),
    }
}

/// Decodes a relation description.
pub fn relation_desc_from_proto(
    field: &'static str,
    proto: ProtoRelationDesc,
) -> Result<RelationDesc, ProtoError> {
    let mut builder = RelationDesc::builder();
    for column in proto.columns {
        let scalar_type = scalar_from_proto(field, column.scalar_type)?;
        builder = builder.with_column(
            column.name,
            ColumnType {
                scalar_type,
                nullable: column.nullable,
            },
        );
    }
    Ok(builder.finish())
}

fn source_connection_to_proto(conn: &SourceConnection) -> ProtoSourceConnection {
    let (generator, tick_interval_ms, offsets_per_tick, seed) = match conn {
        SourceConnection::LoadGenerator {
            generator,
            tick_interval_ms,
            offsets_per_tick,
            seed,
        } => (generator, tick_interval_ms, offsets_per_tick, seed),
        SourceConnection::Connector(config) => {
            return ProtoSourceConnection {
                kind: Some(proto_source_connection::Kind::Connector(
                    connector_config_to_proto(config),
                )),
            };
        }
    };
    let kind = match generator {
        LoadGenerator::Counter { max_ticks } => {
            proto_load_generator::Kind::Counter(proto_load_generator::Counter {
                max_ticks: *max_ticks,
            })
        }
        LoadGenerator::Auction => {
            proto_load_generator::Kind::Auction(proto_load_generator::Auction {})
        }
        LoadGenerator::KeyValue { keys } => {
            proto_load_generator::Kind::KeyValue(proto_load_generator::KeyValue { keys: *keys })
        }
    };
    ProtoSourceConnection {
        kind: Some(proto_source_connection::Kind::LoadGenerator(
            proto_source_connection::LoadGenerator {
                generator: Some(proto::ProtoLoadGenerator { kind: Some(kind) }),
                tick_interval_ms: *tick_interval_ms,
                offsets_per_tick: *offsets_per_tick,
                seed: *seed,
            },
        )),
    }
}

fn source_connection_from_proto(
    proto: ProtoSourceConnection,
) -> Result<SourceConnection, ProtoError> {
    let lg = match required("ingestion.connection.kind", proto.kind)? {
        proto_source_connection::Kind::LoadGenerator(lg) => lg,
        proto_source_connection::Kind::Connector(config) => {
            return Ok(SourceConnection::Connector(connector_config_from_proto(
                "ingestion.connection.connector.kind",
                config,
            )?));
        }
    };
    let generator = required("ingestion.connection.generator", lg.generator)?;
    let generator = match required("ingestion.connection.generator.kind", generator.kind)? {
        proto_load_generator::Kind::Counter(c) => LoadGenerator::Counter {
            max_ticks: c.max_ticks,
        },
        proto_load_generator::Kind::Auction(_) => LoadGenerator::Auction,
        proto_load_generator::Kind::KeyValue(kv) => {
            if kv.keys == 0 {
                return Err(ProtoError::InvalidValue {
                    field: "ingestion.connection.generator.keys",
                    reason: "a key-value generator needs at least one key".into(),
                });
            }
            LoadGenerator::KeyValue { keys: kv.keys }
        }
    };
    Ok(SourceConnection::LoadGenerator {
        generator,
        tick_interval_ms: lg.tick_interval_ms,
        offsets_per_tick: lg.offsets_per_tick,
        seed: lg.seed,
    })
}

fn sink_connection_to_proto(conn: &SinkConnection) -> ProtoSinkConnection {
    let kind = match conn {
        SinkConnection::File { path } => {
            proto_sink_connection::Kind::File(proto_sink_connection::File { path: path.clone() })
        }
        SinkConnection::ObjectStore { url, prefix } => {
            proto_sink_connection::Kind::ObjectStore(proto_sink_connection::ObjectStore {
                url: url.clone(),
                prefix: prefix.clone(),
            })
        }
        SinkConnection::Connector(config) => {
            proto_sink_connection::Kind::Connector(connector_config_to_proto(config))
        }
    };
    ProtoSinkConnection { kind: Some(kind) }
}

fn connector_config_to_proto(config: &ConnectorConfig) -> proto::ProtoConnectorConfig {
    proto::ProtoConnectorConfig {
        kind: config.kind.clone(),
        settings: config.settings.clone().into_iter().collect(),
    }
}

fn connector_config_from_proto(
    field: &'static str,
    config: proto::ProtoConnectorConfig,
) -> Result<ConnectorConfig, ProtoError> {
    if config.kind.is_empty() {
        return Err(ProtoError::InvalidValue {
            field,
            reason: "a connector needs a kind".into(),
        });
    }
    Ok(ConnectorConfig {
        kind: config.kind,
        settings: config.settings.into_iter().collect(),
    })
}

fn sink_connection_from_proto(proto: ProtoSinkConnection) -> Result<SinkConnection, ProtoError> {
    Ok(match required("sink.connection.kind", proto.kind)? {
        proto_sink_connection::Kind::File(f) => SinkConnection::File { path: f.path },
        proto_sink_connection::Kind::ObjectStore(o) => SinkConnection::ObjectStore {
            url: o.url,
            prefix: o.prefix,
        },
        proto_sink_connection::Kind::Connector(config) => SinkConnection::Connector(
            connector_config_from_proto("sink.connection.connector.kind", config)?,
        ),
    })
}

/// The wire form of an ingestion description.
pub fn ingestion_to_proto<T: StorageTimestamp>(
    desc: &IngestionDescription<T>,
) -> ProtoIngestionDescription {
    ProtoIngestionDescription {
        connection: Some(source_connection_to_proto(&desc.connection)),
        instance_id: desc.instance_id.to_string(),
        remap_collection_id: desc.remap_collection_id.to_string(),
        source_exports: desc
            .source_exports
            .iter()
            .map(|(id, output)| proto::ProtoSourceExport {
                id: id.to_string(),
                named_output: match output {
                    SourceOutput::Primary => None,
                    SourceOutput::Named(name) => Some(name.clone()),
                },
            })
            .collect(),
        as_of: desc.as_of.as_ref().map(frontier_to_proto),
    }
}

/// Decodes an ingestion description; export ids must be distinct.
pub fn ingestion_from_proto<T: StorageTimestamp>(
    proto: ProtoIngestionDescription,
) -> Result<IngestionDescription<T>, ProtoError> {
    let mut source_exports = BTreeMap::new();
    for export in proto.source_exports {
        let id: GlobalId = parse_id("ingestion.source_exports.id", &export.id)?;
        let output = export
            .named_output
            .map_or(SourceOutput::Primary, SourceOutput::Named);
        if source_exports.insert(id, output).is_some() {
            return Err(ProtoError::InvalidValue {
                field: "ingestion.source_exports",
                reason: format!("export {id} appears more than once"),
            });
        }
    }
    Ok(IngestionDescription {
        connection: source_connection_from_proto(required(
            "ingestion.connection",
            proto.connection,
        )?)?,
        instance_id: parse_id("ingestion.instance_id", &proto.instance_id)?,
        remap_collection_id: parse_id("ingestion.remap_collection_id", &proto.remap_collection_id)?,
        source_exports,
        as_of: proto
            .as_of
            .map(|f| frontier_from_proto("ingestion.as_of", f))
            .transpose()?,
    })
}

/// The wire form of an export description.
pub fn export_to_proto<T: StorageTimestamp>(desc: &ExportDescription<T>) -> ProtoExportDescription {
    ProtoExportDescription {
        from: desc.from.to_string(),
        from_desc: Some(relation_desc_to_proto(&desc.from_desc)),
        connection: Some(sink_connection_to_proto(&desc.connection)),
        as_of: Some(frontier_to_proto(&desc.as_of)),
        with_snapshot: desc.with_snapshot,
        instance_id: desc.instance_id.to_string(),
    }
}

/// Decodes an export description.
pub fn export_from_proto<T: StorageTimestamp>(
    proto: ProtoExportDescription,
) -> Result<ExportDescription<T>, ProtoError> {
    Ok(ExportDescription {
        from: parse_id("sink.from", &proto.from)?,
        from_desc: relation_desc_from_proto(
            "sink.from_desc",
            required("sink.from_desc", proto.from_desc)?,
        )?,
        connection: sink_connection_from_proto(required("sink.connection", proto.connection)?)?,
        as_of: frontier_from_proto("sink.as_of", required("sink.as_of", proto.as_of)?)?,
        with_snapshot: proto.with_snapshot,
        instance_id: parse_id("sink.instance_id", &proto.instance_id)?,
    })
}

/// The wire form of a collection's metadata.
pub fn metadata_to_proto(meta: &CollectionMetadata) -> ProtoCollectionMetadata {
    ProtoCollectionMetadata {
        persist_location: meta.persist_location.clone(),
        data_shard: meta.data_shard.to_string(),
        remap_shard: meta.remap_shard.map(|s| s.to_string()),
        txns_shard: meta.txns_shard.map(|s| s.to_string()),
        relation_desc: Some(relation_desc_to_proto(&meta.relation_desc)),
    }
}

/// Decodes a collection's metadata; the persist location must not be empty.
pub fn metadata_from_proto(
    proto: ProtoCollectionMetadata,
) -> Result<CollectionMetadata, ProtoError> {
    if proto.persist_location.is_empty() {
        return Err(ProtoError::MissingField {
            field: "metadata.persist_location",
        });
    }
    let shard = |field, text: Option<String>| -> Result<Option<ShardId>, ProtoError> {
        text.map(|t| parse_id(field, &t)).transpose()
    };
    Ok(CollectionMetadata {
        persist_location: proto.persist_location,
        data_shard: parse_id("metadata.data_shard", &proto.data_shard)?,
        remap_shard: shard("metadata.remap_shard", proto.remap_shard)?,
        txns_shard: shard("metadata.txns_shard", proto.txns_shard)?,
        relation_desc: relation_desc_from_proto(
            "metadata.relation_desc",
            required("metadata.relation_desc", proto.relation_desc)?,
        )?,
    })
}

/// Parses an optional replica id.
pub(crate) fn replica_from_proto(text: Option<String>) -> Result<Option<ReplicaId>, ProtoError> {
    text.map(|t| parse_id("status_update.replica", &t))
        .transpose()
}
