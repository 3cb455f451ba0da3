//! A write fence makes appends conditional on a critical reader's opaque, in the same
//! CAS as the append: once an owner moves the opaque (a restarted controller bumping
//! its epoch), no write of an older owner can land, not even one already in flight.

#![cfg(test)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_controller_api::{Antichain, Datum, ShardId, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::txns::{Txn, TxnsError, TxnsHandle};
use strata_persist_backend::{PersistClient, PersistError, SinceHandle, WriteFence};

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// The owner's critical reader on `shard`, holding opaque 1.
async fn owner_at_1(client: &PersistClient, shard: ShardId) -> SinceHandle<Timestamp> {
    let mut owner = client
        .open_critical_since::<Timestamp>(shard, "owner")
        .await
        .unwrap();
    owner
        .compare_and_downgrade_since(0, (1, &fr(0)))
        .await
        .unwrap()
        .unwrap();
    owner
}

/// A newer owner takes over by moving the opaque from 1 to 2.
async fn take_over(owner: &mut SinceHandle<Timestamp>) {
    owner
        .compare_and_downgrade_since(1, (2, &fr(0)))
        .await
        .unwrap()
        .unwrap();
}

fn fence(opaque: u64) -> Option<WriteFence> {
    Some(WriteFence {
        reader: "owner".into(),
        opaque,
    })
}

async fn client() -> PersistClient {
    PersistClient::open(&format!("mem://fence-{}", new_shard()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fenced_writer_writes_nothing_once_the_opaque_moves() {
    let client = client().await;
    let shard = new_shard();
    let mut owner = owner_at_1(&client, shard).await;
    let mut old = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    old.set_fence(fence(1));
    let row = |k| (Ok(test_row(k)), Timestamp::new(0), 1);
    old.compare_and_append(&[row(1)], fr(0), fr(1))
        .await
        .unwrap()
        .unwrap();

    // A newer owner takes over by moving the opaque.
    take_over(&mut owner).await;
    let refused = old
        .compare_and_append(&[(Ok(test_row(2)), Timestamp::new(1), 1)], fr(1), fr(2))
        .await;
    match refused {
        Err(PersistError::Fenced {
            shard: s,
            reader,
            expected: 1,
            current: 2,
        }) => assert_eq!((s, reader.as_str()), (shard, "owner")),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(
        client.fetch_recent_upper::<Timestamp>(shard).await.unwrap(),
        fr(1),
        "the refused append wrote nothing"
    );

    // The new owner's writer, fenced on the new opaque, writes on; an unfenced writer
    // is unaffected; a fence on a reader that does not exist expects opaque 0.
    let mut new = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    new.set_fence(fence(2));
    new.compare_and_append(&[(Ok(test_row(3)), Timestamp::new(1), 1)], fr(1), fr(2))
        .await
        .unwrap()
        .unwrap();
    old.set_fence(None);
    old.compare_and_append(&[], fr(2), fr(3))
        .await
        .unwrap()
        .unwrap();
    old.set_fence(Some(WriteFence {
        reader: "nobody".into(),
        opaque: 5,
    }));
    assert!(matches!(
        old.compare_and_append(&[], fr(3), fr(4)).await,
        Err(PersistError::Fenced { current: 0, .. })
    ));
}

/// A fenced writer that appends at its own, now stale, upper hears `Fenced`, not an
/// upper mismatch that looks determinate and retryable: the fence is checked first.
#[tokio::test]
async fn a_fenced_writer_at_a_stale_upper_hears_fenced_first() {
    let client = client().await;
    let shard = new_shard();
    let mut owner = owner_at_1(&client, shard).await;
    let mut old = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    old.set_fence(fence(1));
    take_over(&mut owner).await;
    let mut new = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    new.set_fence(fence(2));
    new.compare_and_append(&[(Ok(test_row(1)), Timestamp::new(0), 1)], fr(0), fr(1))
        .await
        .unwrap()
        .unwrap();
    // `old` still believes the upper is 0.
    let res = old
        .compare_and_append(&[(Ok(test_row(2)), Timestamp::new(0), 1)], fr(0), fr(1))
        .await;
    assert!(
        matches!(
            res,
            Err(PersistError::Fenced {
                expected: 1,
                current: 2,
                ..
            })
        ),
        "a fenced writer is told so first: {res:?}"
    );
}

/// An old owner commits as fast as it can while a new owner fences the txns shard at
/// some point in the middle. Whatever the interleaving, every commit the old owner got
/// acknowledged is below the txns upper at the moment of the fence, and every commit it
/// tries afterwards fails with `Fenced`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_txns_commit_of_an_old_owner_lands_after_the_fence() {
    let client = client().await;
    let (txns, a) = (new_shard(), new_shard());
    let mut owner = owner_at_1(&client, txns).await;
    let mut old = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    old.set_fence(fence(1));
    old.register(Timestamp::new(0), [(a, test_desc())])
        .await
        .unwrap()
        .unwrap();

    let fenced = Arc::new(AtomicBool::new(false));
    let committer = {
        let fenced = Arc::clone(&fenced);
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused_after_fence = 0;
            for k in 0..400i64 {
                let fenced_before = fenced.load(Ordering::SeqCst);
                let at = old.txns_upper().elements()[0];
                let mut txn = Txn::new();
                txn.write(a, [(Ok(test_row(k)), 1)]);
                match txn.commit_at(&mut old, at).await {
                    Ok(Ok(_)) => {
                        assert!(!fenced_before, "commit {k} landed after the fence");
                        acked.push((k, at.as_millis()));
                    }
                    Ok(Err(_mismatch)) => {}
                    Err(TxnsError::Persist(PersistError::Fenced { current: 2, .. })) => {
                        refused_after_fence += 1;
                        if refused_after_fence == 3 {
                            break;
                        }
                    }
                    Err(other) => panic!("unexpected failure: {other}"),
                }
            }
            (acked, refused_after_fence)
        })
    };
    // Let some commits land, then fence.
    while client
        .fetch_recent_upper::<Timestamp>(txns)
        .await
        .unwrap()
        .less_than(&Timestamp::new(20))
    {
        tokio::task::yield_now().await;
    }
    take_over(&mut owner).await;
    fenced.store(true, Ordering::SeqCst);
    let upper_at_fence = client
        .fetch_recent_upper::<Timestamp>(txns)
        .await
        .unwrap()
        .elements()[0]
        .as_millis();
    let (acked, refused) = committer.await.unwrap();
    assert_eq!(refused, 3, "every commit after the fence is refused");
    assert!(
        acked.len() >= 19,
        "commits before the fence land: {acked:?}"
    );
    for (k, ts) in &acked {
        assert!(*ts < upper_at_fence, "commit {k} at {ts} is past the fence");
    }

    // A fresh reader sees exactly the acknowledged commits.
    let mut fresh = TxnsHandle::<Timestamp>::open(client.clone(), txns)
        .await
        .unwrap();
    assert_eq!(
        fresh.txns_upper(),
        fr(upper_at_fence),
        "nothing moved it since"
    );
    let rows = fresh
        .read_at(a, Timestamp::new(upper_at_fence - 1))
        .await
        .unwrap();
    let got: BTreeSet<i64> = rows
        .iter()
        .map(|(data, _, diff)| {
            assert_eq!(*diff, 1);
            match data.as_ref().unwrap().unpack().first() {
                Some(Datum::Int64(k)) => *k,
                other => panic!("bad row {other:?}"),
            }
        })
        .collect();
    let want: BTreeSet<i64> = acked.iter().map(|(k, _)| *k).collect();
    assert_eq!(got, want);
}
