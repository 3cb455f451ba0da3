//! [`TxnsHandle`]: registration, commits, apply and reads through one txns shard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use strata_controller_api::{Antichain, RelationDesc, Row, ShardId, StorageTimestamp};

use super::apply;
use super::error::{TxnsError, TxnsResult};
use super::rows::{TxnsRow, txns_desc};
use super::view::{DataEntry, TxnsView};
use crate::client::PersistClient;
use crate::error::PersistError;
use crate::read::{Listen, ReadHandle};
use crate::state::State;
use crate::update::Update;
use crate::update::{frontier_code, frontier_of, time_code, time_of};
use crate::write::{UpperMismatch, WriteFence, WriteHandle};

/// How many data shards `register` opens at once.
const OPEN_CONCURRENCY: usize = 32;

/// How many data shards' writers a handle keeps open between applies. Each is passive
/// (no lease task), so the bound is on memory, not store requests.
const CACHED_DATA_WRITERS: usize = 256;

/// A handle to a txns shard: atomic writes across many data shards.
///
/// Several handles (in one process or many, for example a restarted controller) may
/// use one txns shard at once: every change is one `compare_and_append` on the txns
/// shard, and apply is idempotent. The handle caches the txns shard's live rows (the
/// registrations and the batches not yet known to be applied), exact at the txns upper
/// it last saw, and refreshes them when a CAS reports a newer upper.
///
/// Costs: a commit of N data shards is N blob writes (none for small batches, which
/// are inlined) plus **one** CAS of the txns shard; advancing the logical upper of
/// every registered data shard is one CAS of the txns shard, however many there are.
/// Data shards are written only when their commits are applied: by
/// [`TxnApply::apply`](super::TxnApply::apply), [`TxnsHandle::apply_le`] or a read.
#[derive(Debug)]
pub struct TxnsHandle<T: StorageTimestamp> {
    pub(super) client: PersistClient,
    pub(super) txns_id: ShardId,
    txns_write: WriteHandle<T>,
    pub(super) txns_read: ReadHandle<T>,
    /// The live rows of the txns shard, exact at `view.upper`.
    pub(super) live: BTreeSet<Row>,
    pub(super) view: TxnsView,
    /// Whether `live` was ever read from the shard.
    loaded: bool,
    /// Rows known to be applied, retracted by this handle's next write.
    pub(super) tidy: BTreeSet<Row>,
    /// Writers of recently applied data shards, with when each was last used.
    data_writes: BTreeMap<ShardId, (WriteHandle<T>, u64)>,
    writer_uses: u64,
    /// The txns shard's changes from where the view was last read in full (its
    /// frontier is at or below the view's upper); see [`TxnsHandle::catch_up`].
    pub(super) changes: Option<Listen<T>>,
    /// Commits seen since the reader's since last followed the view's upper.
    pub(super) moves_since_release: usize,
    pub(super) last_release: std::time::Instant,
    data_reads: BTreeMap<ShardId, ReadHandle<T>>,
}

fn desc_json(desc: &RelationDesc) -> String {
    serde_json::to_string(desc).unwrap_or_default()
}

pub(super) fn mismatch<T: StorageTimestamp>(upper: u64) -> UpperMismatch<T> {
    UpperMismatch {
        current: frontier_of(Some(upper)),
    }
}

impl<T: StorageTimestamp> TxnsHandle<T> {
    /// Opens the txns shard `txns_id` (creating it on first use). Fails with
    /// [`TxnsError::SchemaMismatch`] if that shard holds something else.
    pub async fn open(client: PersistClient, txns_id: ShardId) -> TxnsResult<TxnsHandle<T>> {
        let desc = txns_desc();
        let txns_write = client.open_writer::<T>(txns_id, desc.clone()).await?;
        let existing = client.machine(txns_id).fetch().await?.schema_json.clone();
        if !existing.is_empty() && existing != desc_json(&desc) {
            return Err(TxnsError::SchemaMismatch {
                shard: txns_id,
                existing,
                given: desc_json(&desc),
            });
        }
        let txns_read = client.open_leased_reader::<T>(txns_id, desc).await?;
        let mut handle = TxnsHandle {
            client,
            txns_id,
            txns_write,
            txns_read,
            live: BTreeSet::new(),
            view: TxnsView {
                upper: time_code(&T::minimum()),
                shards: BTreeMap::new(),
            },
            loaded: false,
            tidy: BTreeSet::new(),
            data_writes: BTreeMap::new(),
            writer_uses: 0,
            changes: None,
            moves_since_release: 0,
            last_release: std::time::Instant::now(),
            data_reads: BTreeMap::new(),
        };
        handle.refresh().await?;
        Ok(handle)
    }

