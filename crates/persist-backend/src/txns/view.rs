//! [`TxnsView`]: what the live rows of a txns shard say, and the pure rules over it.
//!
//! A view is exact at its `upper`: it holds every row live at times before it. It is
//! rebuilt from the rows after every refresh or commit, so it never drifts from the
//! shard. Everything here is plain data, tested without a runtime.

use std::collections::BTreeMap;

use strata_controller_api::{Row, ShardId};

use super::rows::TxnsRow;
use crate::state::HollowBatch;

/// The txns state of one data shard.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataEntry {
    /// Commits to the shard are allowed at times at or after this.
    pub(crate) register_ts: u64,
    /// The relation description, as JSON.
    pub(crate) schema: String,
    /// The shard leaves txns at this time, once applied.
    pub(crate) forget_ts: Option<u64>,
    /// Committed batches by commit time, with the row that records each.
    pub(crate) batches: BTreeMap<u64, (Row, HollowBatch)>,
    /// The registration row.
    pub(crate) register_row: Row,
    /// The forget row, if any.
    pub(crate) forget_row: Option<Row>,
}

/// What applying one data shard up to a bound takes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApplyPlan {
    /// Batches to link, in time order, with their commit times.
    pub(crate) links: Vec<(u64, HollowBatch)>,
    /// The physical upper the shard must reach afterwards, if any.
    pub(crate) advance_to: Option<u64>,
    /// The rows that may be retracted once the plan has run.
    pub(crate) tidy: Vec<Row>,
}

impl DataEntry {
    /// Whether commits may name this shard.
    pub(crate) fn writable(&self) -> bool {
        self.forget_ts.is_none()
    }

    /// The physical upper a read at `as_of` needs: past `as_of`, but never past a
    /// forget (the shard is no longer ours after it) and never before the registration
    /// (no txns commit is before it, so those times are final).
    pub(crate) fn read_target(&self, as_of: u64) -> u64 {
        let mut target = as_of.saturating_add(1);
        if let Some(f) = self.forget_ts {
            target = target.min(f.saturating_add(1));
        }
        target.max(self.register_ts)
    }

    /// The plan that applies every commit at or before `bound`. With `for_read`, the
    /// shard's upper also moves to [`DataEntry::read_target`]; a forget at or before
    /// `bound` always moves it to `forget_ts + 1`.
    pub(crate) fn plan(&self, bound: u64, for_read: bool) -> ApplyPlan {
        let mut links = Vec::new();
        let mut tidy = Vec::new();
        for (ts, (row, batch)) in self.batches.range(..=bound) {
            links.push((*ts, batch.clone()));
            tidy.push(row.clone());
        }
        let forgotten = self.forget_ts.filter(|f| *f <= bound);
        let advance_to = match forgotten {
            Some(f) => {
                tidy.push(self.register_row.clone());
                tidy.extend(self.forget_row.clone());
                Some(f.saturating_add(1))
            }
            None if for_read => Some(self.read_target(bound)),
            None => None,
        };
        ApplyPlan {
            links,
            advance_to,
            tidy,
        }
    }
}

/// The data shards a txns shard knows, exact at `upper`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TxnsView {
    /// The txns shard's upper (a time code) this view is exact at.
    pub(crate) upper: u64,
    /// Every registered (or forgotten but not yet tidied) data shard.
    pub(crate) shards: BTreeMap<ShardId, DataEntry>,
}

