//! The txns shard's conformance cases: atomic visibility, one CAS per commit, O(1)
//! upper advancement, idempotent concurrent apply, restart, compaction and typed
//! errors. Same contract as the rest of the suite: every factory call returns a client
//! of the same location, and every case uses fresh random shard ids.

use strata_controller_api::{
    Antichain, Datum, RelationDesc, Row, ScalarType, ShardId, StorageTimestamp, Timestamp,
};

use super::{ClientFactory, new_shard, ok, test_desc, test_row};
use crate::part::SourceData;
use crate::txns::{Txn, TxnsError, TxnsHandle};
use crate::{PersistClient, PersistConfig, PersistError, Update, UpperMismatch};

fn ts(t: u64) -> Timestamp {
    Timestamp::new(t)
}

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(ts(t))
}

fn ins(k: i64) -> (SourceData, i64) {
    (Ok(test_row(k)), 1)
}

/// The keys of a consolidated snapshot of [`test_desc`] rows, each with its diff.
fn keys(snapshot: &[Update<Timestamp>]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = snapshot
        .iter()
        .map(|(d, _, diff)| match d.as_ref().map(|r| r.unpack()) {
            Ok(datums) => match datums.first() {
                Some(Datum::Int64(k)) => (*k, *diff),
                _ => panic!("unexpected row {datums:?}"),
            },
            Err(e) => panic!("unexpected error row {e}"),
        })
        .collect();
    out.sort_unstable();
    out
}

/// A client of the factory's location with deterministic settings (no background
/// tasks), so consensus versions can be counted.
async fn client(factory: &impl ClientFactory) -> PersistClient {
    factory().await.with_config(PersistConfig::for_tests())
}

async fn open(client: &PersistClient, txns: ShardId) -> TxnsHandle<Timestamp> {
    ok(
        TxnsHandle::open(client.clone(), txns).await,
        "open txns handle",
    )
}

/// The shard's consensus version: how many CASes have changed it.
pub async fn seqno(client: &PersistClient, shard: ShardId) -> u64 {
    ok(client.inspect_shard(shard).await, "inspect").seqno
}

async fn commit(h: &mut TxnsHandle<Timestamp>, writes: &[(ShardId, i64)], t: u64, apply: bool) {
    let mut txn = Txn::new();
    for (shard, k) in writes {
        txn.write(*shard, [ins(*k)]);
    }
    let applied = ok(txn.commit_at(h, ts(t)).await, "commit")
        .unwrap_or_else(|m| panic!("commit at {t}: {m}"));
    if apply {
        ok(applied.apply(h).await, "apply");
    }
}

async fn register(h: &mut TxnsHandle<Timestamp>, t: u64, shards: &[ShardId]) {
    let shards = shards.iter().map(|s| (*s, test_desc()));
    ok(h.register(ts(t), shards).await, "register")
        .unwrap_or_else(|m| panic!("register at {t}: {m}"));
}

/// Runs every txns case.
pub async fn run_all(factory: &impl ClientFactory) {
    atomic_visibility(factory).await;
    one_cas_per_commit(factory).await;
    upper_advancement_is_o1(factory).await;
    concurrent_apply(factory).await;
    restart(factory).await;
    compaction(factory).await;
    bad_input(factory).await;
}

/// A reader at any time sees both tables of every two-table commit or neither, while
/// commits (some applied eagerly, some left to readers) run concurrently.
pub async fn atomic_visibility(factory: &impl ClientFactory) {
    let (txns, a, b) = (new_shard(), new_shard(), new_shard());
    let writer_client = client(factory).await;
    let mut w = open(&writer_client, txns).await;
    register(&mut w, 0, &[a, b]).await;
    let n: u64 = 24;
    let reader_client = client(factory).await;
    let reader = tokio::spawn(async move {
        let mut r = open(&reader_client, txns).await;
        let mut checks = 0u64;
        loop {
            let upper = ok(r.fetch_txns_upper().await, "txns upper");
            let latest = upper
                .elements()
                .first()
                .and_then(|t| t.step_back())
                .unwrap_or(ts(0));
            for t in [latest, ts(latest.as_millis() / 2)] {
                let sa = keys(&ok(r.read_at(a, t).await, "read a"));
                let sb = keys(&ok(r.read_at(b, t).await, "read b"));
                let want: Vec<(i64, i64)> = (1..=t.as_millis() as i64).map(|k| (k, 1)).collect();
                assert_eq!(
                    sa, want,
                    "table a at {t} holds exactly the commits at or before it"
                );
                assert_eq!(
                    sb, want,
                    "table b at {t} holds exactly the commits at or before it"
                );
                checks += 1;
            }
            if latest.as_millis() >= n {
                return checks;
            }
            tokio::task::yield_now().await;
        }
    });
    for t in 1..=n {
        commit(&mut w, &[(a, t as i64), (b, t as i64)], t, t % 3 == 0).await;
    }
    let checks = ok(reader.await, "reader task");
    assert!(checks >= 2, "the reader checked {checks} times");
}

