//! The shard state machine's commands: pure functions from a state to the next state.
//!
//! Each command is `fn(&State, args, now_ms) -> Result<(State, output), CmdError>` and
//! does no I/O, so it is tested here with tables and no runtime. `Machine` commits the
//! returned state by a CAS of the next seqno, and re-runs the command on conflict. A
//! command that changes nothing returns `Ok((None, output))` and costs no write.
//!
//! Every command that writes also prunes expired leases, so a crashed reader or writer
//! stops holding the since or its parts once its lease ends.

use strata_controller_api::RelationDesc;

use crate::state::{CriticalReader, GarbagePart, HollowBatch, LeasedReader, State, WriterState};
use crate::update::{frontier_le, join, meet};

/// Why a command refused to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CmdError {
    /// The shard is finalized.
    Tombstoned,
    /// The handle's registration is gone (its lease expired).
    LeaseExpired {
        /// `reader` or `writer`.
        kind: &'static str,
        /// The handle id.
        id: String,
    },
    /// The append's expected upper is not the shard's upper.
    UpperMismatch {
        /// The shard's upper.
        current: Option<u64>,
    },
    /// The critical reader's opaque is not the expected one.
    OpaqueMismatch {
        /// The stored opaque.
        current: u64,
    },
    /// `finalize` needs `since = upper = []`.
    NotFinalizable {
        /// The since.
        since: Option<u64>,
        /// The upper.
        upper: Option<u64>,
    },
    /// The arguments break a rule the handle should have checked.
    Invalid(String),
    /// A new version of the relation that cannot replace the current one.
    IncompatibleSchema(strata_controller_api::IncompatibleSchema),
}

/// A command's result: the next state (or `None` for no change) and an output.
pub(crate) type CmdResult<O> = Result<(Option<State>, O), CmdError>;

fn live(state: &State) -> Result<State, CmdError> {
    if state.tombstone {
        return Err(CmdError::Tombstoned);
    }
    Ok(state.clone())
}

/// Drops expired leases and recomputes the since.
pub(crate) fn prune_expired(state: &mut State, now_ms: u64) {
    state.leased_readers.retain(|r| r.lease_expiry_ms >= now_ms);
    state.writers.retain(|w| w.lease_expiry_ms >= now_ms);
    recompute_since(state);
}

/// The since follows the meet of every reader's since, and never regresses.
pub(crate) fn recompute_since(state: &mut State) {
    let leased = state.leased_readers.iter().map(|r| r.since);
    let critical = state.critical_readers.iter().map(|r| r.since);
    let mut readers = leased.chain(critical).peekable();
    if readers.peek().is_none() {
        return;
    }
    let held = readers.fold(None, meet);
    state.since = join(state.since, held);
}

/// Registers a writer, or renews its lease.
pub(crate) fn register_writer(
    state: &State,
    id: &str,
    lease_ms: u64,
    now_ms: u64,
) -> CmdResult<()> {
    let mut next = live(state)?;
    prune_expired(&mut next, now_ms);
    let expiry = now_ms.saturating_add(lease_ms);
    match next.writers.iter_mut().find(|w| w.id == id) {
        Some(w) => w.lease_expiry_ms = expiry,
        None => next.writers.push(WriterState {
            id: id.to_owned(),
            lease_expiry_ms: expiry,
            last_token: String::new(),
        }),
    }
    Ok((Some(next), ()))
}

/// Renews a writer's lease; fails if it already expired.
pub(crate) fn heartbeat_writer(
    state: &State,
    id: &str,
    lease_ms: u64,
    now_ms: u64,
) -> CmdResult<()> {
    let mut next = live(state)?;
    prune_expired(&mut next, now_ms);
    let w = next
        .writers
        .iter_mut()
        .find(|w| w.id == id)
        .ok_or_else(|| expired("writer", id))?;
    w.lease_expiry_ms = now_ms.saturating_add(lease_ms);
    Ok((Some(next), ()))
}