    /// The txns shard's id.
    pub fn txns_id(&self) -> ShardId {
        self.txns_id
    }

    /// Makes every later CAS of the txns shard (commits, registrations, forgets and
    /// upper advances) conditional on `fence`; see [`WriteFence`]. A refused CAS fails
    /// with [`PersistError::Fenced`](crate::PersistError::Fenced) and commits nothing.
    pub fn set_fence(&mut self, fence: Option<WriteFence>) {
        self.txns_write.set_fence(fence);
    }

    /// The txns upper as of this handle's last operation, without I/O. It is also the
    /// logical upper of every registered data shard.
    pub fn txns_upper(&self) -> Antichain<T> {
        frontier_of(Some(self.view.upper))
    }

    /// Reads the txns shard's current upper and refreshes the cached rows.
    pub async fn fetch_txns_upper(&mut self) -> TxnsResult<Antichain<T>> {
        self.refresh().await?;
        Ok(self.txns_upper())
    }

    /// The registered data shards and their registration times, from the cache.
    pub fn registered(&self) -> Vec<(ShardId, T)> {
        self.view
            .shards
            .iter()
            .filter(|(_, e)| e.writable())
            .map(|(s, e)| (*s, time_of(e.register_ts)))
            .collect()
    }

    /// The logical upper of a registered data shard: the txns upper (from the cache).
    pub fn logical_upper(&self, shard: ShardId) -> TxnsResult<Antichain<T>> {
        match self.view.writable(&shard) {
            Some(_) => Ok(self.txns_upper()),
            None => Err(self.not_registered(shard, "read")),
        }
    }

    /// How many rows the txns shard holds live (registrations, forgets and batches not
    /// yet known to be applied): what keeps it small is visible here.
    pub fn live_rows(&self) -> usize {
        self.live.len()
    }

    pub(super) fn not_registered(&self, shard: ShardId, op: &'static str) -> TxnsError {
        TxnsError::NotRegistered {
            txns: self.txns_id,
            shard,
            op,
        }
    }

    fn corrupt(&self, reason: String) -> TxnsError {
        TxnsError::Corrupt {
            txns: self.txns_id,
            reason,
        }
    }

    /// Re-reads the live rows if the txns upper moved.
    pub(super) async fn refresh(&mut self) -> TxnsResult<()> {
        let upper = self.txns_write.fetch_recent_upper().await?.clone();
        let Some(upper) = frontier_code(&upper) else {
            return Err(self.corrupt("the txns shard is closed".into()));
        };
        if upper == self.view.upper && self.loaded {
            return Ok(());
        }
        // (No change feed only on a shard that was empty when last read in full.)
        if self.loaded && upper > self.view.upper && self.changes.is_some() {
            match self.catch_up(upper).await {
                Ok(commits) => return self.release_since(commits).await,
                Err(error) => {
                    tracing::debug!(txns = %self.txns_id, %error, "catching up failed; reading the txns shard again");
                    self.changes = None;
                }
            }
        }
        let mut live = BTreeSet::new();
        if upper > time_code(&T::minimum()) {
            for (data, _, diff) in self.snapshot_txns(upper - 1).await? {
                let row = data.map_err(|e| self.corrupt(format!("error row {e:?}")))?;
                if diff != 1 {
                    return Err(self.corrupt(format!("row with multiplicity {diff}")));
                }
                live.insert(row);
            }
        }
        self.install(upper, live)?;
        self.changes = match upper.checked_sub(1) {
            Some(as_of) => Some(self.txns_read.listen(&time_of(as_of)).await?),
            None => None,
        };
        self.release_since(0).await
    }

