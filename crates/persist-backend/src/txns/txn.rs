//! [`Txn`]: a set of writes to many data shards, committed atomically at one time.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use strata_controller_api::{Certainty, ShardId, StorageTimestamp};

use super::apply;
use super::error::{TxnsError, TxnsResult};
use super::handle::{TxnsHandle, mismatch};
use super::rows::TxnsRow;
use crate::state::HollowBatch;
use crate::update::{SourceData, time_code, time_of};
use crate::write::UpperMismatch;

/// Writes to registered data shards, to be committed together.
///
/// Updates carry no time: [`Txn::commit_at`] gives them all the commit time. A reader
/// through the txns shard at any `as_of` sees either all of a commit or none of it.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use strata_controller_api::{Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp};
/// use strata_persist_backend::PersistClient;
/// use strata_persist_backend::txns::{Txn, TxnsHandle};
///
/// let client = PersistClient::open("mem://txn-doc-example").await.unwrap();
/// let desc = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
/// let (a, b) = (ShardId::from_bytes([1; 16]), ShardId::from_bytes([2; 16]));
/// let mut txns = TxnsHandle::<Timestamp>::open(client, ShardId::from_bytes([0; 16])).await.unwrap();
/// txns.register(Timestamp::new(1), [(a, desc.clone()), (b, desc)]).await.unwrap().unwrap();
///
/// let row = Row::pack(&[Datum::Int64(7)]);
/// let mut txn = Txn::new();
/// txn.write(a, [(Ok(row.clone()), 1)]);
/// txn.write(b, [(Ok(row.clone()), 1)]);
/// let applied = txn.commit_at(&mut txns, Timestamp::new(5)).await.unwrap().unwrap();
/// applied.apply(&mut txns).await.unwrap();
/// assert_eq!(txns.read_at(b, Timestamp::new(5)).await.unwrap(), vec![(Ok(row), Timestamp::new(5), 1)]);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Txn<T> {
    writes: BTreeMap<ShardId, Vec<(SourceData, i64)>>,
    _time: PhantomData<T>,
}

impl<T: StorageTimestamp> Default for Txn<T> {
    fn default() -> Self {
        Txn {
            writes: BTreeMap::new(),
            _time: PhantomData,
        }
    }
}

/// A committed [`Txn`], whose batches may not be linked into their data shards yet.
/// Applying is optional (a read applies what it needs) but keeps data shards current.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "apply the commit, or leave it for readers to apply"]
pub struct TxnApply<T> {
    commit_ts: T,
    shards: Vec<ShardId>,
}

impl<T: StorageTimestamp> TxnApply<T> {
    /// The commit time.
    pub fn commit_ts(&self) -> T {
        self.commit_ts
    }

    /// The data shards the commit wrote.
    pub fn shards(&self) -> &[ShardId] {
        &self.shards
    }

    /// Links the commit's batches (and every earlier commit of the same shards) into
    /// their data shards. Idempotent.
    pub async fn apply(self, handle: &mut TxnsHandle<T>) -> TxnsResult<()> {
        let ts = time_code(&self.commit_ts);
        for shard in self.shards {
            handle.apply_shard(shard, ts, false).await?;
        }
        Ok(())
    }
}

impl<T: StorageTimestamp> Txn<T> {
    /// An empty transaction; committing it only advances the txns upper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds updates `(data, diff)` to `shard`.
    pub fn write(&mut self, shard: ShardId, updates: impl IntoIterator<Item = (SourceData, i64)>) {
        self.writes.entry(shard).or_default().extend(updates);
    }

    /// Whether no update was added.
    pub fn is_empty(&self) -> bool {
        self.writes.values().all(Vec::is_empty)
    }

    /// The shards written so far.
    pub fn shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.writes.keys().copied()
    }

    /// Commits every write at `ts` with one CAS of the txns shard: the data batches go
    /// to blob first, then one row per written shard goes into the txns shard at `ts`,
    /// and the txns upper becomes `ts + 1`.
    ///
    /// Returns `Ok(Err(UpperMismatch))`, having committed nothing, when the txns upper
    /// is already beyond `ts`; the caller may retry at a later time. Fails with
    /// [`TxnsError::NotRegistered`] for a shard that is not registered and with
    /// [`PersistError::InvalidRow`](crate::PersistError::InvalidRow) for a row that
    /// does not match its shard's description.
    pub async fn commit_at(
        &self,
        handle: &mut TxnsHandle<T>,
        ts: T,
    ) -> TxnsResult<Result<TxnApply<T>, UpperMismatch<T>>> {
        let t = time_code(&ts);
        if self.check(handle).is_err() {
            handle.refresh().await?;
        }
        let schemas = self.check(handle)?;
        if handle.view.upper > t {
            return Ok(Err(mismatch(handle.view.upper)));
        }
        let mut batches: Vec<(ShardId, HollowBatch)> = Vec::new();
        for (shard, updates) in &self.writes {
            let desc = handle.entry_desc(*shard)?;
            let written =
                apply::write_batch(&handle.client, handle.txns_id, *shard, &desc, updates, t).await;
            match written {
                Ok(Some(batch)) => batches.push((*shard, batch)),
                Ok(None) => {}
                Err(e) => {
                    apply::delete_uncommitted(&handle.client, &batches).await;
                    return Err(e);
                }
            }
        }
        let rows: Vec<_> = batches
            .iter()
            .map(|(shard, batch)| {
                TxnsRow::Batch {
                    shard: *shard,
                    ts: t,
                    batch: batch.clone(),
                }
                .encode()
            })
            .collect();
        let res = handle
            .commit_rows(t, |h| {
                let now = self.check(h)?;
                match now == schemas {
                    true => Ok(rows.clone()),
                    false => Err(TxnsError::InvalidUsage(
                        "a written shard was registered again while committing".into(),
                    )),
                }
            })
            .await;
        match res {
            Ok(Ok(())) => {
                let shards = batches.into_iter().map(|(s, _)| s).collect();
                Ok(Ok(TxnApply {
                    commit_ts: time_of(t),
                    shards,
                }))
            }
            Ok(Err(m)) => {
                apply::delete_uncommitted(&handle.client, &batches).await;
                Ok(Err(m))
            }
            Err(e) => {
                if e.certainty() == Certainty::Determinate {
                    apply::delete_uncommitted(&handle.client, &batches).await;
                }
                Err(e)
            }
        }
    }

    /// Checks every written shard is registered; returns their schemas.
    fn check(&self, handle: &TxnsHandle<T>) -> TxnsResult<Vec<String>> {
        self.writes
            .keys()
            .map(|s| match handle.view.writable(s) {
                Some(e) => Ok(e.schema.clone()),
                None => Err(handle.not_registered(*s, "write")),
            })
            .collect()
    }
}