fn expired(kind: &'static str, id: &str) -> CmdError {
    CmdError::LeaseExpired {
        kind,
        id: id.to_owned(),
    }
}

/// Removes a writer.
pub(crate) fn expire_writer(state: &State, id: &str) -> CmdResult<()> {
    if state.tombstone || !state.writers.iter().any(|w| w.id == id) {
        return Ok((None, ()));
    }
    let mut next = state.clone();
    next.writers.retain(|w| w.id != id);
    Ok((Some(next), ()))
}

/// What a successful `compare_and_append` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// The batch is now part of the shard.
    Applied,
    /// A retry of an append that had already committed (same idempotency token).
    AlreadyApplied,
}

/// Appends `batch` if the shard's upper is `batch.lower`; the new upper is `batch.upper`.
pub(crate) fn compare_and_append(
    state: &State,
    writer: &str,
    token: &str,
    batch: &HollowBatch,
    lease_ms: u64,
    now_ms: u64,
) -> CmdResult<Appended> {
    let mut next = live(state)?;
    if !frontier_le(Some(batch.lower), batch.upper) {
        return Err(CmdError::Invalid(
            "expected upper is beyond the new upper".into(),
        ));
    }
    let w = next
        .writers
        .iter_mut()
        .find(|w| w.id == writer)
        .ok_or_else(|| expired("writer", writer))?;
    if !token.is_empty() && w.last_token == token {
        return Ok((None, Appended::AlreadyApplied));
    }
    if next.upper != Some(batch.lower) {
        return Err(CmdError::UpperMismatch {
            current: next.upper,
        });
    }
    w.last_token = token.to_owned();
    w.lease_expiry_ms = now_ms.saturating_add(lease_ms);
    next.upper = batch.upper;
    push_batch(&mut next.batches, batch.clone());
    prune_expired(&mut next, now_ms);
    Ok((Some(next), Appended::Applied))
}

/// Inline batches are merged on append while together they stay at or below this size.
///
/// Larger than the default inline threshold on purpose: every batch that enters the
/// spine costs about one compaction merge (two CAS) later, so 1 KiB rows merged four
/// times as far need a quarter of the merges; compaction then moves the merged batch to
/// a part, so the state's inline bytes stay bounded by this plus the newest batches.
pub(crate) const INLINE_MERGE_BYTES: u64 = 16 * 1024;

/// Appends a batch, merging it into the last one when either holds no updates, or when
/// both are inline and small together: a stream of single-row appends then keeps few
/// batches without a compaction (and its extra CAS) for each few appends.
fn push_batch(batches: &mut Vec<HollowBatch>, batch: HollowBatch) {
    match batches.last_mut() {
        Some(last) if batch.is_empty() => last.upper = batch.upper,
        Some(last) if last.is_empty() => {
            let lower = last.lower;
            *last = HollowBatch { lower, ..batch };
        }
        Some(last)
            if last.parts.is_empty()
                && batch.parts.is_empty()
                && last.bytes + batch.bytes <= INLINE_MERGE_BYTES =>
        {
            // Times in `last` before its since were forwarded; `batch`'s are all later.
            last.upper = batch.upper;
            last.len += batch.len;
            last.bytes += batch.bytes;
            last.inline.extend(batch.inline);
        }
        _ => batches.push(batch),
    }
}

/// Fails with [`CmdError::OpaqueMismatch`] unless critical reader `id` holds `expected`
/// (a missing reader holds 0). Run inside a write's CAS, it makes the write conditional
/// on the reader's opaque: an owner that took over by moving the opaque fences every
/// older writer in the same linearizable step.
pub(crate) fn require_opaque(state: &State, id: &str, expected: u64) -> Result<(), CmdError> {
    let current = state
        .critical_readers
        .iter()
        .find(|r| r.id == id)
        .map_or(0, |r| r.opaque);
    match current == expected {
        true => Ok(()),
        false => Err(CmdError::OpaqueMismatch { current }),
    }
}

