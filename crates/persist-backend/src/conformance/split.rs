//! Large appends written as several parts (see `PersistConfig::append_part_bytes`).

use strata_controller_api::{Datum, Row, Timestamp};

use super::{ClientFactory, fr, new_shard, ok, snapshot_of, test_desc, ts, upd};
use crate::part::MAX_PARTS_PER_APPEND;
use crate::{PersistConfig, PersistError};

/// An append larger than the part size becomes several parts that read back as the
/// consolidated input, even when the same data cancels across parts; an append with a
/// bad row in its last part fails with `InvalidRow`, moves no upper and leaves no part;
/// and no append makes more than `MAX_PARTS_PER_APPEND` parts.
pub async fn split_appends(factory: &impl ClientFactory) {
    let client = factory().await.with_config(PersistConfig {
        append_part_bytes: 16 << 10,
        ..PersistConfig::for_tests()
    });
    let shard = new_shard();
    let mut w = ok(
        client.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    let n = 3000;
    // Keys 0..n once, then keys 0..n/2 retracted at the end (in other parts), plus an
    // error row and a duplicate of the first update in the last part.
    let mut ups: Vec<_> = (0..n).map(|k| upd(k, k as u64 % 3, 1)).collect();
    ups.extend((0..n / 2).map(|k| upd(k, k as u64 % 3, -1)));
    ups.push((Err("a source error".into()), ts(2), 1));
    ups.push(upd(n - 1, (n - 1) as u64 % 3, 1));
    ok(w.compare_and_append(&ups, fr(0), fr(3)).await, "append").unwrap_or_else(|m| panic!("{m}"));
    let parts = ok(client.referenced_part_keys(shard).await, "referenced").len();
    assert!(parts > 2, "a large append is split into parts, got {parts}");
    let mut r = ok(
        client
            .open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    for t in [0u64, 2] {
        let snap = ok(r.snapshot(&ts(t)).await, "snapshot");
        assert!(
            snap == snapshot_of(&ups, t),
            "a split append's snapshot at {t} differs"
        );
    }

    let before = ok(client.list_part_keys(shard).await, "list");
    let mut bad: Vec<_> = (0..n).map(|k| upd(k, 3, 1)).collect();
    let wrong = Row::pack(&[Datum::Bool(true)]);
    bad.push((Ok(wrong), ts(3), 1));
    let res = w.compare_and_append(&bad, fr(3), fr(4)).await;
    assert!(
        matches!(res, Err(PersistError::InvalidRow { .. })),
        "a bad row in the last part is InvalidRow, got {res:?}"
    );
    assert_eq!(
        ok(w.fetch_recent_upper().await, "upper").clone(),
        fr(3),
        "a failed split append moves no upper"
    );
    let after = ok(client.list_part_keys(shard).await, "list");
    assert_eq!(before, after, "a failed split append leaves no part behind");

    // However small the part size, one append makes at most MAX_PARTS_PER_APPEND parts.
    let tiny = factory().await.with_config(PersistConfig {
        append_part_bytes: 1,
        ..PersistConfig::for_tests()
    });
    let shard = new_shard();
    let mut w = ok(
        tiny.open_writer::<Timestamp>(shard, test_desc()).await,
        "open writer",
    );
    let ups: Vec<_> = (0..n).map(|k| upd(k, 0, 1)).collect();
    ok(w.compare_and_append(&ups, fr(0), fr(1)).await, "append").unwrap_or_else(|m| panic!("{m}"));
    let parts = ok(tiny.referenced_part_keys(shard).await, "referenced").len();
    assert_eq!(
        parts, MAX_PARTS_PER_APPEND,
        "one append makes at most MAX_PARTS_PER_APPEND parts"
    );
    let mut r = ok(
        tiny.open_leased_reader::<Timestamp>(shard, test_desc())
            .await,
        "open reader",
    );
    let snap = ok(r.snapshot(&ts(0)).await, "snapshot");
    assert!(
        snap == snapshot_of(&ups, 0),
        "a capped split append reads back"
    );
}
