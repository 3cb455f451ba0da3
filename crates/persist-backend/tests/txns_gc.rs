//! Orphaned txns batch parts (a committer crashed between writing them and its CAS)
//! are deleted; parts of committed batches, applied or not, never are.

#![cfg(test)]

use std::collections::BTreeMap;

use object_store::path::Path;
use strata_controller_api::{Datum, ShardId, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{PersistClient, PersistConfig, Update};

fn keys(snapshot: &[Update<Timestamp>]) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for (data, _, diff) in snapshot {
        let Some(Datum::Int64(k)) = data.as_ref().unwrap().unpack().first().cloned() else {
            panic!("bad row")
        };
        *out.entry(k).or_insert(0) += diff;
    }
    out
}

async fn part_count(client: &PersistClient, txns: ShardId) -> usize {
    use futures::TryStreamExt;
    let prefix = Path::from(format!("txns/{txns}/parts"));
    let listed: Vec<_> = client
        .location()
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .unwrap();
    listed.len()
}

#[tokio::test]
async fn orphaned_batch_parts_are_deleted_and_committed_ones_kept() {
    let url = format!("mem://txns-gc-{}", uuid::Uuid::new_v4().simple());
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let client = PersistClient::open_with_config(&url, cfg).await.unwrap();
    let (txns, a, b) = (new_shard(), new_shard(), new_shard());
    let mut h = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    h.register(Timestamp::new(0), [(a, test_desc()), (b, test_desc())])
        .await
        .unwrap()
        .unwrap();
    for t in 1..=4u64 {
        let mut txn = Txn::new();
        txn.write(a, [(Ok(test_row(t as i64)), 1)]);
        txn.write(b, [(Ok(test_row(t as i64)), 1)]);
        let applied = txn
            .commit_at(&mut h, Timestamp::new(t))
            .await
            .unwrap()
            .unwrap();
        if t <= 2 {
            applied.apply(&mut h).await.unwrap();
        }
    }
    assert_eq!(
        part_count(&client, txns).await,
        8,
        "one part per table per commit"
    );
    let orphan = Path::from(format!("txns/{txns}/parts/{a}/crashed-committer"));
    let payload = object_store::PutPayload::from_static(b"parquet?");
    client
        .location()
        .store
        .put_opts(&orphan, payload, object_store::PutOptions::default())
        .await
        .unwrap();

    assert_eq!(h.gc_orphans().await.unwrap(), 1, "only the orphan goes");
    assert_eq!(part_count(&client, txns).await, 8);
    let want: BTreeMap<i64, i64> = (1..=4).map(|k| (k, 1)).collect();
    assert_eq!(
        keys(&h.read_at(a, Timestamp::new(4)).await.unwrap()),
        want,
        "applied and unapplied commits survive"
    );

    h.tidy_now().await.unwrap();
    assert_eq!(
        h.live_rows(),
        4,
        "a's rows are retracted, b's commits 3 and 4 are not applied yet"
    );
    assert_eq!(
        h.gc_orphans().await.unwrap(),
        0,
        "applied parts are referenced by their data shard"
    );
    assert_eq!(keys(&h.read_at(b, Timestamp::new(4)).await.unwrap()), want);

    let mut other = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    assert_eq!(
        other.gc_orphans().await.unwrap(),
        0,
        "another handle agrees"
    );
    assert_eq!(
        keys(&other.read_at(a, Timestamp::new(4)).await.unwrap()),
        want
    );
}
