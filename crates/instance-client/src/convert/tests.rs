use proptest::prelude::*;
use prost::Message;
use strata_controller_api::{Antichain, GlobalId, Timestamp};

use super::ProtoError;
use crate::proto::{self, ProtoStorageCommand, ProtoStorageResponse, proto_storage_command as cmd};
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::testing::{arb_command, arb_response, ingestion, sink};

proptest! {
    #[test]
    fn commands_round_trip(command in arb_command()) {
        let bytes = ProtoStorageCommand::from(&command).encode_to_vec();
        let decoded = ProtoStorageCommand::decode(bytes.as_slice()).unwrap();
        prop_assert_eq!(StorageCommand::<Timestamp>::try_from(decoded).unwrap(), command);
    }

    #[test]
    fn responses_round_trip(response in arb_response()) {
        let bytes = ProtoStorageResponse::from(&response).encode_to_vec();
        let decoded = ProtoStorageResponse::decode(bytes.as_slice()).unwrap();
        prop_assert_eq!(ReplicaResponse::<Timestamp>::try_from(decoded).unwrap(), response);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = ProtoStorageCommand::decode(bytes.as_slice()) {
            let _ = StorageCommand::<Timestamp>::try_from(p);
        }
        if let Ok(p) = ProtoStorageResponse::decode(bytes.as_slice()) {
            let _ = ReplicaResponse::<Timestamp>::try_from(p);
        }
    }
}

/// Converts a mutated command and checks the error it produces.
fn check(mutate: impl FnOnce(&mut ProtoStorageCommand), expected: ProtoError) {
    let mut p = ProtoStorageCommand::from(&StorageCommand::RunIngestion(ingestion(1, 2, &[3])));
    mutate(&mut p);
    assert_eq!(
        StorageCommand::<Timestamp>::try_from(p).unwrap_err(),
        expected
    );
}

fn run_ingestion(p: &mut ProtoStorageCommand) -> &mut proto::ProtoRunIngestion {
    match p.kind.as_mut() {
        Some(cmd::Kind::RunIngestion(r)) => r,
        _ => unreachable!("the fixture is a run-ingestion"),
    }
}

#[test]
fn malformed_commands_are_typed_errors() {
    check(
        |p| p.kind = None,
        ProtoError::MissingField {
            field: "command.kind",
        },
    );
    check(
        |p| run_ingestion(p).id = "x1".into(),
        ProtoError::InvalidId {
            field: "run_ingestion.id",
            source: "x1".parse::<strata_controller_api::GlobalId>().unwrap_err(),
        },
    );
    check(
        |p| run_ingestion(p).description = None,
        ProtoError::MissingField {
            field: "run_ingestion.description",
        },
    );
    check(
        |p| {
            run_ingestion(p).description.as_mut().unwrap().as_of = Some(proto::ProtoFrontier {
                elements: vec![1, 2],
            })
        },
        ProtoError::NotAnAntichain {
            field: "ingestion.as_of",
        },
    );
    check(
        |p| {
            run_ingestion(p).description.as_mut().unwrap().connection =
                Some(proto::ProtoSourceConnection {
                    kind: Some(proto::proto_source_connection::Kind::Connector(
                        proto::ProtoConnectorConfig::default(),
                    )),
                })
        },
        ProtoError::InvalidValue {
            field: "ingestion.connection.connector.kind",
            reason: "a connector needs a kind".into(),
        },
    );
    check(
        |p| run_ingestion(p).storage_metadata.pop().map(|_| ()).unwrap(),
        ProtoError::InvalidValue {
            field: "run_ingestion.storage_metadata",
            reason: "no metadata for export u3".into(),
        },
    );
    check(
        |p| {
            let r = run_ingestion(p);
            let dup = r.storage_metadata[0].clone();
            r.storage_metadata.push(dup);
        },
        ProtoError::InvalidValue {
            field: "run_ingestion.storage_metadata",
            reason: "metadata for u1 appears more than once".into(),
        },
    );
    check(
        |p| {
            run_ingestion(p).storage_metadata[0]
                .metadata
                .as_mut()
                .unwrap()
                .relation_desc
                .as_mut()
                .unwrap()
                .columns[0]
                .scalar_type = 99
        },
        ProtoError::UnknownEnum {
            field: "metadata.relation_desc",
            value: 99,
        },
    );
    check(
        |p| {
            run_ingestion(p).storage_metadata[0]
                .metadata
                .as_mut()
                .unwrap()
                .data_shard = "nope".into()
        },
        ProtoError::InvalidId {
            field: "metadata.data_shard",
            source: "nope"
                .parse::<strata_controller_api::ShardId>()
                .unwrap_err(),
        },
    );
}

#[test]
fn malformed_responses_are_typed_errors() {
    let mut p = ProtoStorageResponse::from(&ReplicaResponse::<Timestamp>::StatusUpdate(
        crate::StatusUpdate {
            id: strata_controller_api::GlobalId::User(1),
            status: crate::Status::Running,
            timestamp_ms: 0,
            error: None,
            hints: vec![],
            replica_id: None,
        },
    ));
    if let Some(proto::proto_storage_response::Kind::StatusUpdate(s)) = p.kind.as_mut() {
        s.status = 0;
    }
    assert_eq!(
        ReplicaResponse::<Timestamp>::try_from(p).unwrap_err(),
        ProtoError::UnknownEnum {
            field: "status_update.status",
            value: 0
        }
    );
    let missing_upper = ProtoStorageResponse {
        kind: Some(proto::proto_storage_response::Kind::FrontierUpper(
            proto::ProtoFrontierUpper {
                id: "u1".into(),
                upper: None,
            },
        )),
    };
    assert_eq!(
        ReplicaResponse::<Timestamp>::try_from(missing_upper).unwrap_err(),
        ProtoError::MissingField {
            field: "frontier_upper.upper"
        }
    );
    let batched_missing_upper = ProtoStorageResponse {
        kind: Some(proto::proto_storage_response::Kind::FrontierUppers(
            proto::ProtoFrontierUppers {
                uppers: vec![proto::ProtoFrontierUpper {
                    id: "u1".into(),
                    upper: None,
                }],
            },
        )),
    };
    assert_eq!(
        ReplicaResponse::<Timestamp>::try_from(batched_missing_upper).unwrap_err(),
        ProtoError::MissingField {
            field: "frontier_uppers.uppers.upper"
        }
    );
    let sink_without_as_of = {
        let mut p = ProtoStorageCommand::from(&StorageCommand::RunSink(sink(1, 2, 3)));
        if let Some(cmd::Kind::RunSink(s)) = p.kind.as_mut() {
            s.description.as_mut().unwrap().as_of = None;
        }
        p
    };
    assert_eq!(
        StorageCommand::<Timestamp>::try_from(sink_without_as_of).unwrap_err(),
        ProtoError::MissingField {
            field: "sink.as_of"
        }
    );
}

/// A replica built against the proto before `frontier_uppers` sends one upper per
/// `frontier_upper` response; the controller still reads it, as a batch of one.
#[test]
fn a_single_frontier_upper_reads_as_a_batch_of_one() {
    let single = ProtoStorageResponse {
        kind: Some(proto::proto_storage_response::Kind::FrontierUpper(
            proto::ProtoFrontierUpper {
                id: "u7".into(),
                upper: Some(proto::ProtoFrontier { elements: vec![12] }),
            },
        )),
    };
    assert_eq!(
        ReplicaResponse::<Timestamp>::try_from(single).unwrap(),
        ReplicaResponse::FrontierUppers(vec![(
            GlobalId::User(7),
            Antichain::from_elem(Timestamp::new(12))
        )])
    );
}
