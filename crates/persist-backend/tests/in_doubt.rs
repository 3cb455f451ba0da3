//! A committed write is never reported as a conflict.
//!
//! Each test stalls one writer at the exact moment that makes the race (a
//! [`FaultyStore`] pauses one put after it landed), lets other writers commit and GC run
//! meanwhile, and then checks the stalled writer's answer: committed, or in doubt,
//! but never a mismatch that would make its caller write again or delete what it wrote.

#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path;
use strata_controller_api::{
    Antichain, Certainty, Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp,
};
use strata_persist_backend::consensus::{self, CasOutcome, Consensus, ConsensusKind, SeqNo};
use strata_persist_backend::testing::{AfterPut, Faults, FaultyStore};
use strata_persist_backend::txns::{Txn, TxnsHandle};
use strata_persist_backend::{
    ExternalError, Location, PersistClient, PersistConfig, PersistError, conformance,
};

/// Commits on top of a stalled write: enough that GC truncates the stalled version.
const ON_TOP: u64 = 70;

fn memory(name: &str) -> (Arc<dyn ObjectStore>, Arc<FaultyStore>, String) {
    let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let inner: Arc<dyn ObjectStore> = strata_persist_backend::location::memory_store(&name);
    let hooked = Arc::new(FaultyStore::new(Arc::clone(&inner), Faults::new(0, 0)));
    (inner, hooked, format!("mem://{name}"))
}

fn location(store: Arc<dyn ObjectStore>, url: &str, kind: &ConsensusKind) -> Location {
    Location::from_store(store, "", url).with_consensus(kind.clone())
}

fn consensus(store: Arc<dyn ObjectStore>, url: &str, kind: &ConsensusKind) -> Arc<dyn Consensus> {
    consensus::open(&location(store, url, kind))
}

/// The consensus implementations a memory store can run.
const KINDS: [ConsensusKind; 2] = [ConsensusKind::Log, ConsensusKind::Register];

fn state_key(
    kind: &ConsensusKind,
    shard: ShardId,
    seqno: SeqNo,
) -> impl Fn(&Path) -> bool + Send + Sync + 'static {
    let suffix = match kind {
        ConsensusKind::Log => format!("shards/{shard}/state/{seqno:020}"),
        _ => format!("shards/{shard}/head"),
    };
    move |p: &Path| p.as_ref().ends_with(&suffix)
}

fn is_indeterminate(e: &PersistError) -> bool {
    matches!(
        e,
        PersistError::External(ExternalError::Indeterminate { .. })
    )
}

/// Another writer commits `n` versions after `from` and truncates what GC would.
async fn commit_on_top(c: Arc<dyn Consensus>, shard: ShardId, from: SeqNo, n: u64, truncate: bool) {
    for seqno in from..from + n {
        let out = c
            .compare_and_set(
                shard,
                Some(seqno),
                Bytes::from("theirs"),
                &format!("o{seqno}"),
            )
            .await
            .expect("another writer commits");
        assert_eq!(out, CasOutcome::Committed);
    }
    if truncate {
        let head = from + n;
        let below = consensus::truncation_point(head);
        assert!(
            below > from,
            "the stalled version is below the truncation point"
        );
        c.truncate(shard, below).await.expect("truncate");
    }
}

async fn seed(c: &Arc<dyn Consensus>, shard: ShardId, versions: u64) {
    for e in 0..versions {
        let expected = (e > 0).then_some(e);
        let out = c
            .compare_and_set(shard, expected, Bytes::from("seed"), &format!("s{e}"))
            .await
            .expect("seed");
        assert_eq!(out, CasOutcome::Committed);
    }
}

