//! [`WriteHandle`]: appends to a shard with `compare_and_append`.

use std::marker::PhantomData;
use std::sync::Arc;

use strata_controller_api::{Antichain, RelationDesc, ShardId, StorageTimestamp};

use crate::batch::{Batch, Layout, write_hollow};
use crate::cmds::{self, Appended, CmdError};
use crate::error::{PersistError, Result};
use crate::lease::Heartbeat;
use crate::machine::Machine;
use crate::state::State;
use crate::update::{
    SourceData, Update, before, frontier_code, frontier_le, frontier_of, render, time_code,
};

/// The shard's upper was not the expected one; nothing was written. The one type of
/// `strata-controller-api`, which the replica's shard seam returns too.
pub use strata_controller_api::UpperMismatch;

/// Makes a writer's appends conditional on a critical reader's opaque: an append
/// commits only if critical reader `reader` still holds `opaque`, checked in the same
/// CAS as the append. An owner that fences a shard by moving that opaque (as a
/// controller does with its epoch) thereby stops every older owner's writes, with no
/// window between a check and the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFence {
    /// The critical reader whose opaque guards the writes.
    pub reader: String,
    /// The opaque it must hold.
    pub opaque: u64,
}

/// A registered writer of one shard.
///
/// Appends are linearizable: each is one CAS of the shard's consensus log, carrying an
/// idempotency token, so a retry after an indeterminate failure never applies twice.
#[derive(Debug)]
pub struct WriteHandle<T> {
    pub(crate) machine: Arc<Machine>,
    pub(crate) desc: RelationDesc,
    pub(crate) writer_id: String,
    pub(crate) upper: Antichain<T>,
    pub(crate) fence: Option<WriteFence>,
    pub(crate) _heartbeat: Heartbeat,
    pub(crate) _time: PhantomData<T>,
}

impl<T: StorageTimestamp> WriteHandle<T> {
    /// The shard this handle writes.
    pub fn shard_id(&self) -> ShardId {
        self.machine.shard
    }

    /// This writer's id (also the folder of its parts).
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// The relation description rows are checked against.
    pub fn desc(&self) -> &RelationDesc {
        &self.desc
    }

    /// Makes every later append conditional on `fence` (or on nothing, with `None`).
    /// An append refused by the fence fails with [`PersistError::Fenced`] and writes
    /// nothing; a retry of an append that had already committed still succeeds.
    pub fn set_fence(&mut self, fence: Option<WriteFence>) {
        self.fence = fence;
    }

    /// The upper as of this handle's last operation, without I/O.
    pub fn upper(&self) -> &Antichain<T> {
        &self.upper
    }

    /// The most recent upper any handle of this client has seen, without I/O.
    pub fn shared_upper(&self) -> Antichain<T> {
        match self.machine.cached() {
            Some(s) => frontier_of(s.upper),
            None => self.upper.clone(),
        }
    }

    /// Reads the shard's current upper from storage.
    pub async fn fetch_recent_upper(&mut self) -> Result<&Antichain<T>> {
        let state = self.machine.fetch().await?;
        if state.tombstone {
            return Err(PersistError::Tombstoned {
                shard: self.machine.shard,
            });
        }
        self.upper = frontier_of(state.upper);
        Ok(&self.upper)
    }

    /// Waits until the shard's upper is beyond `frontier`.
    pub async fn wait_for_upper_past(&mut self, frontier: &Antichain<T>) -> Result<()> {
        let state =
            crate::read::wait_for_upper_past(&self.machine, frontier_code(frontier)).await?;
        self.upper = frontier_of(state.upper);
        Ok(())
    }

