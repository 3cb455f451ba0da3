//! One ingestion can be followed in the logs: with a subscriber that captures every
//! `strata_replica` event at debug level, a small ingestion over the persist adapter
//! leaves events inside spans that carry its collection id, from the command that
//! started it down to the persist calls that wrote it.

#![cfg(test)]
#![cfg(feature = "persist")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use strata_controller_api::LoadGenerator;
use strata_instance_client::StorageCommand;
use strata_replica::shard::Shards;
use strata_replica::shard::persist::PersistShards;
use tracing_subscriber::EnvFilter;

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// The lines that mention all of `parts`.
fn matching<'a>(lines: &'a [String], parts: &[&str]) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|line| parts.iter().all(|p| line.contains(p)))
        .collect()
}

#[test]
fn an_ingestion_can_be_followed_in_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The only test of this binary, so the global subscriber sees every worker thread.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("strata_replica=debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let cmd = ingestion(700, LoadGenerator::Counter { max_ticks: None }, 0, 3);
    let shards: Arc<dyn Shards> = Arc::new(PersistShards::open("mem://replica-tracing").unwrap());
    let (mut replica, _rx) = start(frozen_config(2, 12), Arc::clone(&shards));
    send(
        &mut replica,
        &history(1, vec![StorageCommand::RunIngestion(cmd.clone())]),
    );
    wait_for("ingestion", || ingested_offset(&*shards, &cmd) >= 12);
    replica.shutdown();

    let lines = captured.lines();
    let show = || lines.join("\n");
    // The command that started it names the collection and the epoch.
    assert!(
        !matching(
            &lines,
            &["replica.command{command=\"RunIngestion\" collection=u700 epoch=1}"]
        )
        .is_empty(),
        "no RunIngestion command span:\n{}",
        show()
    );
    // The dataflow's events carry it on every worker...
    for worker in ["worker=0", "worker=1"] {
        assert!(
            !matching(&lines, &["ingestion{collection=u700", worker]).is_empty(),
            "no event of the dataflow on {worker}:\n{}",
            show()
        );
    }
    // ...its status changes and bindings...
    assert!(!matching(&lines, &["collection=u700", "status changed", "Running"]).is_empty());
    assert!(!matching(&lines, &["ingestion{collection=u700", "minted a binding"]).is_empty());
    // ...and the persist calls that wrote each round sit inside its commit span, with
    // the shard they wrote.
    let data_shard = cmd.storage_metadata[&cmd.id].data_shard.to_string();
    let writes = matching(
        &lines,
        &[
            "ingestion.commit{collection=u700",
            &format!("persist.compare_and_append{{shard={data_shard}"),
            "appended",
        ],
    );
    assert!(
        !writes.is_empty(),
        "no persist write of {data_shard}:\n{}",
        show()
    );
}