/// The write lands, its answer is replaced by a 500, and the retried create finds a
/// precondition failure (or, once truncated, no object): the outcome is Committed or
/// Indeterminate, never Mismatch, with nobody, one writer or GC acting in between.
#[tokio::test]
async fn a_lost_acknowledgement_is_never_a_mismatch() {
    // (commits on top while the answer is lost, truncate, what a correct answer is)
    let cases: &[(u64, bool, &[&str])] = &[
        (0, false, &["committed"]),
        // A log reads its version back; a register sees only the head, so past it
        // the consensus cannot tell (the machine settles it from the state's tokens).
        (1, false, &["committed", "indeterminate"]),
        (ON_TOP, true, &["committed", "indeterminate"]),
    ];
    for ((on_top, truncate, allowed), kind) in
        cases.iter().flat_map(|c| KINDS.iter().map(move |k| (c, k)))
    {
        let (inner, hooked, url) = memory("lost-ack");
        let shard = conformance::new_shard();
        let c = consensus(Arc::clone(&hooked) as Arc<dyn ObjectStore>, &url, kind);
        seed(&c, shard, 5).await;
        let other = consensus(Arc::clone(&inner), &url, kind);
        let (n, t) = (*on_top, *truncate);
        hooked.arm(
            state_key(kind, shard, 6),
            Box::new(move || {
                Box::pin(async move {
                    commit_on_top(other, shard, 6, n, t).await;
                    AfterPut::Fail
                })
            }),
        );
        let res = c
            .compare_and_set(shard, Some(5), Bytes::from("ours"), "ours")
            .await;
        assert!(!hooked.is_armed(), "the hook ran");
        let outcome = match &res {
            Ok(CasOutcome::Committed) => "committed",
            Ok(CasOutcome::Mismatch) => "mismatch",
            Err(e) if is_indeterminate(e) => "indeterminate",
            Err(_) => "other error",
        };
        eprintln!("{kind:?}: lost ack, {on_top} on top, truncate {truncate}: {outcome}");
        assert!(
            allowed.contains(&outcome),
            "{kind:?}: {on_top} commits on top, truncate {truncate}: {res:?}"
        );
    }
}

/// A writer pauses between its create and its ghost check while 70 versions are
/// committed on top and GC truncates below them: its version was committed, so the
/// answer must not be Mismatch.
#[tokio::test]
async fn a_pause_before_the_ghost_check_is_never_a_mismatch() {
    let kind = ConsensusKind::Log;
    let (inner, hooked, url) = memory("pause-check");
    let shard = conformance::new_shard();
    let c = consensus(Arc::clone(&hooked) as Arc<dyn ObjectStore>, &url, &kind);
    seed(&c, shard, 5).await;
    let other = consensus(Arc::clone(&inner), &url, &kind);
    hooked.arm(
        state_key(&kind, shard, 6),
        Box::new(move || {
            Box::pin(async move {
                commit_on_top(other, shard, 6, ON_TOP, true).await;
                AfterPut::Answer
            })
        }),
    );
    let res = c
        .compare_and_set(shard, Some(5), Bytes::from("ours"), "ours")
        .await;
    assert!(!hooked.is_armed(), "the hook ran");
    match res {
        Ok(CasOutcome::Committed) => {}
        Err(e) if is_indeterminate(&e) => {}
        other => panic!("a committed version reported as {other:?}"),
    }
}

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("x", ScalarType::Int64.nullable(false))
        .finish()
}

fn row(x: i64) -> Row {
    Row::pack(&[Datum::Int64(x)])
}

fn ts(t: u64) -> Timestamp {
    Timestamp::new(t)
}

/// A clock ten minutes ahead: its appends prune every writer whose lease it outlived.
fn later_clock() -> PersistConfig {
    let now = strata_persist_backend::config::system_now();
    PersistConfig {
        now: Arc::new(move || now() + 600_000),
        ..PersistConfig::for_tests()
    }
}

/// An append pauses after its CAS landed; meanwhile another writer, whose clock has
/// expired our lease, appends 70 times and GC truncates. The re-run of our append then
/// meets `LeaseExpired` on a fresh state: it must still settle its earlier commit
/// (or say it cannot), never re-register and report an upper mismatch for a write that
/// landed.
#[tokio::test]
async fn an_in_doubt_append_survives_an_expired_lease() {
    for kind in &KINDS {
        append_survives_an_expired_lease(kind).await;
    }
}