/// Committing N tables is one CAS of the txns shard and no data shard write; the data
/// shards are written when the commit is applied.
pub async fn one_cas_per_commit(factory: &impl ClientFactory) {
    let client = client(factory).await;
    let txns = new_shard();
    let data: Vec<ShardId> = (0..8).map(|_| new_shard()).collect();
    let mut h = open(&client, txns).await;
    register(&mut h, 1, &data).await;
    let before_txns = seqno(&client, txns).await;
    let mut before_data = Vec::new();
    for d in &data {
        before_data.push(seqno(&client, *d).await);
    }
    let writes: Vec<(ShardId, i64)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (*d, i as i64))
        .collect();
    commit(&mut h, &writes, 3, false).await;
    assert_eq!(
        seqno(&client, txns).await,
        before_txns + 1,
        "an 8-table commit is one CAS of the txns shard"
    );
    for (d, before) in data.iter().zip(&before_data) {
        assert_eq!(
            seqno(&client, *d).await,
            *before,
            "a commit does not write data shards"
        );
    }
    ok(h.apply_le(ts(3)).await, "apply");
    for (d, before) in data.iter().zip(&before_data) {
        assert!(
            seqno(&client, *d).await > *before,
            "apply links the batch into {d}"
        );
    }
    let mut r = client
        .open_leased_reader::<Timestamp>(data[5], test_desc())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        keys(&ok(r.snapshot(&ts(3)).await, "direct snapshot")),
        vec![(5, 1)],
        "applied data is in the data shard"
    );
}

/// Advancing the logical upper of N idle registered shards is one CAS of the txns
/// shard, whatever N; no data shard is written until a read needs it.
pub async fn upper_advancement_is_o1(factory: &impl ClientFactory) {
    let client = client(factory).await;
    let txns = new_shard();
    let data: Vec<ShardId> = (0..40).map(|_| new_shard()).collect();
    let mut h = open(&client, txns).await;
    register(&mut h, 0, &data).await;
    let mut before = Vec::new();
    for d in &data {
        before.push(seqno(&client, *d).await);
    }
    let txns_before = seqno(&client, txns).await;
    for step in 1..=10u64 {
        assert_eq!(
            ok(h.advance_to(ts(step * 10)).await, "advance"),
            fr(step * 10)
        );
    }
    assert_eq!(
        seqno(&client, txns).await,
        txns_before + 10,
        "one CAS per advancement of 40 shards"
    );
    for (d, b) in data.iter().zip(&before) {
        assert_eq!(
            seqno(&client, *d).await,
            *b,
            "idle shard {d} was not written"
        );
        assert_eq!(
            ok(h.logical_upper(*d), "logical upper"),
            fr(100),
            "the logical upper is the txns upper"
        );
    }
    assert_eq!(
        ok(h.read_at(data[0], ts(99)).await, "read"),
        vec![],
        "an idle shard reads empty"
    );
    assert!(
        seqno(&client, data[0]).await > before[0],
        "the read advanced the shard it read"
    );
    assert_eq!(seqno(&client, data[1]).await, before[1], "and no other");
    assert_eq!(
        ok(
            client.fetch_recent_upper::<Timestamp>(data[0]).await,
            "upper"
        ),
        fr(100)
    );
    ok(h.prepare_read(data[2], ts(99)).await, "prepare_read");
    let mut r = client
        .open_leased_reader::<Timestamp>(data[2], test_desc())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok(r.snapshot(&ts(99)).await, "direct snapshot"),
        vec![],
        "prepare_read makes the data shard itself readable"
    );
}

