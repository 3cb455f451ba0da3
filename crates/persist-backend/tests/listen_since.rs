//! A listen refuses to go on once the shard's since has passed what it yielded:
//! compaction moves earlier updates up to the since, into the listen's window, and
//! yielding them would count them twice.

#![cfg(test)]

use strata_controller_api::{Antichain, Timestamp};
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};
use strata_persist_backend::{ListenEvent, PersistClient, PersistConfig, PersistError, Update};

fn upd(k: i64, t: u64) -> Update<Timestamp> {
    (Ok(test_row(k)), Timestamp::new(t), 1)
}

fn at(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

#[tokio::test]
async fn a_listen_refuses_once_the_since_passes_it() {
    let client = PersistClient::open("mem://listen-since")
        .await
        .unwrap()
        .with_config(PersistConfig::for_tests());
    let shard = new_shard();
    let mut w = client
        .open_writer::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    for t in 0..5 {
        w.compare_and_append(&[upd(t as i64, t)], at(t), at(t + 1))
            .await
            .unwrap()
            .unwrap();
    }
    let mut r = client
        .open_leased_reader::<Timestamp>(shard, test_desc())
        .await
        .unwrap();
    let mut listen = r.listen(&Timestamp::new(2)).await.unwrap();
    let events = listen.next().await.unwrap();
    assert_eq!(
        events,
        vec![
            ListenEvent::Updates(vec![upd(3, 3), upd(4, 4)]),
            ListenEvent::Progress(at(5))
        ]
    );
    // The reader lets its since go past what the listen yielded, and compaction
    // moves every earlier update up to it.
    for t in 5..8 {
        w.compare_and_append(&[upd(t as i64, t)], at(t), at(t + 1))
            .await
            .unwrap()
            .unwrap();
    }
    r.downgrade_since(&at(7)).await.unwrap();
    while client.compact(shard, 16).await.unwrap() > 0 {}
    match listen.next().await {
        Err(PersistError::ReadBeforeSince { .. }) => {}
        other => panic!("the listen went on past the since: {other:?}"),
    }
}
