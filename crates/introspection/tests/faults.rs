//! Storage failures: the manager backs off, logs, retries on later ticks and never
//! panics; a differential collection still converges exactly.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use strata_controller_api::StorageWriteOp;
use strata_controller_api::{GlobalId, Row, StorageError};
use strata_introspection::CollectionKind;
use strata_persist_backend::location::{Location, memory_store};
use strata_persist_backend::testing::{Faults, FaultyStore};
use strata_persist_backend::{PersistClient, PersistConfig};

fn faulty_backend(name: &str) -> (Backend, Arc<Faults>) {
    let faults = Faults::new(0, 0);
    let store = Arc::new(FaultyStore::new(memory_store(name), Arc::clone(&faults)));
    let loc = Location::from_store(store, "", &format!("mem://{name}"));
    let cfg = PersistConfig {
        io_attempts: 1,
        ..PersistConfig::for_tests()
    };
    (
        Backend::from_client(PersistClient::from_location(loc, cfg)),
        faults,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_an_outage() {
    let (b, faults) = faulty_backend("introspection-outage");
    let (diff_id, app_id) = (GlobalId::System(40), GlobalId::System(41));
    let m = manager(false, fast_config());
    register(
        &m,
        &b,
        diff_id,
        shard(40),
        mapping_desc(),
        CollectionKind::Differential,
    )
    .await;
    let append_only = CollectionKind::AppendOnly {
        history: None,
        dedup_status: false,
    };
    register(&m, &b, app_id, shard(41), mapping_desc(), append_only).await;
    m.sync(diff_id).await.unwrap();

    // Every storage call fails.
    faults.determinate_permille.store(1000, Ordering::Relaxed);
    let desired = [(text_row("u1", "a"), 1)];
    m.update_desired(diff_id, StorageWriteOp::Set(desired.to_vec()))
        .unwrap();
    assert!(matches!(
        m.sync(diff_id).await,
        Err(StorageError::Persist { .. })
    ));
    let pending_append = tokio::spawn(m.append(app_id, vec![(text_row("u2", "b"), 1)]));

    faults.disable();
    // The append was kept and lands on a later tick; the desired state is written.
    pending_append.await.unwrap().unwrap();
    m.sync(diff_id).await.unwrap();
    assert_eq!(contents(&b, shard(40), mapping_desc()).await, map(&desired));
    assert_eq!(
        contents(&b, shard(41), mapping_desc()).await,
        map(&[(text_row("u2", "b"), 1)])
    );
    assert!(faults.injected.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_converges_under_indeterminate_faults() {
    let (b, faults) = faulty_backend("introspection-indeterminate");
    let id = GlobalId::System(42);
    let m = manager(false, fast_config());
    register(
        &m,
        &b,
        id,
        shard(42),
        mapping_desc(),
        CollectionKind::Differential,
    )
    .await;
    faults.determinate_permille.store(100, Ordering::Relaxed);
    faults.indeterminate_permille.store(200, Ordering::Relaxed);
    let mut desired: std::collections::BTreeMap<Row, i64> = Default::default();
    for i in 0..40 {
        let row = text_row("u", &(i % 7).to_string());
        let diff = if i % 3 == 0 && desired.contains_key(&row) {
            -1
        } else {
            1
        };
        *desired.entry(row.clone()).or_default() += diff;
        desired.retain(|_, d| *d != 0);
        m.differential_append(id, vec![(row, diff)]).unwrap();
        let _ = m.sync(id).await;
    }
    faults.disable();
    m.sync(id).await.unwrap();
    assert_eq!(contents(&b, shard(42), mapping_desc()).await, desired);
    assert!(faults.injected.load(Ordering::Relaxed) > 0);
}
