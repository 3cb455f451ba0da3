//! The `strata` binary: `demo` (the main job), `replica`, `inspect` and `top`.
//!
//! Until the crates it drives are ready, every command says what it will do and exits
//! non-zero, so nobody mistakes the placeholder for the real thing.

use std::process::ExitCode;

const PLAN: &str = "\
strata demo will, on a local file store at ./strata-data with an in-process replica:
  1. create an instance and its replicas;
  2. create two tables and append to both atomically over many timestamps;
  3. create an auction load-generator source with subsources, and a sink;
  4. show introspection: shard mapping, frontiers, statuses, statistics;
  5. snapshot a table and a subsource and print them;
  6. drop a subsource and the sink, and show their shards finalized and GC at work;
  7. print a one-screen summary. A second run recovers the first run's state.";

fn main() -> ExitCode {
    let command = std::env::args().nth(1).unwrap_or_default();
    match command.as_str() {
        "demo" => {
            eprintln!(
                "{PLAN}\n\nstrata demo is not built yet: the controller crates are still in progress"
            );
        }
        "replica" | "inspect" | "top" => {
            eprintln!(
                "strata {command} is not built yet: the controller crates are still in progress"
            );
        }
        _ => eprintln!("usage: strata <demo|replica|inspect|top>"),
    }
    ExitCode::FAILURE
}
