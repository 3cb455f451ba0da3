//! The instance suite's micro-benchmarks, as criterion groups run from `instance.rs`'s
//! `main`, each with its baseline beside it:
//!
//! - `command_history`: `CommandHistory` push (with its amortised reduction) per
//!   command over 1M commands of ingestion churn, drops confirmed with
//!   `forget_dropped` after a lag, against pushing the same commands onto a bare `Vec`;
//! - `proto_command_encode`: a command converted to its proto message and encoded
//!   (the controller's send path), against prost encoding the converted message;
//! - `proto_response_decode`: a `FrontierUppers` response decoded and converted back
//!   with validation (the controller's receive path), against prost decoding alone.

use std::collections::VecDeque;
use std::hint::black_box;

use prost::Message;
use strata_bench_support::Mode;
use strata_bench_support::micro::criterion::{BatchSize, Criterion};
use strata_bench_support::micro::{Group, compare};
use strata_controller_api::{Antichain, GlobalId, Timestamp};
use strata_instance_client::proto::{ProtoStorageCommand, ProtoStorageResponse};
use strata_instance_client::{CommandHistory, ReplicaResponse, StorageCommand};

use super::{frontier, ingestion};

/// Commands of churn: ingestions created, compacted and dropped, with a steady set of
/// live ones.
fn churn(n: usize) -> Vec<StorageCommand<Timestamp>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let id = 10 + 2 * i;
        out.push(ingestion(id, i));
        for t in 0..4 {
            out.push(StorageCommand::AllowCompaction {
                id: GlobalId::User(id),
                frontier: frontier(t),
            });
        }
        // Keep the most recent 100 ingestions live; drop the one before them.
        if i >= 100 {
            let old = 10 + 2 * (i - 100);
            for c in [old, old + 1] {
                out.push(StorageCommand::AllowCompaction {
                    id: GlobalId::User(c),
                    frontier: Antichain::new(),
                });
            }
        }
        i += 1;
    }
    out.truncate(n);
    out
}

/// Drops confirmed by every replica lag this many ids behind the drops themselves.
const CONFIRMATION_LAG: usize = 200;

/// Pushes `commands`, confirming each drop (`forget_dropped`) `CONFIRMATION_LAG` drops
/// later, as an instance does when replicas report `DroppedId`.
fn history_push(commands: Vec<StorageCommand<Timestamp>>) -> CommandHistory<Timestamp> {
    let mut history = CommandHistory::new();
    let mut unconfirmed = VecDeque::new();
    for command in commands {
        if let StorageCommand::AllowCompaction { id, frontier } = &command
            && frontier.is_empty()
        {
            unconfirmed.push_back(*id);
        }
        history.push(command);
        if unconfirmed.len() > CONFIRMATION_LAG {
            history.forget_dropped(unconfirmed.pop_front());
        }
    }
    black_box(history.len());
    history
}

fn vec_push(commands: Vec<StorageCommand<Timestamp>>) -> Vec<StorageCommand<Timestamp>> {
    let mut log = Vec::new();
    for command in commands {
        log.push(command);
    }
    black_box(log.len());
    log
}

/// `CommandHistory` against a bare `Vec`.
pub(crate) fn history(c: &mut Criterion, mode: Mode) {
    let commands = churn(mode.scale(1_000_000, 1_000) as usize);
    let spec = Group {
        group: "command_history",
        name: "command_history_push_and_reduce_1m_churn",
        baseline_name: "bare_vec_push",
        per: "command",
        elements: commands.len() as u64,
    };
    compare(
        c,
        mode,
        &spec,
        |b| b.iter_batched(|| commands.clone(), history_push, BatchSize::LargeInput),
        |b| b.iter_batched(|| commands.clone(), vec_push, BatchSize::LargeInput),
    );
}

/// Proto conversion against prost's encoding and decoding alone.
pub(crate) fn proto(c: &mut Criterion, mode: Mode) {
    let commands = churn(mode.scale(100_000, 100) as usize);
    let converted: Vec<ProtoStorageCommand> =
        commands.iter().map(ProtoStorageCommand::from).collect();
    let spec = Group {
        group: "proto_command_encode",
        name: "proto_command_convert_and_encode",
        baseline_name: "prost_encode_converted_command",
        per: "command",
        elements: commands.len() as u64,
    };
    compare(
        c,
        mode,
        &spec,
        |b| {
            b.iter(|| {
                commands
                    .iter()
                    .map(|c| ProtoStorageCommand::from(c).encode_to_vec().len())
                    .sum::<usize>()
            })
        },
        |b| {
            b.iter(|| {
                converted
                    .iter()
                    .map(|c| c.encode_to_vec().len())
                    .sum::<usize>()
            })
        },
    );

    let n = mode.scale(100_000, 100);
    let encoded: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let response =
                ReplicaResponse::FrontierUppers(vec![(GlobalId::User(1 + i % 1_000), frontier(i))]);
            ProtoStorageResponse::from(&response).encode_to_vec()
        })
        .collect();
    let spec = Group {
        group: "proto_response_decode",
        name: "proto_response_decode_and_convert",
        baseline_name: "prost_decode_response",
        per: "response",
        elements: n,
    };
    compare(
        c,
        mode,
        &spec,
        |b| {
            b.iter(|| {
                encoded
                    .iter()
                    .map(|bytes| {
                        let proto = ProtoStorageResponse::decode(bytes.as_slice()).unwrap();
                        ReplicaResponse::<Timestamp>::try_from(proto).unwrap()
                    })
                    .filter(|r| matches!(r, ReplicaResponse::FrontierUppers(_)))
                    .count()
            })
        },
        |b| {
            b.iter(|| {
                encoded
                    .iter()
                    .map(|bytes| ProtoStorageResponse::decode(bytes.as_slice()).unwrap())
                    .filter(|r| r.kind.is_some())
                    .count()
            })
        },
    );
}