/// Registers a leased reader at the shard's since, holding parts from this version on.
pub(crate) fn register_leased_reader(
    state: &State,
    id: &str,
    lease_ms: u64,
    now_ms: u64,
) -> CmdResult<Option<u64>> {
    let mut next = live(state)?;
    prune_expired(&mut next, now_ms);
    let since = next.since;
    let reader = LeasedReader {
        id: id.to_owned(),
        since,
        seqno: state.seqno,
        lease_expiry_ms: now_ms.saturating_add(lease_ms),
    };
    next.leased_readers.retain(|r| r.id != id);
    next.leased_readers.push(reader);
    Ok((Some(next), since))
}

/// Renews a reader's lease, moves its since forward to `new_since` (if given) and its
/// version hold forward to `seqno_hold` (if given). Returns the reader's since.
pub(crate) fn heartbeat_reader(
    state: &State,
    id: &str,
    new_since: Option<Option<u64>>,
    seqno_hold: Option<u64>,
    lease_ms: u64,
    now_ms: u64,
) -> CmdResult<Option<u64>> {
    let mut next = live(state)?;
    prune_expired(&mut next, now_ms);
    let r = next
        .leased_readers
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| expired("reader", id))?;
    r.lease_expiry_ms = now_ms.saturating_add(lease_ms);
    if let Some(since) = new_since {
        r.since = join(r.since, since);
    }
    if let Some(seqno) = seqno_hold {
        r.seqno = r.seqno.max(seqno);
    }
    let since = r.since;
    recompute_since(&mut next);
    Ok((Some(next), since))
}

/// Removes a leased reader, releasing its hold.
pub(crate) fn expire_reader(state: &State, id: &str) -> CmdResult<()> {
    if state.tombstone || !state.leased_readers.iter().any(|r| r.id == id) {
        return Ok((None, ()));
    }
    let mut next = state.clone();
    next.leased_readers.retain(|r| r.id != id);
    recompute_since(&mut next);
    Ok((Some(next), ()))
}

/// Names the shard for people; a no-op when it already has that name.
pub(crate) fn set_name(state: &State, name: &str) -> CmdResult<()> {
    let mut next = live(state)?;
    if next.name == name {
        return Ok((None, ()));
    }
    next.name = name.to_owned();
    Ok((Some(next), ()))
}

/// Replaces the shard's relation with `new`, a later version of it (see
/// [`strata_controller_api::check_evolution`]); the same version changes nothing. A
/// shard with no relation recorded takes `new` as is.
pub(crate) fn evolve_schema(state: &State, new: &RelationDesc) -> CmdResult<()> {
    let mut next = live(state)?;
    let new_json = serde_json::to_string(new)
        .map_err(|e| CmdError::Invalid(format!("unencodable relation: {e}")))?;
    if next.schema_json == new_json {
        return Ok((None, ()));
    }
    if !next.schema_json.is_empty() {
        let current: RelationDesc = serde_json::from_str(&next.schema_json).map_err(|e| {
            CmdError::Invalid(format!("the shard's recorded relation is unreadable: {e}"))
        })?;
        strata_controller_api::check_evolution(&current, new)
            .map_err(CmdError::IncompatibleSchema)?;
    }
    next.schema_json = new_json;
    Ok((Some(next), ()))
}

/// Registers a critical reader at the shard's since with opaque 0, unless it exists.
/// Returns its `(opaque, since)`.
pub(crate) fn register_critical_reader(state: &State, id: &str) -> CmdResult<(u64, Option<u64>)> {
    let mut next = live(state)?;
    if let Some(r) = next.critical_readers.iter().find(|r| r.id == id) {
        return Ok((None, (r.opaque, r.since)));
    }
    let since = next.since;
    next.critical_readers.push(CriticalReader {
        id: id.to_owned(),
        since,
        opaque: 0,
    });
    Ok((Some(next), (0, since)))
}

