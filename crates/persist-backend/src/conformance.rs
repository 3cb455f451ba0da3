//! The conformance suite: public functions that any backend (any factory of clients)
//! must pass. `testkit` re-exports them; this crate runs them against memory, file and
//! S3 from `tests/`.
//!
//! Every function takes a factory; **each call of the factory must return a client of
//! the same location** (tests open several clients to check they share data). Every
//! test uses fresh random shard ids, so one location can serve many runs. A failure
//! panics with a message naming the broken rule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use strata_controller_api::{Antichain, Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp};

use crate::consensus::CasOutcome;
use crate::{ListenEvent, PersistClient, PersistConfig, PersistError, Update};

mod split;
pub mod txns;

pub use split::split_appends;

/// Something that opens clients of one location.
pub trait ClientFactory: Fn() -> BoxFuture<'static, PersistClient> + Send + Sync {}
impl<F: Fn() -> BoxFuture<'static, PersistClient> + Send + Sync> ClientFactory for F {}

fn ok<V, E: std::fmt::Display>(r: Result<V, E>, what: &str) -> V {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A fresh random shard id.
pub fn new_shard() -> ShardId {
    ShardId::from_bytes(*uuid::Uuid::new_v4().as_bytes())
}

/// The relation every suite test writes: `(k Int64 not null, v String null)`.
pub fn test_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("k", ScalarType::Int64.nullable(false))
        .with_column("v", ScalarType::String.nullable(true))
        .finish()
}

/// A row of [`test_desc`].
pub fn test_row(k: i64) -> Row {
    Row::pack(&[Datum::Int64(k), Datum::String(format!("v{k}"))])
}

fn ts(t: u64) -> Timestamp {
    Timestamp::new(t)
}

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(ts(t))
}

fn upd(k: i64, t: u64, d: i64) -> Update<Timestamp> {
    (Ok(test_row(k)), ts(t), d)
}

fn sorted(mut v: Vec<Update<Timestamp>>) -> Vec<Update<Timestamp>> {
    v.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    v
}

/// Runs every area of the suite.
pub async fn run_all(factory: impl ClientFactory) {
    tracing::info!("conformance: cas_semantics");
    cas_semantics(&factory).await;
    tracing::info!("conformance: append_snapshot_listen");
    append_snapshot_listen(&factory).await;
    tracing::info!("conformance: since_upper_rules");
    since_upper_rules(&factory).await;
    tracing::info!("conformance: leases");
    leases(&factory).await;
    tracing::info!("conformance: fencing");
    fencing(&factory).await;
    tracing::info!("conformance: compaction");
    compaction(&factory).await;
    tracing::info!("conformance: large_parts");
    large_parts(&factory).await;
    tracing::info!("conformance: split_appends");
    split_appends(&factory).await;
    tracing::info!("conformance: gc");
    gc(&factory).await;
    tracing::info!("conformance: finalization");
    finalization(&factory).await;
    tracing::info!("conformance: bad_input");
    bad_input(&factory).await;
    tracing::info!("conformance: txns");
    txns::run_all(&factory).await;
}