    async fn snapshot_txns(&mut self, as_of: u64) -> TxnsResult<Vec<Update<T>>> {
        match self.txns_read.snapshot(&time_of(as_of)).await {
            Err(PersistError::LeaseExpired { .. }) => {
                self.txns_read = self
                    .client
                    .open_leased_reader::<T>(self.txns_id, txns_desc())
                    .await?;
                Ok(self.txns_read.snapshot(&time_of(as_of)).await?)
            }
            other => Ok(other?),
        }
    }

    fn install(&mut self, upper: u64, live: BTreeSet<Row>) -> TxnsResult<()> {
        let view = TxnsView::from_rows(upper, &live).map_err(|r| self.corrupt(r))?;
        self.tidy.retain(|r| live.contains(r));
        self.live = live;
        self.view = view;
        self.loaded = true;
        Ok(())
    }

    /// One CAS of the txns shard from the cached upper to `new_upper`, adding `rows` at
    /// `row_ts` and retracting the tidy rows. `Ok(false)` on a mismatch, after which
    /// the cache is refreshed.
    pub(super) async fn try_cas(
        &mut self,
        row_ts: u64,
        new_upper: u64,
        rows: &[Row],
    ) -> TxnsResult<bool> {
        let t: T = time_of(row_ts);
        let retract: Vec<Row> = self
            .tidy
            .iter()
            .filter(|r| self.live.contains(*r))
            .cloned()
            .collect();
        let updates: Vec<Update<T>> = rows
            .iter()
            .map(|r| (Ok(r.clone()), t, 1))
            .chain(retract.iter().map(|r| (Ok(r.clone()), t, -1)))
            .collect();
        let (from, to) = (
            frontier_of(Some(self.view.upper)),
            frontier_of(Some(new_upper)),
        );
        match self
            .txns_write
            .compare_and_append(&updates, from, to)
            .await?
        {
            Ok(()) => {
                retract.iter().for_each(|r| {
                    self.live.remove(r);
                });
                self.live.extend(rows.iter().cloned());
                // The view moves by the difference, not by decoding every live row.
                if self.view.apply(new_upper, rows, &retract).is_ok() {
                    let live = &self.live;
                    self.tidy.retain(|r| live.contains(r));
                } else {
                    let live = std::mem::take(&mut self.live);
                    self.install(new_upper, live)?;
                }
                // Nobody committed between the view's upper and this CAS, so the view
                // is exact at the new upper and the change feed can start there.
                self.changes = Some(self.txns_read.listen(&time_of(new_upper - 1)).await?);
                self.release_since(1).await?;
                Ok(true)
            }
            Err(_) => {
                self.refresh().await?;
                Ok(false)
            }
        }
    }

