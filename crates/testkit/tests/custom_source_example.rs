//! Runs the scenario of `examples/custom_source.rs` as a test: a source connector
//! written against the public API only, registered with the replicas, ingested on two
//! replicas through a kill and a restart, with exactly-once results.

#[path = "../examples/custom_source.rs"]
#[allow(dead_code, unreachable_pub)] // `main` is the example's; this test calls `scenario`
mod custom_source;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_source_is_exact_through_a_replica_kill() {
    strata_testkit::init_test_tracing();
    let outcome = custom_source::scenario(40).await.unwrap();
    assert_eq!(outcome.transactions, 40, "{outcome:?}");
    // 40 keys, each inserted once (updates replace, they do not add).
    assert_eq!(outcome.rows, 40, "{outcome:?}");
    // Both replicas opened a reader, and the restarted one opened again.
    assert!(outcome.opens >= 3, "{outcome:?}");
}
