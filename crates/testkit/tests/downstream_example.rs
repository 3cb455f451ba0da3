//! Runs the scenario of `examples/downstream.rs` as a test: a harness on a store with a
//! 20% error rate, a table and an auction source, a replica crash, exact results.

#[path = "../examples/downstream.rs"]
#[allow(dead_code, unreachable_pub)] // `main` is the example's; this test calls `scenario`
mod downstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_downstream_example_is_exact_under_store_faults_and_a_crash() {
    strata_testkit::init_test_tracing();
    let outcome = downstream::scenario(7).await.unwrap();
    assert!(outcome.faults.total_faults() > 0, "{outcome:?}");
    assert!(outcome.rows_checked > 3, "{outcome:?}");
}