impl TxnsView {
    /// Builds the view from the live rows; the error says why the rows are inconsistent.
    pub(crate) fn from_rows<'a>(
        upper: u64,
        rows: impl IntoIterator<Item = &'a Row>,
    ) -> Result<TxnsView, String> {
        let mut view = TxnsView {
            upper,
            shards: BTreeMap::new(),
        };
        view.add(rows)?;
        Ok(view)
    }

    /// Moves the view to `upper` by the live rows one commit `added` and `retracted`:
    /// what [`TxnsView::from_rows`] gives for the new live rows, at the cost of the
    /// difference instead of every row (a commit of one row to one of 100k tables
    /// decodes one row, not 100k). On an error the view is left half changed; rebuild
    /// it with `from_rows`.
    pub(crate) fn apply<'a>(
        &mut self,
        upper: u64,
        added: impl IntoIterator<Item = &'a Row>,
        retracted: impl IntoIterator<Item = &'a Row>,
    ) -> Result<(), String> {
        for raw in retracted {
            let row = TxnsRow::decode(raw)?;
            let shard = row.shard();
            let missing = || format!("{shard} retracted but not registered");
            match row {
                // A registration leaves with its shard's entry (its forget and batches
                // are tidied with it).
                TxnsRow::Register { .. } => {
                    self.shards.remove(&shard).ok_or_else(missing)?;
                }
                TxnsRow::Forget { .. } => {
                    if let Some(entry) = self.shards.get_mut(&shard) {
                        entry.forget_ts = None;
                        entry.forget_row = None;
                    }
                }
                TxnsRow::Batch { ts, .. } => {
                    if let Some(entry) = self.shards.get_mut(&shard) {
                        entry.batches.remove(&ts);
                    }
                }
            }
        }
        self.add(added)?;
        self.upper = upper;
        Ok(())
    }

    /// Adds live rows to the view.
    fn add<'a>(&mut self, rows: impl IntoIterator<Item = &'a Row>) -> Result<(), String> {
        let mut decoded: Vec<(TxnsRow, &Row)> = Vec::new();
        for row in rows {
            decoded.push((TxnsRow::decode(row)?, row));
        }
        // Registrations first, so the other rows find their entry.
        decoded.sort_by_key(|(r, _)| !matches!(r, TxnsRow::Register { .. }));
        let shards = &mut self.shards;
        for (row, raw) in decoded {
            let shard = row.shard();
            match row {
                TxnsRow::Register { ts, schema, .. } => {
                    let entry = DataEntry {
                        register_ts: ts,
                        schema,
                        forget_ts: None,
                        batches: BTreeMap::new(),
                        register_row: raw.clone(),
                        forget_row: None,
                    };
                    if shards.insert(shard, entry).is_some() {
                        return Err(format!("{shard} is registered twice"));
                    }
                }
                TxnsRow::Forget { ts, .. } => {
                    let entry = shards
                        .get_mut(&shard)
                        .ok_or_else(|| format!("{shard} is forgotten but not registered"))?;
                    if entry.forget_ts.replace(ts).is_some() {
                        return Err(format!("{shard} is forgotten twice"));
                    }
                    entry.forget_row = Some(raw.clone());
                }
                TxnsRow::Batch { ts, batch, .. } => {
                    let entry = shards
                        .get_mut(&shard)
                        .ok_or_else(|| format!("batch of {shard} but it is not registered"))?;
                    if entry.batches.insert(ts, (raw.clone(), batch)).is_some() {
                        return Err(format!("two batches of {shard} at {ts}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry of a shard that commits may name.
    pub(crate) fn writable(&self, shard: &ShardId) -> Option<&DataEntry> {
        self.shards.get(shard).filter(|e| e.writable())
    }

    /// The number of data shards with commits not yet known to be applied.
    pub(crate) fn pending_shards(
        &self,
        bound: u64,
    ) -> impl Iterator<Item = (&ShardId, &DataEntry)> {
        self.shards.iter().filter(move |(_, e)| {
            e.batches.range(..=bound).next().is_some() || e.forget_ts.is_some_and(|f| f <= bound)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    fn batch(ts: u64) -> TxnsRow {
        let b = HollowBatch {
            lower: ts,
            upper: Some(ts + 1),
            since: ts,
            len: 1,
            ..HollowBatch::default()
        };
        TxnsRow::Batch {
            shard: shard(1),
            ts,
            batch: b,
        }
    }

    fn register(n: u8, ts: u64) -> TxnsRow {
        TxnsRow::Register {
            shard: shard(n),
            ts,
            schema: "{\"columns\":[]}".into(),
        }
    }

    fn view(rows: &[TxnsRow]) -> Result<TxnsView, String> {
        let rows: Vec<Row> = rows.iter().map(TxnsRow::encode).collect();
        TxnsView::from_rows(100, &rows)
    }

    #[test]
    fn read_targets() {
        let check = |register_ts, forget_ts, as_of, want| {
            let mut v = view(&[register(1, register_ts)]).unwrap();
            v.shards.get_mut(&shard(1)).unwrap().forget_ts = forget_ts;
            assert_eq!(
                v.shards[&shard(1)].read_target(as_of),
                want,
                "reg {register_ts} forget {forget_ts:?} as_of {as_of}"
            );
        };
        check(5, None, 7, 8);
        check(5, None, 2, 5);
        check(5, Some(9), 7, 8);
        check(5, Some(9), 12, 10);
        check(0, None, u64::MAX, u64::MAX);
    }

    #[test]
    fn plans() {
        let v = view(&[register(1, 2), batch(3), batch(6), batch(9)]).unwrap();
        let e = &v.shards[&shard(1)];
        let check = |bound, for_read, links: &[u64], advance_to: Option<u64>| {
            let p = e.plan(bound, for_read);
            assert_eq!(
                p.links.iter().map(|l| l.0).collect::<Vec<_>>(),
                links,
                "bound {bound}"
            );
            assert_eq!(
                p.advance_to, advance_to,
                "bound {bound} for_read {for_read}"
            );
            assert_eq!(p.tidy.len(), links.len());
        };
        check(1, true, &[], Some(2));
        check(1, false, &[], None);
        check(3, false, &[3], None);
        check(7, true, &[3, 6], Some(8));
        check(20, false, &[3, 6, 9], None);
        let v = view(&[
            register(1, 2),
            batch(3),
            TxnsRow::Forget {
                shard: shard(1),
                ts: 5,
            },
        ])
        .unwrap();
        let p = v.shards[&shard(1)].plan(5, false);
        assert_eq!(
            (p.links.len(), p.advance_to, p.tidy.len()),
            (1, Some(6), 3),
            "a forget tidies everything"
        );
        assert!(!v.shards[&shard(1)].writable());
    }

    fn batch_of(n: u8, ts: u64) -> TxnsRow {
        match batch(ts) {
            TxnsRow::Batch { ts, batch, .. } => TxnsRow::Batch {
                shard: shard(n),
                ts,
                batch,
            },
            other => other,
        }
    }

    /// Each case: the live rows, then one commit's added and retracted rows; applying
    /// the difference gives what rebuilding from the new live rows gives.
    #[test]
    fn applying_a_commit_equals_rebuilding() {
        let forget = |n, ts| TxnsRow::Forget {
            shard: shard(n),
            ts,
        };
        type Case = (Vec<TxnsRow>, Vec<TxnsRow>, Vec<TxnsRow>);
        let cases: Vec<Case> = vec![
            (vec![], vec![register(1, 0)], vec![]),
            (
                vec![register(1, 0), register(2, 0)],
                vec![batch_of(1, 3), batch_of(2, 3)],
                vec![],
            ),
            // The applier linked the batch at 3: it is tidied as the next one lands.
            (
                vec![register(1, 0), batch_of(1, 3)],
                vec![batch_of(1, 5)],
                vec![batch_of(1, 3)],
            ),
            (
                vec![register(1, 0), register(2, 1), batch_of(2, 3)],
                vec![forget(2, 4)],
                vec![],
            ),
            // A forgotten shard is tidied whole.
            (
                vec![register(1, 0), register(2, 1), forget(2, 4)],
                vec![batch_of(1, 6)],
                vec![register(2, 1), forget(2, 4)],
            ),
            // And may be registered again in the same commit.
            (
                vec![register(2, 1), forget(2, 4)],
                vec![register(2, 7)],
                vec![register(2, 1), forget(2, 4)],
            ),
        ];
        for (before, added, retracted) in cases {
            let encode = |rows: &[TxnsRow]| rows.iter().map(TxnsRow::encode).collect::<Vec<Row>>();
            let (before_rows, added_rows, retracted_rows) =
                (encode(&before), encode(&added), encode(&retracted));
            let mut applied = TxnsView::from_rows(100, &before_rows).unwrap();
            applied.apply(101, &added_rows, &retracted_rows).unwrap();
            let after: Vec<Row> = before_rows
                .iter()
                .filter(|r| !retracted_rows.contains(r))
                .chain(&added_rows)
                .cloned()
                .collect();
            let rebuilt = TxnsView::from_rows(101, &after).unwrap();
            assert_eq!(applied, rebuilt, "{before:?} + {added:?} - {retracted:?}");
        }
        // Inconsistent differences are errors, as inconsistent rows are.
        let mut v = view(&[register(1, 0)]).unwrap();
        assert!(v.apply(101, &[register(1, 0).encode()], &[]).is_err());
        let mut v = view(&[]).unwrap();
        assert!(v.apply(101, &[], &[register(3, 0).encode()]).is_err());
    }

    #[test]
    fn inconsistent_rows_are_errors() {
        assert!(view(&[batch(3)]).is_err(), "batch without registration");
        assert!(
            view(&[register(1, 0), register(1, 2)]).is_err(),
            "double registration"
        );
        assert!(
            view(&[TxnsRow::Forget {
                shard: shard(1),
                ts: 2
            }])
            .is_err(),
            "forget without registration"
        );
        let other = HollowBatch {
            lower: 3,
            upper: Some(4),
            since: 3,
            len: 2,
            ..HollowBatch::default()
        };
        let twice = TxnsRow::Batch {
            shard: shard(1),
            ts: 3,
            batch: other,
        };
        assert!(
            view(&[register(1, 0), batch(3), twice]).is_err(),
            "two batches at one time"
        );
        let v = view(&[register(1, 0), register(2, 4), batch(3)]).unwrap();
        assert_eq!(v.pending_shards(3).count(), 1);
        assert_eq!(v.pending_shards(2).count(), 0);
    }
}
