//! Inspection writes nothing: a client over a store that refuses every write opens the
//! location, inspects a shard and reads its latest contents, and the store's listing is
//! the same afterwards.

#![cfg(test)]

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::testing::DenyWrites;
use strata_persist_backend::{Location, PersistClient, PersistConfig, PersistError};

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// Every object's key, size and e-tag, in order.
async fn listing(
    store: &dyn ObjectStore,
    prefix: &object_store::path::Path,
) -> Vec<(String, u64, Option<String>)> {
    let mut all: Vec<_> = store
        .list(Some(prefix))
        .map_ok(|m| (m.location.to_string(), m.size, m.e_tag))
        .try_collect()
        .await
        .unwrap();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_client_inspects_and_reads_without_writing() {
    let url = format!("mem://read-only-{}", uuid::Uuid::new_v4().simple());
    read_only_client_on(&url).await;
}

/// The same on a real S3 server, as read-only credentials would see it (moto, started
/// by `cargo xtask test`); without `STRATA_S3_TEST_BUCKET` there is no server and the
/// test returns early.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_client_inspects_and_reads_without_writing_on_s3() {
    let Some(bucket) = std::env::var("STRATA_S3_TEST_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        eprintln!("a_read_only_client_..._on_s3: STRATA_S3_TEST_BUCKET is unset");
        return;
    };
    let url = format!("s3://{bucket}/read-only-{}", uuid::Uuid::new_v4().simple());
    read_only_client_on(&url).await;
}

async fn read_only_client_on(url: &str) {
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let writer_client = PersistClient::open_with_config(url, cfg).await.unwrap();
    let shard = new_shard();
    let mut writer = writer_client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    for t in 0..5u64 {
        let update = (Ok(test_row(t as i64)), Timestamp::new(t), 1);
        writer
            .compare_and_append(&[update], fr(t), fr(t + 1))
            .await
            .unwrap()
            .unwrap();
    }
    let empty = new_shard();
    let empty_writer = writer_client
        .open_writer::<Timestamp>(empty, test_desc())
        .await
        .unwrap();
    // The writers are done before the listing, so only the reader could change it.
    writer.expire().await.unwrap();
    empty_writer.expire().await.unwrap();

    let inner = writer_client.location().store.clone();
    let before = listing(inner.as_ref(), &writer_client.location().prefix).await;
    let deny = DenyWrites::new(Arc::clone(&inner));
    let prefix = writer_client.location().prefix.clone();
    let loc = Location::from_store(deny.clone(), prefix.as_ref(), url)
        .with_consensus(writer_client.location().consensus.clone());
    let reader = PersistClient::from_location(loc, PersistConfig::default());

    let state = reader.inspect_shard(shard).await.unwrap();
    assert_eq!(state.upper, [5]);
    let (rows, upper) = reader
        .peek_latest::<Timestamp>(shard, &test_desc())
        .await
        .unwrap();
    assert_eq!(upper, fr(5));
    let mut values: Vec<i64> = rows
        .iter()
        .map(|(d, _, diff)| {
            assert_eq!(*diff, 1);
            match d.as_ref().unwrap().unpack().first() {
                Some(strata_controller_api::Datum::Int64(v)) => *v,
                other => panic!("{other:?}"),
            }
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, vec![0, 1, 2, 3, 4]);
    let (none, lower) = reader
        .peek_latest::<Timestamp>(empty, &test_desc())
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(lower, fr(0));
    assert!(!reader.is_finalized(shard).await.unwrap());
    assert!(matches!(
        reader
            .peek_latest::<Timestamp>(new_shard(), &test_desc())
            .await,
        Err(PersistError::NotInitialized { .. })
    ));

    assert_eq!(deny.refused(), Vec::<String>::new(), "a read wrote");
    assert_eq!(
        listing(inner.as_ref(), &writer_client.location().prefix).await,
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_read_only_writes_no_format_marker() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let loc = Location::open_read_only(&url).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "opening read-only wrote into the directory"
    );
    // A writable open of the same location writes the marker.
    drop(loc);
    Location::open(&url).await.unwrap();
    assert!(dir.path().join("strata-format").exists());
    // A directory that does not exist is an error, and is not created.
    let missing = dir.path().join("missing");
    let error = Location::open_read_only(&format!("file://{}", missing.display()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a directory"), "{error}");
    assert!(!missing.exists());
}