/// Several handles applying the same commits at once link each exactly once.
pub async fn concurrent_apply(factory: &impl ClientFactory) {
    let (txns, a, b, c) = (new_shard(), new_shard(), new_shard(), new_shard());
    let client0 = client(factory).await;
    let mut h = open(&client0, txns).await;
    register(&mut h, 0, &[a, b, c]).await;
    for t in 1..=12u64 {
        let k = t as i64;
        let writes = match t % 3 {
            0 => vec![(a, k), (b, k)],
            1 => vec![(b, k), (c, k)],
            _ => vec![(a, k), (b, k), (c, k)],
        };
        commit(&mut h, &writes, t * 2, false).await;
    }
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let c = client(factory).await;
        tasks.push(tokio::spawn(async move {
            let mut h = open(&c, txns).await;
            for bound in [8 + i, 24] {
                ok(h.apply_le(ts(bound)).await, "apply_le");
            }
            ok(h.apply_le(ts(24)).await, "apply_le again");
        }));
    }
    for t in tasks {
        ok(t.await, "applier");
    }
    let want = |shard: ShardId| -> Vec<(i64, i64)> {
        (1..=12i64)
            .filter(|k| match k % 3 {
                0 => shard != c,
                1 => shard != a,
                _ => true,
            })
            .map(|k| (k, 1))
            .collect()
    };
    for shard in [a, b, c] {
        assert_eq!(
            keys(&ok(h.read_at(shard, ts(24)).await, "read")),
            want(shard),
            "every commit linked exactly once"
        );
        let mut r = client0
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            keys(&ok(r.snapshot(&ts(24)).await, "snapshot")),
            want(shard),
            "the data shard itself agrees"
        );
    }
}

/// A new handle (a restarted controller, on a new client) sees every acknowledged
/// commit and registration, applied or not.
pub async fn restart(factory: &impl ClientFactory) {
    let (txns, a, b) = (new_shard(), new_shard(), new_shard());
    {
        let c = client(factory).await;
        let mut h = open(&c, txns).await;
        register(&mut h, 0, &[a, b]).await;
        for t in 1..=6u64 {
            commit(&mut h, &[(a, t as i64), (b, -(t as i64))], t, t == 2).await;
        }
        ok(h.advance_to(ts(10)).await, "advance");
    }
    let c = client(factory).await;
    let mut h = open(&c, txns).await;
    assert_eq!(h.txns_upper(), fr(10), "the txns upper survives");
    let mut registered: Vec<ShardId> = h.registered().into_iter().map(|(s, _)| s).collect();
    registered.sort();
    let mut want_reg = vec![a, b];
    want_reg.sort();
    assert_eq!(registered, want_reg, "registrations survive");
    assert_eq!(
        keys(&ok(h.read_at(a, ts(9)).await, "read a")),
        (1..=6).map(|k| (k, 1)).collect::<Vec<_>>()
    );
    assert_eq!(
        keys(&ok(h.read_at(b, ts(4)).await, "read b")),
        (-4..=-1).map(|k| (k, 1)).collect::<Vec<_>>()
    );
    commit(&mut h, &[(b, 100)], 10, true).await;
    assert_eq!(h.txns_upper(), fr(11));
}

/// Applied rows are retracted and the txns shard's since follows, so the txns shard
/// stays small however many commits it has seen.
pub async fn compaction(factory: &impl ClientFactory) {
    let (txns, a, b) = (new_shard(), new_shard(), new_shard());
    let c = client(factory).await;
    let mut h = open(&c, txns).await;
    register(&mut h, 0, &[a, b]).await;
    for t in 1..=30u64 {
        commit(&mut h, &[(a, t as i64), (b, t as i64)], t, true).await;
        if t % 10 == 0 {
            ok(h.compact_to(ts(t)).await, "compact_to");
        }
        assert!(
            h.live_rows() <= 2 + 2 * 2,
            "live rows stay bounded, got {} after {t} commits",
            h.live_rows()
        );
    }
    ok(h.tidy_now().await, "tidy");
    ok(h.compact_to(ts(31)).await, "compact_to");
    assert_eq!(h.live_rows(), 2, "only the registrations are left");
    let state = ok(c.inspect_shard(txns).await, "inspect");
    assert_eq!(state.since, [31], "the txns since follows");
    assert!(
        state.batches.len() < 8,
        "the txns shard compacts: {state:?}"
    );
    let mut fresh = open(&client(factory).await, txns).await;
    assert_eq!(fresh.live_rows(), 2, "a fresh handle reads the small state");
    let want: Vec<(i64, i64)> = (1..=30).map(|k| (k, 1)).collect();
    assert_eq!(
        keys(&ok(fresh.read_at(a, ts(31)).await, "read")),
        want,
        "compaction lost nothing"
    );
}

fn other_desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("s", ScalarType::String.nullable(false))
        .finish()
}