/// Moves a critical reader's since forward and sets its opaque, if its opaque is
/// `expected`. A since that would regress is left where it is. Returns the new since.
pub(crate) fn compare_and_downgrade_since(
    state: &State,
    id: &str,
    expected: u64,
    new_opaque: u64,
    new_since: Option<u64>,
) -> CmdResult<Option<u64>> {
    let mut next = live(state)?;
    let r = next
        .critical_readers
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(|| expired("critical reader", id))?;
    if r.opaque != expected {
        return Err(CmdError::OpaqueMismatch { current: r.opaque });
    }
    r.opaque = new_opaque;
    r.since = join(r.since, new_since);
    let since = r.since;
    recompute_since(&mut next);
    Ok((Some(next), since))
}

/// Replaces the contiguous run of batches equal to `inputs` with `output`, moving the
/// inputs' parts to garbage. Returns whether the run was still there.
pub(crate) fn apply_merge(
    state: &State,
    inputs: &[HollowBatch],
    output: &HollowBatch,
) -> CmdResult<bool> {
    let mut next = live(state)?;
    if next.batches.iter().any(|b| b == output) {
        // A retry of a merge that already committed.
        return Ok((None, true));
    }
    let n = inputs.len();
    let Some(start) = (0..next.batches.len().saturating_sub(n.saturating_sub(1)))
        .find(|i| n > 0 && next.batches[*i..].starts_with(inputs))
    else {
        return Ok((None, false));
    };
    let first_lower = inputs.first().map(|b| b.lower);
    let last_upper = inputs.last().map(|b| b.upper);
    if first_lower != Some(output.lower) || last_upper != Some(output.upper) {
        return Err(CmdError::Invalid(
            "merge output does not cover its inputs".into(),
        ));
    }
    let removed_at = state.seqno + 1;
    let kept: std::collections::BTreeSet<&str> =
        output.parts.iter().map(|p| p.key.as_str()).collect();
    for part in inputs.iter().flat_map(|b| &b.parts) {
        if !kept.contains(part.key.as_str()) {
            next.garbage.push(GarbagePart {
                key: part.key.clone(),
                removed_at,
            });
        }
    }
    next.batches.splice(start..start + n, [output.clone()]);
    Ok((Some(next), true))
}

/// Forgets garbage entries whose parts have been deleted.
pub(crate) fn remove_garbage(state: &State, deleted: &[String]) -> CmdResult<()> {
    let mut next = state.clone();
    let before = next.garbage.len();
    next.garbage.retain(|g| !deleted.contains(&g.key));
    if next.garbage.len() == before {
        return Ok((None, ()));
    }
    Ok((Some(next), ()))
}

