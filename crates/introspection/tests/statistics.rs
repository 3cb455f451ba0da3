//! Statistics scrapers against a managed statistics collection.

#![cfg(test)]

mod common;

use std::time::Duration;

use common::*;
use strata_controller_api::{GlobalId, IntrospectionType, ReplicaId, StorageParameters};
use strata_introspection::schema::desc;
use strata_introspection::statistics::StatisticsKind;
use strata_introspection::{
    CollectionKind, SinkStatistics, SourceStatistics, StatisticsConfig, StatisticsScraper,
};

fn source(n: u64) -> SourceStatistics {
    SourceStatistics {
        messages_received: n,
        bytes_received: n * 100,
        updates_staged: n,
        updates_committed: n,
        snapshot_committed: n > 0,
        offset_known: Some(n),
        offset_committed: Some(n),
    }
}

fn kind(typ: IntrospectionType) -> CollectionKind {
    CollectionKind::for_introspection(typ, &StorageParameters::default())
}

async fn scraper_is_seeded_consolidates_and_evicts(file: bool) {
    let b = backend(file).await;
    let (coll, s) = (GlobalId::System(30), shard(30));
    let d = desc(IntrospectionType::SourceStatistics);
    let (u1, u2, r1, r2) = (
        GlobalId::User(1),
        GlobalId::User(2),
        ReplicaId(1),
        ReplicaId(2),
    );
    // A previous controller wrote statistics of u1 on r1 and u2 on r1.
    seed(
        &b,
        s,
        d.clone(),
        &[
            (source(10).to_row(u1, r1), 1),
            (source(4).to_row(u2, r1), 1),
        ],
    )
    .await;

    let m = manager(false, fast_config());
    register(
        &m,
        &b,
        coll,
        s,
        d.clone(),
        kind(IntrospectionType::SourceStatistics),
    )
    .await;
    let cfg = StatisticsConfig {
        interval: Duration::from_secs(3600),
        evict_after: Duration::from_secs(3600),
    };
    let scraper = StatisticsScraper::<SourceStatistics, _>::start(m.clone(), coll, cfg)
        .await
        .unwrap();
    let mut seeded = scraper.current();
    seeded.sort_by_key(|(id, r, _)| (*id, *r));
    assert_eq!(seeded, vec![(u1, r1, source(10)), (u2, r1, source(4))]);
    // The seeded rows were not retracted at start-up.
    m.sync(coll).await.unwrap();
    assert_eq!(contents(&b, s, d.clone()).await.len(), 2);

    // r1 restarted (its count went back to 3); r2 is new.
    scraper.update(u1, r1, source(3));
    scraper.update(u1, r2, source(7));
    scraper.drop_id(u2);
    scraper.scrape_now().unwrap();
    m.sync(coll).await.unwrap();
    let shown = SourceStatistics {
        messages_received: 13,
        bytes_received: 1300,
        updates_staged: 13,
        updates_committed: 13,
        ..source(3)
    };
    let expected = map(&[(shown.to_row(u1, r1), 1), (source(7).to_row(u1, r2), 1)]);
    assert_eq!(contents(&b, s, d.clone()).await, expected);

    scraper.drop_replica(r2);
    scraper.retain_ids(|id| id != u1);
    scraper.scrape_now().unwrap();
    m.sync(coll).await.unwrap();
    assert!(contents(&b, s, d).await.is_empty());
}

async fn scraper_writes_on_its_interval_and_evicts_stale_entries(file: bool) {
    let b = backend(file).await;
    let (coll, s) = (GlobalId::System(31), shard(31));
    let d = desc(IntrospectionType::SinkStatistics);
    let m = manager(false, fast_config());
    register(
        &m,
        &b,
        coll,
        s,
        d.clone(),
        kind(IntrospectionType::SinkStatistics),
    )
    .await;
    let cfg = StatisticsConfig {
        interval: Duration::from_secs(3600),
        evict_after: Duration::from_millis(300),
    };
    let scraper = StatisticsScraper::<SinkStatistics, _>::start(m.clone(), coll, cfg)
        .await
        .unwrap();
    let stats = SinkStatistics {
        messages_staged: 1,
        messages_committed: 1,
        bytes_staged: 8,
        bytes_committed: 8,
    };
    scraper.update(GlobalId::User(3), ReplicaId(1), stats);
    // The interval changes at runtime; nobody calls scrape_now.
    scraper.set_interval(Duration::from_millis(20));
    assert_eq!(scraper.interval(), Duration::from_millis(20));
    let row = stats.to_row(GlobalId::User(3), ReplicaId(1));
    // Reports keep coming while we wait, so the entry stays fresh.
    let written = eventually(|| async {
        scraper.update(GlobalId::User(3), ReplicaId(1), stats);
        contents(&b, s, d.clone()).await == map(&[(row.clone(), 1)])
    })
    .await;
    assert!(written, "the scraper never wrote");
    // No further reports: the entry is evicted and its row retracted.
    let evicted = eventually(|| async { contents(&b, s, d.clone()).await.is_empty() }).await;
    assert!(evicted, "the stale entry was never evicted");
    assert!(scraper.current().is_empty());
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(false).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$name(true).await
            }
        }
    )*};
}

both_backends!(
    scraper_is_seeded_consolidates_and_evicts,
    scraper_writes_on_its_interval_and_evicts_stale_entries,
);