    /// Commits `rows` at `ts` (the txns upper becomes `ts + 1`), retrying while the
    /// upper is not beyond `ts`. `rows` builds (and validates) the rows from a view; a
    /// validation error on the cached view is only returned once seen on a fresh one.
    pub(super) async fn commit_rows(
        &mut self,
        ts: u64,
        mut rows: impl FnMut(&Self) -> TxnsResult<Vec<Row>>,
    ) -> TxnsResult<Result<(), UpperMismatch<T>>> {
        let next = ts
            .checked_add(1)
            .ok_or_else(|| TxnsError::InvalidUsage("cannot commit at the maximum time".into()))?;
        let attempts = self.client.config().cas_attempts;
        let mut fresh = false;
        for _ in 0..attempts {
            if self.view.upper > ts {
                return Ok(Err(mismatch(self.view.upper)));
            }
            let rows = match rows(self) {
                Ok(rows) => rows,
                Err(_) if !fresh => {
                    self.refresh().await?;
                    fresh = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if self.try_cas(ts, next, &rows).await? {
                return Ok(Ok(()));
            }
            fresh = true;
        }
        Err(PersistError::Contention {
            shard: self.txns_id,
            attempts,
        }
        .into())
    }

    /// Registers data shards at `register_ts`: from then on they are written only
    /// through this txns shard, and their logical upper is the txns upper. Each shard is
    /// created if needed; its description must match the one it has (else
    /// [`TxnsError::SchemaMismatch`]) and its upper must not be beyond `register_ts`
    /// (else [`TxnsError::DataUpperBeyondRegister`]). Registering an already
    /// registered shard with the same description is a no-op, and if every shard is,
    /// no CAS is made. A forgotten shard may be registered again.
    pub async fn register(
        &mut self,
        register_ts: T,
        shards: impl IntoIterator<Item = (ShardId, RelationDesc)>,
    ) -> TxnsResult<Result<(), UpperMismatch<T>>> {
        let ts = time_code(&register_ts);
        let shards: BTreeMap<ShardId, RelationDesc> = shards.into_iter().collect();
        self.refresh().await?;
        // Shards registered already, writable and with this schema, need nothing: no
        // data shard is read (a controller re-registers all its tables at every start).
        let registered = shards.iter().all(|(shard, desc)| {
            self.view
                .shards
                .get(shard)
                .is_some_and(|e| e.writable() && e.schema == desc_json(desc))
        });
        if registered {
            return Ok(Ok(()));
        }
        let states = self.init_data_shards(&shards).await?;
        for (shard, desc) in &shards {
            self.check_data_shard(*shard, desc, ts, states.get(shard).cloned())
                .await?;
        }
        let to_register = |h: &Self| -> TxnsResult<Vec<Row>> {
            let mut rows = Vec::new();
            for (shard, desc) in &shards {
                let schema = desc_json(desc);
                match h.view.shards.get(shard) {
                    Some(e) if e.writable() && e.schema == schema => {}
                    Some(e) if e.writable() => {
                        return Err(TxnsError::SchemaMismatch {
                            shard: *shard,
                            existing: e.schema.clone(),
                            given: schema,
                        });
                    }
                    Some(e)
                        if !e
                            .plan(e.forget_ts.unwrap_or(0), false)
                            .tidy
                            .iter()
                            .all(|r| h.tidy.contains(r)) =>
                    {
                        return Err(TxnsError::InvalidUsage(format!(
                            "{shard} is being forgotten; apply its forget first"
                        )));
                    }
                    _ => rows.push(
                        TxnsRow::Register {
                            shard: *shard,
                            ts,
                            schema,
                        }
                        .encode(),
                    ),
                }
            }
            Ok(rows)
        };
        self.apply_forgotten(shards.keys().copied()).await?;
        if to_register(self)?.is_empty() {
            return Ok(Ok(()));
        }
        self.commit_rows(ts, to_register).await
    }

    /// Creates the data shards `register` needs that do not exist yet (with their
    /// schema) and reads every data shard's state, at most [`OPEN_CONCURRENCY`] shards
    /// at a time: registering 10k tables then waits on about 10k / 32 round trips to
    /// the store, not 10k. Registers no writer: the data shards are written only when
    /// commits are applied, by writers opened then ([`TxnsHandle::data_writer`]).
    /// Returns the states read.
    async fn init_data_shards(
        &mut self,
        shards: &BTreeMap<ShardId, RelationDesc>,
    ) -> TxnsResult<BTreeMap<ShardId, Arc<State>>> {
        use futures::{StreamExt, TryStreamExt};
        let client = self.client.clone();
        // Owned, so the future stays `Send` for any lifetime (a stream over borrows
        // is not, to the compiler's higher-ranked check).
        let work: Vec<(ShardId, RelationDesc)> = shards
            .iter()
            .filter(|(shard, _)| **shard != self.txns_id)
            .map(|(shard, desc)| (*shard, desc.clone()))
            .collect();
        futures::stream::iter(work)
            .map(|(shard, desc)| {
                let client = client.clone();
                async move {
                    let machine = client.init::<T>(shard, Some(&desc)).await?;
                    let state = match machine.cached() {
                        Some(state) => state,
                        None => machine.fetch().await?,
                    };
                    Ok::<_, TxnsError>((shard, state))
                }
            })
            .buffer_unordered(OPEN_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Opens (creating if needed) a writer of `shard` and checks its schema and upper
    /// (in `state`, if the caller read it already).
    async fn check_data_shard(
        &mut self,
        shard: ShardId,
        desc: &RelationDesc,
        ts: u64,
        state: Option<Arc<State>>,
    ) -> TxnsResult<()> {
        let given = desc_json(desc);
        if shard == self.txns_id {
            return Err(TxnsError::InvalidUsage(
                "the txns shard cannot register itself".into(),
            ));
        }
        let state = match state {
            Some(state) => state,
            None => self.client.machine(shard).fetch().await?,
        };
        if !state.schema_json.is_empty() && state.schema_json != given {
            return Err(TxnsError::SchemaMismatch {
                shard,
                existing: state.schema_json.clone(),
                given,
            });
        }
        let registered = self.view.writable(&shard).is_some();
        if !registered && !crate::update::frontier_le(state.upper, Some(ts)) {
            let upper = format!("{:?}", frontier_of::<T>(state.upper).elements());
            return Err(TxnsError::DataUpperBeyondRegister {
                shard,
                register_ts: time_of::<T>(ts).to_string(),
                upper,
            });
        }
        Ok(())
    }

    /// Applies the forgets of the given shards, so they can be registered again.
    async fn apply_forgotten(&mut self, shards: impl Iterator<Item = ShardId>) -> TxnsResult<()> {
        for shard in shards {
            let Some(f) = self.view.shards.get(&shard).and_then(|e| e.forget_ts) else {
                continue;
            };
            self.apply_shard(shard, f, false).await?;
        }
        Ok(())
    }

    /// Forgets data shards at `forget_ts`: commits may no longer name them, and once
    /// applied (this call applies them) their upper is `forget_ts + 1` and they may be
    /// written directly again. A shard that is not registered is
    /// [`TxnsError::NotRegistered`].
    pub async fn forget(
        &mut self,
        forget_ts: T,
        shards: impl IntoIterator<Item = ShardId>,
    ) -> TxnsResult<Result<(), UpperMismatch<T>>> {
        let ts = time_code(&forget_ts);
        let shards: BTreeSet<ShardId> = shards.into_iter().collect();
        let rows = |h: &Self| -> TxnsResult<Vec<Row>> {
            shards
                .iter()
                .map(|s| match h.view.writable(s) {
                    Some(_) => Ok(TxnsRow::Forget { shard: *s, ts }.encode()),
                    None => Err(h.not_registered(*s, "forget")),
                })
                .collect()
        };
        let res = self.commit_rows(ts, rows).await?;
        if res.is_ok() {
            for shard in &shards {
                self.apply_shard(*shard, ts, false).await?;
            }
        }
        Ok(res)
    }

    /// Moves the txns upper (the logical upper of every registered data shard) to at
    /// least `upper`, with one CAS of the txns shard and no data shard write. Returns
    /// the txns upper afterwards.
    pub async fn advance_to(&mut self, upper: T) -> TxnsResult<Antichain<T>> {
        let target = time_code(&upper);
        let attempts = self.client.config().cas_attempts;
        for _ in 0..attempts {
            if self.view.upper >= target {
                return Ok(self.txns_upper());
            }
            if self.try_cas(self.view.upper, target, &[]).await? {
                return Ok(self.txns_upper());
            }
        }
        Err(PersistError::Contention {
            shard: self.txns_id,
            attempts,
        }
        .into())
    }

    /// Waits until the txns upper is past `ts` (or, with `wait` false, fails with
    /// [`TxnsError::NotYetReadable`] naming `shard`).
    pub(super) async fn ensure_past(
        &mut self,
        ts: u64,
        shard: ShardId,
        wait: bool,
    ) -> TxnsResult<()> {
        if self.view.upper > ts {
            return Ok(());
        }
        self.refresh().await?;
        if self.view.upper > ts {
            return Ok(());
        }
        if !wait {
            let (as_of, upper) = (
                time_of::<T>(ts).to_string(),
                time_of::<T>(self.view.upper).to_string(),
            );
            return Err(TxnsError::NotYetReadable {
                shard,
                as_of,
                upper,
            });
        }
        self.txns_write
            .wait_for_upper_past(&frontier_of(Some(ts)))
            .await?;
        self.refresh().await
    }

    /// Links every commit at or before `ts` into its data shard (and applies forgets at
    /// or before `ts`). Idempotent and safe to run concurrently with other appliers.
    /// Waits until the txns upper is past `ts`. Data shards with nothing to apply are not
    /// touched.
    ///
    /// Each data shard gets one compare-and-append, however many commits it applies.
    /// Returns the data shards it applied.
    pub async fn apply_le(&mut self, ts: T) -> TxnsResult<Vec<ShardId>> {
        let bound = time_code(&ts);
        self.ensure_past(bound, self.txns_id, true).await?;
        let pending: Vec<ShardId> = self.view.pending_shards(bound).map(|(s, _)| *s).collect();
        for shard in &pending {
            self.apply_shard(*shard, bound, false).await?;
        }
        Ok(pending)
    }

    /// Records that another handle of this client (a background applier) applied every
    /// commit of `shard` at or before `ts`, so that this handle's next commit retracts
    /// their rows from the txns shard for free. The claim is checked against the data
    /// shard's upper as this client last saw it; one it cannot confirm is ignored
    /// (returns false).
    pub fn note_applied(&mut self, shard: ShardId, ts: T) -> bool {
        let bound = time_code(&ts);
        let upper = self.client.machine(shard).cached().map(|s| s.upper);
        if upper.is_none_or(|u| u.is_some_and(|u| u <= bound)) {
            return false;
        }
        let Some(entry) = self.view.shards.get(&shard) else {
            return false;
        };
        let tidy = entry.plan(bound, false).tidy;
        self.tidy
            .extend(tidy.into_iter().filter(|r| self.live.contains(r)));
        true
    }

    /// Applies one data shard's commits up to `bound` (see [`DataEntry::plan`]).
    pub(super) async fn apply_shard(
        &mut self,
        shard: ShardId,
        bound: u64,
        for_read: bool,
    ) -> TxnsResult<()> {
        let Some(entry) = self.view.shards.get(&shard) else {
            return Ok(());
        };
        let plan = entry.plan(bound, for_read);
        let w = self.data_writer(shard).await?;
        apply::link(w, &plan.links).await?;
        if let Some(target) = plan.advance_to {
            apply::advance(w, target).await?;
        }
        self.tidy
            .extend(plan.tidy.into_iter().filter(|r| self.live.contains(r)));
        Ok(())
    }

    /// A writer of data shard `shard` under its registered relation: a cached one, or
    /// a new passive writer (no lease task: an idle data shard costs no store request;
    /// `apply::link` registers it again when its lease lapsed). At most
    /// [`CACHED_DATA_WRITERS`] are kept; the least recently used goes first.
    async fn data_writer(&mut self, shard: ShardId) -> TxnsResult<&mut WriteHandle<T>> {
        // A shard registered again under a later version of its relation gets a writer
        // of that version.
        let desc = self.entry_desc(shard)?;
        if self
            .data_writes
            .get(&shard)
            .is_some_and(|(w, _)| w.desc != desc)
        {
            self.data_writes.remove(&shard);
        }
        if !self.data_writes.contains_key(&shard) {
            if self.data_writes.len() >= CACHED_DATA_WRITERS
                && let Some(oldest) = self
                    .data_writes
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(shard, _)| *shard)
            {
                self.data_writes.remove(&oldest);
            }
            let w = self.client.open_passive_writer::<T>(shard, desc).await?;
            self.data_writes.insert(shard, (w, 0));
        }
        self.writer_uses += 1;
        let uses = self.writer_uses;
        match self.data_writes.get_mut(&shard) {
            Some((w, used)) => {
                *used = uses;
                Ok(w)
            }
            None => Err(TxnsError::InvalidUsage(format!("no writer for {shard}"))),
        }
    }

    pub(super) fn entry(&self, shard: ShardId, op: &'static str) -> TxnsResult<&DataEntry> {
        self.view
            .shards
            .get(&shard)
            .ok_or_else(|| self.not_registered(shard, op))
    }

    pub(super) fn entry_desc(&self, shard: ShardId) -> TxnsResult<RelationDesc> {
        let entry = self.entry(shard, "read")?;
        serde_json::from_str(&entry.schema)
            .map_err(|e| self.corrupt(format!("schema of {shard}: {e}")))
    }

    /// The contents of data shard `shard` at `as_of`, consolidated: waits until the
    /// txns upper is past `as_of`, applies every commit at or before it, then reads.
    /// The shard must be registered, or forgotten (not yet tidied) at a time at or
    /// after `as_of`; else [`TxnsError::NotRegistered`] (read a forgotten shard
    /// directly).
    pub async fn read_at(&mut self, shard: ShardId, as_of: T) -> TxnsResult<Vec<Update<T>>> {
        self.read(shard, as_of, true).await
    }

    /// Like [`TxnsHandle::read_at`], but fails with [`TxnsError::NotYetReadable`]
    /// instead of waiting when the txns upper is not past `as_of`.
    pub async fn read_at_no_wait(
        &mut self,
        shard: ShardId,
        as_of: T,
    ) -> TxnsResult<Vec<Update<T>>> {
        self.read(shard, as_of, false).await
    }

    /// Makes data shard `shard` readable at `as_of` by any persist reader of it: waits
    /// until the txns upper is past `as_of`, links every commit of the shard at or
    /// before it, and moves the shard's physical upper past `as_of`. [`read_at`] is
    /// this plus a snapshot; call it directly to read with a cursor or a listen.
    ///
    /// [`read_at`]: TxnsHandle::read_at
    pub async fn prepare_read(&mut self, shard: ShardId, as_of: T) -> TxnsResult<()> {
        self.prepare(shard, time_code(&as_of), true).await
    }

    async fn prepare(&mut self, shard: ShardId, a: u64, wait: bool) -> TxnsResult<()> {
        if !self.view.shards.contains_key(&shard) {
            self.refresh().await?;
        }
        self.entry(shard, "read")?;
        self.ensure_past(a, shard, wait).await?;
        if self.entry(shard, "read")?.forget_ts.is_some_and(|f| a > f) {
            return Err(self.not_registered(shard, "read"));
        }
        self.apply_shard(shard, a, true).await
    }

    async fn read(&mut self, shard: ShardId, as_of: T, wait: bool) -> TxnsResult<Vec<Update<T>>> {
        self.prepare(shard, time_code(&as_of), wait).await?;
        let mut reopened = false;
        loop {
            let desc = self.entry_desc(shard)?;
            if self.data_reads.get(&shard).is_some_and(|r| r.desc != desc) {
                self.data_reads.remove(&shard);
            }
            if !self.data_reads.contains_key(&shard) {
                let r = self.client.open_leased_reader::<T>(shard, desc).await?;
                self.data_reads.insert(shard, r);
            }
            let Some(r) = self.data_reads.get_mut(&shard) else {
                return Err(self.not_registered(shard, "read"));
            };
            match r.snapshot(&as_of).await {
                // The hold lapsed (no heartbeat for a lease): take a new one, once.
                Err(PersistError::LeaseExpired { .. }) if !reopened => {
                    self.data_reads.remove(&shard);
                    reopened = true;
                }
                other => return Ok(other?),
            }
        }
    }

    /// Lets this handle's hold on data shard `shard` move to `since`: reads of it
    /// through this handle at times before `since` fail afterwards.
    pub async fn downgrade_data_since(
        &mut self,
        shard: ShardId,
        since: &Antichain<T>,
    ) -> TxnsResult<()> {
        if let Some(r) = self.data_reads.get_mut(&shard) {
            r.downgrade_since(since).await?;
        }
        Ok(())
    }

    /// Compacts the txns shard up to `since`: applies every commit before `since` (so
    /// its rows can be retracted by this handle's next write), lets the txns shard's
    /// since follow, and runs a bounded compaction step of the txns shard.
    pub async fn compact_to(&mut self, since: T) -> TxnsResult<()> {
        self.refresh().await?;
        let s = time_code(&since).min(self.view.upper);
        if let Some(bound) = s.checked_sub(1) {
            let pending: Vec<ShardId> = self.view.pending_shards(bound).map(|(s, _)| *s).collect();
            for shard in pending {
                self.apply_shard(shard, bound, false).await?;
            }
        }
        let hold = self
            .view
            .upper
            .saturating_sub(1)
            .min(s)
            .max(time_code(&T::minimum()));
        self.txns_read
            .downgrade_since(&frontier_of(Some(hold)))
            .await?;
        self.client.compact(self.txns_id, 16).await?;
        Ok(())
    }

    /// Retracts the rows this handle knows are applied, now, with one CAS at the txns
    /// upper that moves it by one tick. Commits and `advance_to` do the same for free;
    /// call this only when no write is coming.
    pub async fn tidy_now(&mut self) -> TxnsResult<Antichain<T>> {
        if self.tidy.is_empty() {
            return Ok(self.txns_upper());
        }
        let next = self
            .view
            .upper
            .checked_add(1)
            .ok_or_else(|| TxnsError::InvalidUsage("txns upper at the maximum".into()))?;
        self.advance_to(time_of(next)).await
    }
}