/// Turns a shard with `since = upper = []` into a tombstone whose parts are garbage.
/// Finalizing a tombstone is a no-op.
pub(crate) fn finalize(state: &State) -> CmdResult<()> {
    if state.tombstone {
        return Ok((None, ()));
    }
    if state.since.is_some() || state.upper.is_some() {
        return Err(CmdError::NotFinalizable {
            since: state.since,
            upper: state.upper,
        });
    }
    let mut next = state.clone();
    let removed_at = state.seqno + 1;
    for part in next.batches.drain(..).flat_map(|b| b.parts) {
        next.garbage.push(GarbagePart {
            key: part.key,
            removed_at,
        });
    }
    next.tombstone = true;
    next.leased_readers.clear();
    next.critical_readers.clear();
    next.writers.clear();
    Ok((Some(next), ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PartRef;

    fn batch(lower: u64, upper: Option<u64>, parts: &[&str]) -> HollowBatch {
        let parts: Vec<PartRef> = parts
            .iter()
            .map(|k| PartRef {
                key: (*k).into(),
                len: 1,
                bytes: 10,
            })
            .collect();
        let len = parts.len() as u64;
        HollowBatch {
            lower,
            upper,
            since: 0,
            parts,
            inline: vec![],
            len,
            bytes: len * 10,
        }
    }

    fn with_writer() -> State {
        let s = State::initial("s", 0, String::new());
        register_writer(&s, "w", 100, 0).unwrap().0.unwrap()
    }

    /// Applies a command and checks its outcome: `Ok(upper)` or the error.
    fn check(
        state: &State,
        b: HollowBatch,
        token: &str,
        expected: Result<(Option<u64>, Appended), CmdError>,
    ) -> State {
        match compare_and_append(state, "w", token, &b, 100, 1) {
            Ok((next, out)) => {
                let next = next.unwrap_or_else(|| state.clone());
                assert_eq!(Ok((next.upper, out)), expected);
                next
            }
            Err(e) => {
                assert_eq!(Err(e), expected);
                state.clone()
            }
        }
    }

    #[test]
    fn append_table() {
        let s = with_writer();
        let s = check(
            &s,
            batch(0, Some(5), &["a"]),
            "t1",
            Ok((Some(5), Appended::Applied)),
        );
        let s = check(
            &s,
            batch(0, Some(9), &["b"]),
            "t2",
            Err(CmdError::UpperMismatch { current: Some(5) }),
        );
        let s = check(
            &s,
            batch(5, Some(9), &["b"]),
            "t1",
            Ok((Some(5), Appended::AlreadyApplied)),
        );
        let s = check(
            &s,
            batch(5, Some(3), &[]),
            "t3",
            Err(CmdError::Invalid(
                "expected upper is beyond the new upper".into(),
            )),
        );
        let s = check(
            &s,
            batch(5, Some(7), &[]),
            "t4",
            Ok((Some(7), Appended::Applied)),
        );
        let s = check(
            &s,
            batch(7, Some(8), &[]),
            "t5",
            Ok((Some(8), Appended::Applied)),
        );
        assert_eq!(
            s.batches.len(),
            1,
            "empty batches merge into the previous one"
        );
        let s = check(
            &s,
            batch(8, None, &["c"]),
            "t6",
            Ok((None, Appended::Applied)),
        );
        assert_eq!(s.batches.len(), 2);
        check(
            &s,
            batch(8, None, &[]),
            "t7",
            Err(CmdError::UpperMismatch { current: None }),
        );
    }

    #[test]
    fn naming_a_shard_writes_only_a_change() {
        let s = State::initial("s", 0, String::new());
        let (next, ()) = set_name(&s, "orders").unwrap();
        let named = next.expect("a new name is a new state");
        assert_eq!(named.name, "orders");
        assert_eq!(set_name(&named, "orders").unwrap().0, None, "the same name");
        let mut gone = named.clone();
        gone.tombstone = true;
        assert!(set_name(&gone, "x").is_err());
    }

    #[test]
    fn expired_writer_cannot_append() {
        let s = with_writer();
        let (s2, ()) = register_writer(&s, "other", 100, 500).unwrap();
        let s2 = s2.unwrap();
        assert!(s2.writers.iter().all(|w| w.id != "w"));
        assert_eq!(
            compare_and_append(&s2, "w", "t", &batch(0, Some(1), &[]), 100, 500).unwrap_err(),
            CmdError::LeaseExpired {
                kind: "writer",
                id: "w".into()
            }
        );
    }

    #[test]
    fn since_follows_the_readers() {
        let s = State::initial("s", 0, String::new());
        let s = register_leased_reader(&s, "r1", 100, 0).unwrap().0.unwrap();
        let s = register_critical_reader(&s, "c").unwrap().0.unwrap();
        let s = heartbeat_reader(&s, "r1", Some(Some(5)), None, 100, 0)
            .unwrap()
            .0
            .unwrap();
        assert_eq!(s.since, Some(0), "the critical reader still holds 0");
        assert_eq!(
            compare_and_downgrade_since(&s, "c", 1, 2, Some(9)).unwrap_err(),
            CmdError::OpaqueMismatch { current: 0 }
        );
        let (s, since) = compare_and_downgrade_since(&s, "c", 0, 2, Some(9)).unwrap();
        let s = s.unwrap();
        assert_eq!((since, s.since), (Some(9), Some(5)));
        let (s, since) = compare_and_downgrade_since(&s, "c", 2, 3, Some(1)).unwrap();
        assert_eq!(since, Some(9), "a since never regresses");
        let s = s.unwrap();
        let s = prune_then(&s, 1000);
        assert_eq!(
            s.since,
            Some(9),
            "the leased reader expired; the critical one holds 9"
        );
        assert!(heartbeat_reader(&s, "r1", None, None, 100, 1000).is_err());
    }

    #[test]
    fn require_opaque_compares_the_critical_readers_opaque() {
        let s = State::initial("s", 0, String::new());
        let s = register_critical_reader(&s, "c").unwrap().0.unwrap();
        let (s, _) = compare_and_downgrade_since(&s, "c", 0, 7, Some(0)).unwrap();
        let s = s.unwrap();
        // (reader, expected opaque, outcome)
        let cases: [(&str, u64, Result<(), CmdError>); 4] = [
            ("c", 7, Ok(())),
            ("c", 6, Err(CmdError::OpaqueMismatch { current: 7 })),
            ("c", 8, Err(CmdError::OpaqueMismatch { current: 7 })),
            ("missing", 1, Err(CmdError::OpaqueMismatch { current: 0 })),
        ];
        for (reader, expected, outcome) in cases {
            assert_eq!(
                require_opaque(&s, reader, expected),
                outcome,
                "{reader} {expected}"
            );
        }
    }

    fn prune_then(s: &State, now: u64) -> State {
        let mut s = s.clone();
        prune_expired(&mut s, now);
        s
    }

    #[test]
    fn merge_moves_parts_to_garbage() {
        let mut s = with_writer();
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            let b = batch(i as u64, Some(i as u64 + 1), &[key]);
            s = compare_and_append(&s, "w", key, &b, 100, 1)
                .unwrap()
                .0
                .unwrap();
            s.seqno += 1;
        }
        let inputs = s.batches[0..2].to_vec();
        let out = batch(0, Some(2), &["ab"]);
        let (next, ok) = apply_merge(&s, &inputs, &out).unwrap();
        let next = next.unwrap();
        assert!(ok);
        assert_eq!(next.batches.len(), 2);
        let garbage: Vec<_> = next.garbage.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(garbage, ["a", "b"]);
        assert_eq!(
            apply_merge(&next, &inputs, &out).unwrap(),
            (None, true),
            "a retried merge is idempotent"
        );
        let other = batch(0, Some(2), &["ab2"]);
        assert_eq!(
            apply_merge(&next, &inputs, &other).unwrap(),
            (None, false),
            "a stale merge is refused"
        );
    }

    #[test]
    fn finalize_needs_empty_frontiers() {
        let s = with_writer();
        assert!(matches!(finalize(&s), Err(CmdError::NotFinalizable { .. })));
        let s = compare_and_append(&s, "w", "t", &batch(0, None, &["p"]), 100, 1)
            .unwrap()
            .0
            .unwrap();
        let mut s2 = s.clone();
        s2.since = None;
        let done = finalize(&s2).unwrap().0.unwrap();
        assert!(done.tombstone && done.batches.is_empty());
        assert_eq!(done.garbage.len(), 1);
        assert_eq!(finalize(&done).unwrap().0, None);
        assert_eq!(
            register_writer(&done, "w", 1, 1).unwrap_err(),
            CmdError::Tombstoned
        );
    }
}