    /// Checks every update's time against the bounds; returns them in the shard's time
    /// domain, borrowing their data. (Rows are checked against the description as the
    /// batch is written, on the coding threads when it is large.)
    fn validate<'u>(
        &self,
        updates: &'u [Update<T>],
        lower: &Antichain<T>,
        upper: &Antichain<T>,
    ) -> Result<Vec<(&'u SourceData, u64, i64)>> {
        let shard = self.machine.shard;
        let (lo, up) = (frontier_code(lower), frontier_code(upper));
        if !frontier_le(lo, up) {
            return Err(PersistError::InvalidUppers {
                shard,
                expected: render(lower),
                new: render(upper),
            });
        }
        let Some(lo) = lo else {
            return match updates.is_empty() {
                true => Err(PersistError::InvalidUsage(
                    "cannot append beyond the empty frontier".into(),
                )),
                false => Err(PersistError::InvalidUsage(
                    "cannot append updates beyond the empty frontier".into(),
                )),
            };
        };
        let mut coded = Vec::with_capacity(updates.len());
        for (data, t, diff) in updates {
            let code = time_code(t);
            if code < lo || !before(code, up) {
                let (lower, upper) = (render(lower), render(upper));
                return Err(PersistError::UpdateOutOfBounds {
                    shard,
                    time: t.to_string(),
                    lower,
                    upper,
                });
            }
            coded.push((data, code, *diff));
        }
        Ok(coded)
    }

    /// Writes `updates` (times in `[lower, upper)`) to blob, or inline if small, without
    /// linking them into the shard. Link the result with
    /// [`WriteHandle::compare_and_append_batch`].
    pub async fn batch(
        &mut self,
        updates: &[Update<T>],
        lower: Antichain<T>,
        upper: Antichain<T>,
    ) -> Result<Batch<T>> {
        let coded = self.validate(updates, &lower, &upper)?;
        let lo = frontier_code(&lower).unwrap_or(u64::MAX);
        let hollow = write_hollow(
            &self.machine,
            &self.desc,
            &self.writer_id,
            coded,
            (lo, frontier_code(&upper), lo),
            Layout::append(&self.machine),
        )
        .await?;
        Ok(Batch {
            shard: self.machine.shard,
            hollow,
            _time: PhantomData,
        })
    }

    /// Links a batch if the shard's upper is the batch's lower; the upper becomes the
    /// batch's upper. Returns `Ok(Err(UpperMismatch))`, and writes nothing, otherwise.
    pub async fn compare_and_append_batch(
        &mut self,
        batch: &Batch<T>,
    ) -> Result<Result<(), UpperMismatch<T>>> {
        if batch.shard != self.machine.shard {
            return Err(PersistError::InvalidUsage(format!(
                "batch of {} linked into {}",
                batch.shard, self.machine.shard
            )));
        }
        let token = uuid::Uuid::new_v4().to_string();
        let (lease, now) = (self.lease_ms(), self.machine.cfg.now_ms());
        let res = self
            .machine
            .apply(|s: &State| {
                // The fence is checked before the upper, in the same transition, so a
                // fenced writer hears `Fenced` first, never a retryable-looking upper
                // mismatch. Only a retry of an append that already landed passes.
                if let Some(fence) = &self.fence {
                    let retry = s
                        .writers
                        .iter()
                        .any(|w| w.id == self.writer_id && w.last_token == token);
                    if !retry {
                        cmds::require_opaque(s, &fence.reader, fence.opaque)?;
                    }
                }
                cmds::compare_and_append(s, &self.writer_id, &token, &batch.hollow, lease, now)
            })
            .await?;
        match res {
            Ok((state, Appended::Applied | Appended::AlreadyApplied)) => {
                self.upper = frontier_of(state.upper);
                crate::maintenance::maybe_start_background(&self.machine, &state);
                Ok(Ok(()))
            }
            Err(CmdError::UpperMismatch { current }) => {
                self.upper = frontier_of(current);
                Ok(Err(UpperMismatch {
                    current: self.upper.clone(),
                }))
            }
            Err(CmdError::OpaqueMismatch { current }) => {
                let (reader, expected) = self
                    .fence
                    .as_ref()
                    .map_or((String::new(), 0), |f| (f.reader.clone(), f.opaque));
                Err(PersistError::Fenced {
                    shard: self.machine.shard,
                    reader,
                    expected,
                    current,
                })
            }
            Err(e) => Err(self.machine.cmd_error(e)),
        }
    }

    /// Appends `updates` if the shard's upper is `expected_upper`, moving it to
    /// `new_upper`. Every update's time must be in `[expected_upper, new_upper)` and
    /// every row must match the description; otherwise a typed error, and nothing is
    /// written. If the writer's lease had expired, it registers again and retries once.
    pub async fn compare_and_append(
        &mut self,
        updates: &[Update<T>],
        expected_upper: Antichain<T>,
        new_upper: Antichain<T>,
    ) -> Result<Result<(), UpperMismatch<T>>> {
        let batch = self
            .batch(updates, expected_upper.clone(), new_upper.clone())
            .await?;
        match self.compare_and_append_batch(&batch).await {
            Err(PersistError::LeaseExpired { .. }) => {
                self.register().await?;
                let batch = self.batch(updates, expected_upper, new_upper).await?;
                self.compare_and_append_batch(&batch).await
            }
            other => {
                if matches!(other, Ok(Err(_)) | Err(PersistError::Fenced { .. })) {
                    crate::part_write::delete_parts(&self.machine, &batch.hollow.parts).await;
                }
                other
            }
        }
    }

    /// Appends `updates` at the shard's current upper, moving it to `new_upper`; retries
    /// when other writers move the upper, as long as every update is still at or beyond
    /// it. Returns `Ok(Err(UpperMismatch))` once the upper has passed an update's time or
    /// `new_upper`.
    pub async fn append(
        &mut self,
        updates: &[Update<T>],
        new_upper: Antichain<T>,
    ) -> Result<Result<(), UpperMismatch<T>>> {
        let mut expected = self.upper.clone();
        for _ in 0..self.machine.cfg.cas_attempts {
            let fits = updates.iter().all(|(_, t, _)| expected.less_equal(t));
            let up_ok = frontier_le(frontier_code(&expected), frontier_code(&new_upper));
            if !fits || !up_ok {
                return Ok(Err(UpperMismatch { current: expected }));
            }
            match self
                .compare_and_append(updates, expected.clone(), new_upper.clone())
                .await?
            {
                Ok(()) => return Ok(Ok(())),
                Err(UpperMismatch { current }) => expected = current,
            }
        }
        Err(PersistError::Contention {
            shard: self.machine.shard,
            attempts: self.machine.cfg.cas_attempts,
        })
    }

    fn lease_ms(&self) -> u64 {
        self.machine.cfg.writer_lease.as_millis() as u64
    }

    /// Registers (again) as a writer of the shard.
    pub(crate) async fn register(&mut self) -> Result<()> {
        let (lease, now) = (self.lease_ms(), self.machine.cfg.now_ms());
        let schema = serde_json::to_string(&self.desc).unwrap_or_default();
        let (state, ()) = self
            .machine
            .apply_plain(|s: &State| {
                let (next, out) = cmds::register_writer(s, &self.writer_id, lease, now)?;
                Ok((
                    next.map(|mut n| {
                        if n.schema_json.is_empty() {
                            n.schema_json = schema.clone();
                        }
                        n
                    }),
                    out,
                ))
            })
            .await?;
        self.upper = frontier_of(state.upper);
        Ok(())
    }

    /// Renews the writer's lease now.
    pub async fn heartbeat(&mut self) -> Result<()> {
        let (lease, now) = (self.lease_ms(), self.machine.cfg.now_ms());
        self.machine
            .apply_plain(|s: &State| cmds::heartbeat_writer(s, &self.writer_id, lease, now))
            .await?;
        Ok(())
    }

    /// Unregisters the writer. Dropping the handle does the same in the background.
    pub async fn expire(mut self) -> Result<()> {
        self._heartbeat.disarm();
        let id = self.writer_id.clone();
        self.machine
            .apply_plain(|s: &State| cmds::expire_writer(s, &id))
            .await?;
        Ok(())
    }
}