async fn append_survives_an_expired_lease(kind: &ConsensusKind) {
    let (inner, hooked, url) = memory("lease-doubt");
    let shard = conformance::new_shard();
    let ours = PersistClient::from_location(
        location(Arc::clone(&hooked) as Arc<dyn ObjectStore>, &url, kind),
        PersistConfig::for_tests(),
    );
    let theirs =
        PersistClient::from_location(location(Arc::clone(&inner), &url, kind), later_clock());
    let truncates = *kind == ConsensusKind::Log;
    let mut w = ours.open_writer::<Timestamp>(shard, desc()).await.unwrap();
    w.compare_and_append(
        &[(Ok(row(0)), ts(0), 1)],
        Antichain::from_elem(ts(0)),
        Antichain::from_elem(ts(1)),
    )
    .await
    .unwrap()
    .unwrap();
    let next_seqno = ours.inspect_shard(shard).await.unwrap().seqno + 1;
    hooked.arm(
        state_key(kind, shard, next_seqno),
        Box::new(move || {
            Box::pin(async move {
                let mut other = theirs
                    .open_writer::<Timestamp>(shard, desc())
                    .await
                    .unwrap();
                other.fetch_recent_upper().await.unwrap();
                for t in 2..2 + ON_TOP {
                    let res = other
                        .compare_and_append(
                            &[(Ok(row(t as i64 * 100)), ts(t), 1)],
                            Antichain::from_elem(ts(t)),
                            Antichain::from_elem(ts(t + 1)),
                        )
                        .await
                        .unwrap();
                    res.expect("the other writer appends after ours");
                }
                let report = theirs.gc(shard).await.unwrap();
                assert_eq!(report.truncated_versions > 0, truncates, "GC: {report:?}");
                AfterPut::Fail
            })
        }),
    );
    let res = w
        .compare_and_append(
            &[(Ok(row(1)), ts(1), 1)],
            Antichain::from_elem(ts(1)),
            Antichain::from_elem(ts(2)),
        )
        .await;
    assert!(!hooked.is_armed(), "the hook ran");
    match &res {
        Ok(Ok(())) => {}
        Err(e) if e.certainty() == Certainty::Indeterminate => {}
        other => panic!("{kind:?}: an append that landed reported as {other:?}"),
    }
    // It landed exactly once, whatever the answer was.
    let mut reader = ours
        .open_leased_reader::<Timestamp>(shard, desc())
        .await
        .unwrap();
    let snap = reader.snapshot(&ts(ON_TOP + 1)).await.unwrap();
    let ones = snap
        .iter()
        .filter(|(d, _, _)| d.as_ref().ok() == Some(&row(1)))
        .count();
    assert_eq!(ones, 1, "our row once: {snap:?}");
}

/// A txns commit pauses after its CAS landed while 70 later commits and GC run on the
/// txns shard. Whatever it answers, every part its committed row references stays
/// readable: the table reads back the row.
#[tokio::test]
async fn an_in_doubt_txns_commit_keeps_its_parts() {
    for kind in &KINDS {
        txns_commit_keeps_its_parts(kind).await;
    }
}

async fn txns_commit_keeps_its_parts(kind: &ConsensusKind) {
    let truncates = *kind == ConsensusKind::Log;
    let (inner, hooked, url) = memory("txns-doubt");
    let cfg = PersistConfig {
        inline_threshold_bytes: 0,
        ..PersistConfig::for_tests()
    };
    let ours = PersistClient::from_location(
        location(Arc::clone(&hooked) as Arc<dyn ObjectStore>, &url, kind),
        cfg.clone(),
    );
    // The other committer's clock is ahead: its commits prune our txns writer's lease,
    // so our re-run meets `LeaseExpired`, as in the append test above.
    let later = PersistConfig {
        inline_threshold_bytes: 0,
        ..later_clock()
    };
    let theirs = PersistClient::from_location(location(Arc::clone(&inner), &url, kind), later);
    let (txns_id, data) = (conformance::new_shard(), conformance::new_shard());
    let mut txns = TxnsHandle::<Timestamp>::open(ours.clone(), txns_id)
        .await
        .unwrap();
    txns.register(ts(1), [(data, desc())])
        .await
        .unwrap()
        .unwrap();
    let next_seqno = ours.inspect_shard(txns_id).await.unwrap().seqno + 1;
    hooked.arm(
        state_key(kind, txns_id, next_seqno),
        Box::new(move || {
            Box::pin(async move {
                let mut other = TxnsHandle::<Timestamp>::open(theirs.clone(), txns_id)
                    .await
                    .unwrap();
                for t in 10..10 + ON_TOP {
                    let _applied = Txn::<Timestamp>::new()
                        .commit_at(&mut other, ts(t))
                        .await
                        .unwrap()
                        .expect("a later commit");
                }
                let report = theirs.gc(txns_id).await.unwrap();
                assert_eq!(report.truncated_versions > 0, truncates, "GC: {report:?}");
                AfterPut::Fail
            })
        }),
    );
    let mut txn = Txn::<Timestamp>::new();
    txn.write(data, [(Ok(row(42)), 1)]);
    let res = txn.commit_at(&mut txns, ts(5)).await;
    assert!(!hooked.is_armed(), "the hook ran");
    match &res {
        Ok(Ok(_)) => {}
        Err(e) if e.certainty() == Certainty::Indeterminate => {}
        other => panic!("{kind:?}: a commit that landed reported as {other:?}"),
    }
    let mut reader = TxnsHandle::<Timestamp>::open(ours.clone(), txns_id)
        .await
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_at(data, ts(5)))
        .await
        .expect("the read finishes")
        .expect("every referenced part is readable");
    assert_eq!(read, vec![(Ok(row(42)), ts(5), 1)]);
}