/// Consensus, whichever implementation the location uses: compare-and-set of the next
/// seqno, idempotent retries, a stale writer refused, every client sees one sequence.
pub async fn cas_semantics(factory: &impl ClientFactory) {
    let client = factory().await;
    let c = crate::consensus::open(client.location());
    let s = new_shard();
    assert_eq!(ok(c.head(s, 0).await, "head of a new shard"), None);
    let cas = |exp: Option<u64>, data: &'static str, tok: &'static str| {
        let c = Arc::clone(&c);
        async move {
            ok(
                c.compare_and_set(s, exp, Bytes::from(data), tok).await,
                "compare_and_set",
            )
        }
    };
    assert_eq!(
        cas(None, "a", "t1").await,
        CasOutcome::Committed,
        "first version"
    );
    assert_eq!(
        cas(None, "b", "t2").await,
        CasOutcome::Mismatch,
        "version 1 exists"
    );
    assert_eq!(
        cas(Some(1), "c", "t3").await,
        CasOutcome::Committed,
        "version 2"
    );
    assert_eq!(
        cas(Some(1), "c", "t3").await,
        CasOutcome::Committed,
        "the same write again, as a store client's internal retry sends it after a lost \
         response, is recognized as ours by its token"
    );
    assert_eq!(
        cas(Some(1), "d", "t4").await,
        CasOutcome::Mismatch,
        "version 2 exists"
    );
    for e in 2..6 {
        assert_eq!(cas(Some(e), "x", "t").await, CasOutcome::Committed);
    }
    let head = ok(c.head(s, 1).await, "head").map(|h| h.seqno);
    assert_eq!(head, Some(6), "head from a stale hint");
    assert_eq!(
        ok(c.head(s, 0).await, "head").map(|h| h.seqno),
        Some(6),
        "head without a hint"
    );
    ok(c.truncate(s, 5).await, "truncate");
    let stale = c
        .compare_and_set(s, Some(2), Bytes::from("stale"), "g")
        .await;
    assert!(
        !matches!(stale, Ok(CasOutcome::Committed)),
        "a stalled writer cannot commit behind the head: {stale:?}"
    );
    assert_eq!(
        ok(c.head(s, 2).await, "head").map(|h| (h.seqno, h.data)),
        Some((6, Bytes::from("x"))),
        "head after truncation and a stale write"
    );
    let other = factory().await;
    let c2 = crate::consensus::open(other.location());
    assert_eq!(c2.kind(), c.kind(), "one location, one consensus");
    assert_eq!(
        ok(c2.head(s, 0).await, "head").map(|h| h.data),
        Some(Bytes::from("x")),
        "a second client sees the same sequence"
    );
    assert_eq!(
        cas(Some(6), "y", "t6").await,
        CasOutcome::Committed,
        "the first client commits on top of what the second sees"
    );
    assert_eq!(
        ok(
            c2.compare_and_set(s, Some(6), Bytes::from("z"), "t7").await,
            "cas"
        ),
        CasOutcome::Mismatch,
        "the second client, one version behind, is refused"
    );
}

