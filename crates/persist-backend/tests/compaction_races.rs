//! Compaction racing other maintenance. A compactor reads its inputs without holding
//! them; when another compactor merges the same batches and GC deletes their parts in
//! the meantime, the step is moot (its merge could never apply), not an error, and it
//! leaves no registration behind.

use std::sync::Arc;

use object_store::ObjectStore;
use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::testing::{AfterPut, Faults, FaultyStore};
use strata_persist_backend::{Location, PersistClient, PersistConfig};

#[tokio::test]
async fn a_compaction_whose_inputs_were_collected_meanwhile_is_moot() {
    let name = format!("compaction-race-{}", uuid::Uuid::new_v4().simple());
    let url = format!("mem://{name}");
    let inner: Arc<dyn ObjectStore> = strata_persist_backend::location::memory_store(&name);
    let hooked = Arc::new(FaultyStore::new(Arc::clone(&inner), Faults::new(0, 0)));
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let ours = PersistClient::from_location(
        Location::from_store(Arc::clone(&hooked) as Arc<dyn ObjectStore>, "", &url),
        cfg.clone(),
    );
    let theirs = PersistClient::from_location(Location::from_store(inner, "", &url), cfg);
    let shard = new_shard();
    let mut w = ours
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    for t in 0..4u64 {
        let update = (Ok(test_row(t as i64)), Timestamp::new(t), 1);
        w.append(&[update], Antichain::from_elem(Timestamp::new(t + 1)))
            .await
            .unwrap()
            .unwrap();
    }
    // Our compactor registers (a put of the shard's head), and pauses there while
    // another client merges the same batches and collects their parts.
    let other = theirs.clone();
    hooked.arm(
        |key| key.as_ref().ends_with("/head"),
        Box::new(move || {
            Box::pin(async move {
                assert!(other.compact(shard, 10).await.unwrap() > 0);
                assert!(other.gc(shard).await.unwrap().deleted_parts > 0);
                AfterPut::Answer
            })
        }),
    );
    ours.compact(shard, 1).await.unwrap();
    assert!(!hooked.is_armed(), "the hook ran");

    let state = ours.inspect_shard(shard).await.unwrap();
    let writers: Vec<&str> = state.writers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(writers, [w.writer_id()], "the compactor stayed registered");
    let (rows, upper) = ours
        .peek_latest::<Timestamp>(shard, &test_desc())
        .await
        .unwrap();
    assert_eq!(upper, Antichain::from_elem(Timestamp::new(4)));
    assert_eq!(rows.len(), 4);
}