/// Every bad input is a typed error, and the handle keeps working afterwards.
pub async fn bad_input(factory: &impl ClientFactory) {
    let (txns, a, stranger) = (new_shard(), new_shard(), new_shard());
    let c = client(factory).await;
    let mut h = open(&c, txns).await;
    register(&mut h, 2, &[a]).await;
    commit(&mut h, &[(a, 1)], 3, false).await;

    let mut txn = Txn::new();
    txn.write(stranger, [ins(1)]);
    let r = txn.commit_at(&mut h, ts(5)).await;
    assert!(
        matches!(r, Err(TxnsError::NotRegistered { op: "write", .. })),
        "write to an unregistered shard: {r:?}"
    );

    let mut txn = Txn::new();
    txn.write(a, [ins(2)]);
    let r = ok(txn.commit_at(&mut h, ts(3)).await, "stale commit");
    assert_eq!(
        r,
        Err(UpperMismatch { current: fr(4) }),
        "a commit not beyond the txns upper gets the current upper"
    );

    let r = h.forget(ts(5), [stranger]).await;
    assert!(
        matches!(r, Err(TxnsError::NotRegistered { op: "forget", .. })),
        "forget of an unknown shard: {r:?}"
    );

    let r = h.register(ts(5), [(a, other_desc())]).await;
    assert!(
        matches!(r, Err(TxnsError::SchemaMismatch { .. })),
        "re-register with another schema: {r:?}"
    );
    let mut direct = ok(
        c.open_writer::<Timestamp>(stranger, other_desc()).await,
        "open writer",
    );
    let r = h.register(ts(5), [(stranger, test_desc())]).await;
    assert!(
        matches!(r, Err(TxnsError::SchemaMismatch { .. })),
        "register a shard created with another schema: {r:?}"
    );
    let row = Row::pack(&[Datum::String("x".into())]);
    ok(
        direct
            .compare_and_append(&[(Ok(row), ts(0), 1)], fr(0), fr(9))
            .await,
        "direct write",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    let r = h.register(ts(5), [(stranger, other_desc())]).await;
    assert!(
        matches!(r, Err(TxnsError::DataUpperBeyondRegister { .. })),
        "register before the data upper: {r:?}"
    );

    let mut txn = Txn::new();
    txn.write(a, [(Ok(Row::pack(&[Datum::String("x".into())])), 1)]);
    let r = txn.commit_at(&mut h, ts(5)).await;
    assert!(
        matches!(r, Err(TxnsError::Persist(PersistError::InvalidRow { .. }))),
        "row of the wrong schema: {r:?}"
    );

    let r = h.read_at_no_wait(a, ts(50)).await;
    assert!(
        matches!(r, Err(TxnsError::NotYetReadable { .. })),
        "read beyond the txns upper without waiting: {r:?}"
    );
    let r = h.read_at(stranger, ts(1)).await;
    assert!(
        matches!(r, Err(TxnsError::NotRegistered { op: "read", .. })),
        "read of an unregistered shard: {r:?}"
    );
    let r = TxnsHandle::<Timestamp>::open(c.clone(), a).await;
    assert!(
        matches!(r, Err(TxnsError::SchemaMismatch { .. })),
        "a data shard opened as a txns shard: {:?}",
        r.err()
    );
    let r = Txn::<Timestamp>::new()
        .commit_at(&mut h, Timestamp::maximum())
        .await;
    assert!(
        matches!(r, Err(TxnsError::InvalidUsage(_))),
        "commit at the maximum time: {r:?}"
    );

    assert_eq!(h.txns_upper(), fr(4), "no bad input moved the txns upper");
    commit(&mut h, &[(a, 7)], 6, true).await;
    ok(h.forget(ts(8), [a]).await, "forget").unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(
        ok(c.fetch_recent_upper::<Timestamp>(a).await, "upper"),
        fr(9),
        "a forgotten shard's upper is forget_ts + 1"
    );
    let mut txn = Txn::new();
    txn.write(a, [ins(9)]);
    let r = txn.commit_at(&mut h, ts(10)).await;
    assert!(
        matches!(r, Err(TxnsError::NotRegistered { op: "write", .. })),
        "write to a forgotten shard: {r:?}"
    );
    let mut w = ok(
        c.open_writer::<Timestamp>(a, test_desc()).await,
        "open writer",
    );
    ok(
        w.compare_and_append(&[(Ok(test_row(9)), ts(9), 1)], fr(9), fr(10))
            .await,
        "direct write after forget",
    )
    .unwrap_or_else(|m| panic!("{m}"));
    register(&mut h, 12, &[a]).await;
    commit(&mut h, &[(a, 20)], 13, false).await;
    let want = vec![(1, 1), (7, 1), (9, 1), (20, 1)];
    assert_eq!(
        keys(&ok(h.read_at(a, ts(13)).await, "read")),
        want,
        "a shard registered again keeps its history"
    );
}