/// Appends, consolidated snapshots, cursors and listens.
pub async fn append_snapshot_listen(factory: &impl ClientFactory) {
    let client = factory().await;
    let shard = new_shard();
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    assert_eq!(w.upper(), &fr(0));
    let first = vec![upd(1, 0, 1), upd(2, 1, 1), upd(1, 1, 1)];
    ok(w.compare_and_append(&first, fr(0), fr(2)).await, "append")
        .unwrap_or_else(|m| panic!("first append: {m}"));
    let stale = ok(
        w.compare_and_append(&[upd(9, 0, 1)], fr(0), fr(3)).await,
        "stale append",
    );
    assert_eq!(
        stale,
        Err(crate::UpperMismatch { current: fr(2) }),
        "a stale expected upper is refused with the current upper"
    );
    let err_row: Update<Timestamp> = (Err("decode failure".to_owned()), ts(2), 1);
    let second = vec![upd(2, 2, -1), err_row.clone(), upd(3, 3, 1)];
    ok(w.append(&second, fr(4)).await, "append")
        .unwrap_or_else(|m| panic!("append at the current upper: {m}"));
    assert_eq!(w.shared_upper(), fr(4));

    let other = factory().await;
    let mut r = ok(
        other
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    let snap = ok(r.snapshot(&ts(1)).await, "snapshot at 1");
    assert_eq!(
        snap,
        sorted(vec![upd(1, 1, 2), upd(2, 1, 1)]),
        "snapshot at 1 is consolidated and advanced"
    );
    let snap = ok(r.snapshot(&ts(3)).await, "snapshot at 3");
    assert_eq!(
        snap,
        sorted(vec![
            upd(1, 3, 2),
            upd(3, 3, 1),
            (Err("decode failure".into()), ts(3), 1)
        ])
    );
    let mut cursor = ok(r.snapshot_cursor(&ts(3)).await, "cursor");
    let mut all = Vec::new();
    while let Some(chunk) = ok(cursor.next().await, "cursor next") {
        all.extend(chunk);
    }
    crate::part::consolidate_updates(&mut all);
    assert_eq!(all, snap, "the cursor's chunks consolidate to the snapshot");

    let mut listen = ok(r.listen(&ts(1)).await, "listen");
    let events = ok(listen.next().await, "listen next");
    let want_updates = sorted(vec![upd(2, 2, -1), err_row, upd(3, 3, 1)]);
    assert_eq!(
        events,
        vec![
            ListenEvent::Updates(want_updates),
            ListenEvent::Progress(fr(4))
        ],
        "listen from 1 sees times 2 and 3"
    );
    let waiter = tokio::spawn(async move { (listen.next().await, listen) });
    ok(
        w.compare_and_append(&[upd(4, 5, 1)], fr(4), fr(6)).await,
        "append",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let (events, _listen) = ok(waiter.await, "listen task");
    let events = ok(events, "listen next");
    assert_eq!(
        events,
        vec![
            ListenEvent::Updates(vec![upd(4, 5, 1)]),
            ListenEvent::Progress(fr(6))
        ]
    );
}

/// `ReadBeforeSince`, waiting for the upper, `wait_for_upper_past`, `fetch_recent_upper`.
pub async fn since_upper_rules(factory: &impl ClientFactory) {
    let client = factory().await;
    let shard = new_shard();
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    ok(
        w.compare_and_append(&[upd(1, 0, 1)], fr(0), fr(5)).await,
        "append",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let mut r = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    ok(r.downgrade_since(&fr(3)).await, "downgrade");
    assert_eq!(r.since(), &fr(3));
    ok(r.downgrade_since(&fr(1)).await, "downgrade backwards");
    assert_eq!(r.since(), &fr(3), "a since never regresses");
    assert!(
        matches!(
            r.snapshot(&ts(2)).await,
            Err(PersistError::ReadBeforeSince { .. })
        ),
        "read before since"
    );
    assert_eq!(ok(r.snapshot(&ts(3)).await, "snapshot at since").len(), 1);

    let mut pending = tokio::spawn(async move { (r.snapshot(&ts(7)).await, r) });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !pending.is_finished(),
        "a snapshot at or beyond the upper waits"
    );
    let other = factory().await;
    assert_eq!(
        ok(
            other.fetch_recent_upper::<Timestamp>(shard).await,
            "fetch_recent_upper"
        ),
        fr(5)
    );
    let mut w2 = ok(
        other.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer 2",
    );
    ok(
        w2.compare_and_append(&[upd(2, 6, 1)], fr(5), fr(8)).await,
        "append",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let (snap, _r) = ok((&mut pending).await, "snapshot task");
    assert_eq!(ok(snap, "snapshot after the upper passed").len(), 2);
    ok(w.wait_for_upper_past(&fr(7)).await, "wait_for_upper_past");
    assert_eq!(w.upper(), &fr(8));
    assert_eq!(
        ok(w.fetch_recent_upper().await, "fetch_recent_upper"),
        &fr(8)
    );
}

fn fake_clock() -> (Arc<AtomicU64>, crate::config::NowFn) {
    let now = Arc::new(AtomicU64::new(1_000));
    let clock = Arc::clone(&now);
    (now, Arc::new(move || clock.load(Ordering::SeqCst)))
}

/// Leased readers hold the since while their lease lasts, and lose it after.
pub async fn leases(factory: &impl ClientFactory) {
    let (now, clock) = fake_clock();
    let cfg = PersistConfig {
        reader_lease: Duration::from_secs(10),
        writer_lease: Duration::from_secs(100),
        now: clock,
        ..PersistConfig::for_tests()
    };
    let client = factory().await.with_config(cfg);
    let shard = new_shard();
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    let mut r1 = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader 1",
    );
    let mut r2 = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader 2",
    );
    ok(r1.downgrade_since(&fr(4)).await, "downgrade r1");
    ok(r2.downgrade_since(&fr(2)).await, "downgrade r2");
    assert_eq!(
        ok(client.inspect_shard(shard).await, "inspect").since,
        [2],
        "the since is the meet of the readers"
    );
    now.fetch_add(8_000, Ordering::SeqCst);
    ok(r1.heartbeat().await, "heartbeat r1");
    now.fetch_add(8_000, Ordering::SeqCst);
    ok(w.compare_and_append(&[], fr(0), fr(5)).await, "append").unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(
        ok(client.inspect_shard(shard).await, "inspect").since,
        [4],
        "r2's lease expired, r1's was renewed"
    );
    assert!(
        matches!(
            r2.snapshot(&ts(4)).await,
            Err(PersistError::LeaseExpired { .. })
        ),
        "an expired reader cannot read"
    );
    assert!(
        matches!(r2.heartbeat().await, Err(PersistError::LeaseExpired { .. })),
        "nor heartbeat"
    );
    ok(r1.expire().await, "expire r1");
    let state = ok(client.inspect_shard(shard).await, "inspect");
    assert_eq!(state.leased_readers.len(), 0, "expired readers are gone");
}

/// A critical since handle is fenced by its opaque.
pub async fn fencing(factory: &impl ClientFactory) {
    let client = factory().await;
    let shard = new_shard();
    let mut old = ok(
        client
            .open_critical_since::<Timestamp>(shard, "controller")
            .await,
        "open critical",
    );
    assert_eq!((old.opaque(), old.since()), (0, &fr(0)));
    let got = ok(
        old.compare_and_downgrade_since(0, (1, &fr(5))).await,
        "epoch 1",
    );
    assert_eq!(got, Ok(fr(5)));
    let other = factory().await;
    let mut new = ok(
        other
            .open_critical_since::<Timestamp>(shard, "controller")
            .await,
        "reopen critical",
    );
    assert_eq!(new.opaque(), 1, "the opaque is durable");
    assert_eq!(
        ok(
            new.compare_and_downgrade_since(1, (2, &fr(6))).await,
            "epoch 2"
        ),
        Ok(fr(6))
    );
    let fenced = ok(
        old.compare_and_downgrade_since(1, (1, &fr(9))).await,
        "old epoch",
    );
    assert_eq!(
        fenced,
        Err(crate::OpaqueMismatch { current: 2 }),
        "the older epoch is fenced"
    );
    assert_eq!(
        ok(
            new.compare_and_downgrade_since(2, (2, &fr(3))).await,
            "regress"
        ),
        Ok(fr(6)),
        "a since never regresses"
    );
    let state = ok(client.inspect_shard(shard).await, "inspect");
    assert_eq!(state.since, [6]);
}

async fn many_batches(
    client: &PersistClient,
    shard: ShardId,
    n: u64,
) -> crate::WriteHandle<Timestamp> {
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    for t in 0..n {
        let ups = vec![upd(t as i64 % 3, t, 1), upd(100 + t as i64, t, 1)];
        ok(w.compare_and_append(&ups, fr(t), fr(t + 1)).await, "append")
            .unwrap_or_else(|m| panic!("{m}"));
    }
    w
}

/// What a snapshot at `t` of a shard holding `ups` must return.
fn snapshot_of(ups: &[Update<Timestamp>], t: u64) -> Vec<Update<Timestamp>> {
    let mut want: Vec<_> = ups
        .iter()
        .filter(|u| u.1 <= ts(t))
        .map(|(d, _, r)| (d.clone(), ts(t), *r))
        .collect();
    crate::part::consolidate_updates(&mut want);
    want
}

fn parts_cfg() -> PersistConfig {
    PersistConfig {
        inline_threshold_bytes: 0,
        append_part_bytes: u64::MAX,
        ..PersistConfig::for_tests()
    }
}

/// A part of several row groups (and an error among its rows) reads back the same
/// whether it is fetched whole or as two concurrent halves, at an `as_of` or not.
pub async fn large_parts(factory: &impl ClientFactory) {
    let whole = factory().await.with_config(parts_cfg());
    let split = factory().await.with_config(PersistConfig {
        split_fetch_bytes: 0,
        ..parts_cfg()
    });
    let shard = new_shard();
    let mut w = ok(
        whole.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    let n = crate::part::ROW_GROUP_ROWS as i64 + 1000;
    let mut ups: Vec<_> = (0..n).map(|k| upd(k, k as u64 % 2, 1)).collect();
    ups.push((Err("a source error".into()), ts(1), 1));
    ok(w.compare_and_append(&ups, fr(0), fr(2)).await, "append").unwrap_or_else(|m| panic!("{m}"));
    for client in [&whole, &split] {
        let mut r = ok(
            client
                .open_leased_reader::<Timestamp>(shard, test_desc())
                .await,
            "open reader",
        );
        for t in [0, 1] {
            let snap = ok(r.snapshot(&ts(t)).await, "snapshot");
            assert!(
                snap == snapshot_of(&ups, t),
                "a large part's snapshot at {t} differs"
            );
        }
    }
}

/// Compaction leaves every snapshot at or beyond the since unchanged, and reduces parts.
pub async fn compaction(factory: &impl ClientFactory) {
    let client = factory().await.with_config(parts_cfg());
    let shard = new_shard();
    let _w = many_batches(&client, shard, 12).await;
    let mut r = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    ok(r.downgrade_since(&fr(6)).await, "downgrade");
    let before = [6u64, 9, 11];
    let mut snaps = Vec::new();
    for t in &before {
        snaps.push(ok(r.snapshot(&ts(*t)).await, "snapshot"));
    }
    let parts_before = ok(client.inspect_shard(shard).await, "inspect").part_count;
    assert_eq!(parts_before, 12, "one part per append");
    let steps = ok(client.compact(shard, 100).await, "compact");
    assert!(steps > 0, "there was work");
    assert_eq!(
        ok(client.compact(shard, 100).await, "compact again"),
        0,
        "compaction converges"
    );
    let parts_after = ok(client.inspect_shard(shard).await, "inspect").part_count;
    assert!(
        parts_after < parts_before / 2,
        "parts dropped from {parts_before} to {parts_after}"
    );
    for (t, want) in before.iter().zip(&snaps) {
        assert_eq!(
            &ok(r.snapshot(&ts(*t)).await, "snapshot"),
            want,
            "snapshot at {t} changed by compaction"
        );
    }
}

/// GC deletes every unreferenced part (garbage and orphans) and no referenced one.
pub async fn gc(factory: &impl ClientFactory) {
    let client = factory().await.with_config(parts_cfg());
    let shard = new_shard();
    let mut w = many_batches(&client, shard, 6).await;
    let mut r = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    let want = ok(r.snapshot(&ts(5)).await, "snapshot");
    ok(client.compact(shard, 100).await, "compact");
    let report = ok(
        client.gc(shard).await,
        "gc while a reader pins an old version",
    );
    assert_eq!(
        report.deleted_parts, 0,
        "parts a reader may still read are kept"
    );
    ok(r.downgrade_since(&fr(0)).await, "release old versions");
    let report = ok(client.gc(shard).await, "gc");
    assert!(
        report.deleted_parts > 0,
        "garbage parts are deleted once no reader needs them"
    );
    let orphan = ok(
        w.batch(&[upd(7, 6, 1)], fr(6), fr(7)).await,
        "unlinked batch",
    );
    assert_eq!(orphan.part_keys().len(), 1);
    ok(w.expire().await, "writer goes away");
    let report = ok(client.gc(shard).await, "gc");
    assert_eq!(
        report.deleted_orphans, 1,
        "the orphan of a gone writer is deleted"
    );
    let listed = ok(client.list_part_keys(shard).await, "list");
    let referenced = ok(client.referenced_part_keys(shard).await, "referenced");
    assert_eq!(
        listed, referenced,
        "no unreferenced part is left and no referenced part is deleted"
    );
    assert_eq!(ok(r.snapshot(&ts(5)).await, "snapshot after gc"), want);
    let again = ok(client.gc(shard).await, "gc again");
    assert_eq!(
        (again.deleted_parts, again.deleted_orphans),
        (0, 0),
        "gc is idempotent"
    );
}

/// `since = upper = []` finalizes into a tombstone; later operations get typed errors.
pub async fn finalization(factory: &impl ClientFactory) {
    let client = factory().await.with_config(parts_cfg());
    let shard = new_shard();
    let mut w = many_batches(&client, shard, 3).await;
    let mut since = ok(
        client.open_critical_since::<Timestamp>(shard, "c").await,
        "critical",
    );
    assert!(
        matches!(
            client.finalize_shard(shard).await,
            Err(PersistError::NotFinalizable { .. })
        ),
        "not yet finalizable"
    );
    ok(
        w.compare_and_append(&[], fr(3), Antichain::new()).await,
        "close",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(
        ok(
            since
                .compare_and_downgrade_since(0, (0, &Antichain::new()))
                .await,
            "since to []"
        ),
        Ok(Antichain::new())
    );
    ok(client.finalize_shard(shard).await, "finalize");
    ok(client.finalize_shard(shard).await, "finalize is idempotent");
    assert!(
        ok(client.list_part_keys(shard).await, "list").is_empty(),
        "parts are deleted"
    );
    assert!(ok(client.inspect_shard(shard).await, "inspect").tombstone);
    let tomb = |r: &Result<(), PersistError>| matches!(r, Err(PersistError::Tombstoned { .. }));
    assert!(
        tomb(
            &client
                .open_writer::<Timestamp>(shard, test_desc())
                .await
                .map(|_| ())
        ),
        "open writer"
    );
    assert!(
        tomb(
            &client
                .open_leased_reader::<Timestamp>(shard, test_desc())
                .await
                .map(|_| ())
        ),
        "open reader"
    );
    assert!(
        tomb(&w.compare_and_append(&[], fr(3), fr(4)).await.map(|_| ())),
        "append"
    );
    assert!(
        tomb(
            &since
                .compare_and_downgrade_since(0, (1, &fr(1)))
                .await
                .map(|_| ())
        ),
        "downgrade"
    );
}

/// Bad input is a typed error and leaves the shard (and others) working.
pub async fn bad_input(factory: &impl ClientFactory) {
    let client = factory().await;
    let shard = new_shard();
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    let r = w.compare_and_append(&[], fr(5), fr(3)).await;
    assert!(
        matches!(r, Err(PersistError::InvalidUppers { .. })),
        "expected upper beyond new upper: {r:?}"
    );
    let r = w.compare_and_append(&[upd(1, 7, 1)], fr(0), fr(5)).await;
    assert!(
        matches!(r, Err(PersistError::UpdateOutOfBounds { .. })),
        "update beyond the new upper: {r:?}"
    );
    ok(
        w.compare_and_append(&[upd(1, 0, 1)], fr(0), fr(5)).await,
        "append",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let r = w.compare_and_append(&[upd(1, 2, 1)], fr(5), fr(8)).await;
    assert!(
        matches!(r, Err(PersistError::UpdateOutOfBounds { .. })),
        "update before the lower: {r:?}"
    );
    let bad_row = (Ok(Row::pack(&[Datum::String("x".into())])), ts(6), 1);
    let r = w.compare_and_append(&[bad_row], fr(5), fr(8)).await;
    assert!(
        matches!(r, Err(PersistError::InvalidRow { .. })),
        "row not matching the desc: {r:?}"
    );
    assert_eq!(w.upper(), &fr(5), "nothing was written");
    ok(
        w.compare_and_append(&[upd(2, 6, 1)], fr(5), fr(8)).await,
        "append",
    )
    .unwrap_or_else(|m| panic!("{m}"));
}
