//! Runs the scenario of `examples/custom_connectors.rs` as a test: a source and a sink
//! connector written against the public API only, registered with the replicas, run on
//! two replicas through a kill and a restart, with exactly-once results.

#[path = "../examples/custom_connectors.rs"]
#[allow(dead_code, unreachable_pub)] // `main` is the example's; this test calls `scenario`
mod custom_connectors;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_source_and_sink_are_exact_through_a_replica_kill() {
    strata_testkit::init_test_tracing();
    let outcome = custom_connectors::scenario(40).await.unwrap();
    assert_eq!(outcome.transactions, 40, "{outcome:?}");
    // 40 keys, each inserted once (updates replace, they do not add).
    assert_eq!(outcome.rows, 40, "{outcome:?}");
    assert_eq!(outcome.ledger_rows, 40, "{outcome:?}");
    // Both replicas opened a reader (the restarted one opens again once it runs the
    // source, which may be after the data is complete).
    assert!(outcome.opens >= 2, "{outcome:?}");
}
