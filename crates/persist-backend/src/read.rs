//! [`ReadHandle`]: leased reads of a shard: snapshot, cursor, listen, since.
//!
//! A leased reader holds two things while its lease lasts: the shard's since (no
//! compaction beyond its own since) and a state version (no part that a version at or
//! after it references is deleted). Snapshots, cursors and listens that are still
//! running pin their version, so downgrading never releases parts they still read.

use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use strata_controller_api::{Antichain, RelationDesc, ShardId, StorageTimestamp};

use crate::batch::{advance_to, read_hollow, read_hollow_at, read_inline, read_part, restrict};
use crate::cmds;
use crate::error::{PersistError, Result};
use crate::lease::Heartbeat;
use crate::machine::Machine;
use crate::part::{CodedUpdate, consolidate};
use crate::state::{HollowBatch, PartRef, State};
use crate::update::{
    Update, before, frontier_code, frontier_le, frontier_of, render, time_code, time_of,
};

/// Waits until the shard's upper is beyond `frontier` and returns that state.
///
/// It wakes as soon as this process sees a newer state of the shard (an append through
/// any handle of the same client, or another caller's read), and otherwise reads the
/// shard every `poll_interval`, for writers in other processes. A shard that does not
/// exist yet counts as not past anything.
pub(crate) async fn wait_for_upper_past(
    machine: &Machine,
    frontier: Option<u64>,
) -> Result<Arc<State>> {
    let Some(f) = frontier else {
        return Err(PersistError::InvalidUsage(
            "no upper is ever past the empty frontier".into(),
        ));
    };
    let mut rx = machine.subscribe();
    let mut state = fetch_if_exists(machine).await?;
    loop {
        if let Some(state) = &state {
            if state.tombstone {
                return Err(PersistError::Tombstoned {
                    shard: machine.shard,
                });
            }
            if !frontier_le(state.upper, Some(f)) {
                return Ok(Arc::clone(state));
            }
        }
        // A state this process saw is already in the cache: take it from the watch
        // instead of reading the store again; only the poll reads the store.
        state = tokio::select! {
            changed = rx.changed() => match changed {
                Ok(()) => rx.borrow_and_update().clone(),
                Err(_) => fetch_if_exists(machine).await?,
            },
            () = tokio::time::sleep(machine.cfg.poll_interval) => fetch_if_exists(machine).await?,
        };
    }
}

/// The shard's current state, or `None` if it does not exist yet.
async fn fetch_if_exists(machine: &Machine) -> Result<Option<Arc<State>>> {
    match machine.fetch().await {
        Ok(state) => Ok(Some(state)),
        Err(PersistError::NotInitialized { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The versions pinned by running cursors and listens of one handle.
#[derive(Debug, Default)]
pub(crate) struct Pins(Mutex<BTreeMap<u64, usize>>);

impl Pins {
    fn pin(self: &Arc<Self>, seqno: u64) -> Pin {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(seqno).or_default() += 1;
        Pin {
            pins: Arc::clone(self),
            seqno,
        }
    }

    fn min(&self) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .next()
            .copied()
    }
}

/// Keeps one version pinned until dropped.
#[derive(Debug)]
struct Pin {
    pins: Arc<Pins>,
    seqno: u64,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut map = self.pins.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.seqno) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.seqno);
            }
        }
    }
}

/// A leased reader of one shard.
#[derive(Debug)]
pub struct ReadHandle<T> {
    pub(crate) machine: Arc<Machine>,
    pub(crate) desc: RelationDesc,
    pub(crate) reader_id: String,
    pub(crate) since: Antichain<T>,
    pub(crate) pins: Arc<Pins>,
    pub(crate) _heartbeat: Heartbeat,
}

/// What a [`Listen`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenEvent<T> {
    /// Updates at times beyond the listen's as_of and not beyond the next progress.
    Updates(Vec<Update<T>>),
    /// Every update at a time not beyond this frontier has been yielded.
    Progress(Antichain<T>),
}

impl<T: StorageTimestamp> ReadHandle<T> {
    /// The shard this handle reads.
    pub fn shard_id(&self) -> ShardId {
        self.machine.shard
    }

    /// This reader's id.
    pub fn reader_id(&self) -> &str {
        &self.reader_id
    }

    /// This reader's since: reads at times not beyond it fail.
    pub fn since(&self) -> &Antichain<T> {
        &self.since
    }

    fn lease_ms(&self) -> u64 {
        self.machine.cfg.reader_lease.as_millis() as u64
    }

    async fn renew(&mut self, new_since: Option<Option<u64>>) -> Result<()> {
        let head = self.machine.cached().map_or(0, |s| s.seqno);
        let hold = self.pins.min().map_or(head, |p| p.min(head));
        let (lease, now) = (self.lease_ms(), self.machine.cfg.now_ms());
        let id = self.reader_id.clone();
        let (_, since) = self
            .machine
            .apply_plain(|s: &State| {
                cmds::heartbeat_reader(s, &id, new_since, Some(hold), lease, now)
            })
            .await?;
        self.since = frontier_of(since);
        Ok(())
    }

    /// Moves this reader's since forward to `new_since` (a since never regresses), and
    /// releases the versions no running read still needs.
    pub async fn downgrade_since(&mut self, new_since: &Antichain<T>) -> Result<()> {
        self.renew(Some(frontier_code(new_since))).await
    }

    /// Renews the lease now (the background task does this every lease / 4).
    pub async fn heartbeat(&mut self) -> Result<()> {
        self.renew(None).await
    }

    fn check_as_of(&self, as_of: &T) -> Result<u64> {
        if !self.since.less_equal(as_of) {
            let (as_of, since) = (as_of.to_string(), render(&self.since));
            return Err(PersistError::ReadBeforeSince {
                shard: self.machine.shard,
                as_of,
                since,
            });
        }
        Ok(time_code(as_of))
    }

    async fn state_at_or_after(&self, as_of: u64) -> Result<Arc<State>> {
        let state = wait_for_upper_past(&self.machine, Some(as_of)).await?;
        if !state.leased_readers.iter().any(|r| r.id == self.reader_id) {
            return Err(PersistError::LeaseExpired {
                shard: self.machine.shard,
                kind: "reader",
                id: self.reader_id.clone(),
            });
        }
        Ok(state)
    }

    /// Every update at a time not beyond `as_of`, advanced to `as_of` and consolidated.
    /// Waits while `as_of` is not before the upper; fails with
    /// [`PersistError::ReadBeforeSince`] if `as_of` is before this reader's since.
    pub async fn snapshot(&mut self, as_of: &T) -> Result<Vec<Update<T>>> {
        let a = self.check_as_of(as_of)?;
        let state = self.state_at_or_after(a).await?;
        let _pin = self.pins.pin(state.seqno);
        let mut out = Vec::new();
        let mut consolidated = true;
        for b in state.batches.iter().filter(|b| b.lower <= a) {
            // Decoding filters and advances each update, and checks the order as it goes:
            // a compacted shard's snapshot needs no second pass.
            consolidated &= read_hollow_at(&self.machine, &self.desc, b, a, &mut out).await?;
        }
        if !consolidated {
            consolidate(&mut out);
        }
        Ok(decode_times(out))
    }

    /// Like [`ReadHandle::snapshot`], but yields one part at a time so a large shard
    /// never sits in memory at once. Each chunk is consolidated on its own; chunks
    /// together consolidate to the snapshot.
    pub async fn snapshot_cursor(&mut self, as_of: &T) -> Result<SnapshotCursor<T>> {
        let a = self.check_as_of(as_of)?;
        let state = self.state_at_or_after(a).await?;
        let mut chunks = VecDeque::new();
        for b in state.batches.iter().filter(|b| b.lower <= a) {
            if !b.inline.is_empty() {
                chunks.push_back(Chunk::Inline(b.clone()));
            }
            chunks.extend(b.parts.iter().cloned().map(Chunk::Part));
        }
        let pin = self.pins.pin(state.seqno);
        Ok(SnapshotCursor {
            machine: Arc::clone(&self.machine),
            desc: self.desc.clone(),
            as_of: a,
            chunks,
            _pin: pin,
            _time: PhantomData,
        })
    }

    /// Yields every update at a time beyond `as_of`, in time order of batches, with
    /// progress. Together with `snapshot(as_of)` it is the whole collection.
    pub async fn listen(&mut self, as_of: &T) -> Result<Listen<T>> {
        let a = self.check_as_of(as_of)?;
        let pin = self.pins.pin(self.machine.cached().map_or(0, |s| s.seqno));
        Ok(Listen {
            machine: Arc::clone(&self.machine),
            pins: Arc::clone(&self.pins),
            desc: self.desc.clone(),
            as_of: a,
            frontier: None,
            done: false,
            pin,
            _time: PhantomData,
        })
    }

    /// Unregisters the reader, releasing its holds. Dropping the handle does the same in
    /// the background.
    pub async fn expire(mut self) -> Result<()> {
        self._heartbeat.disarm();
        let id = self.reader_id.clone();
        self.machine
            .apply_plain(|s: &State| cmds::expire_reader(s, &id))
            .await?;
        Ok(())
    }
}

fn decode_times<T: StorageTimestamp>(updates: Vec<CodedUpdate>) -> Vec<Update<T>> {
    updates
        .into_iter()
        .map(|(d, t, r)| (d, time_of(t), r))
        .collect()
}

#[derive(Debug)]
enum Chunk {
    Inline(HollowBatch),
    Part(PartRef),
}

/// A snapshot read one part at a time; see [`ReadHandle::snapshot_cursor`].
#[derive(Debug)]
pub struct SnapshotCursor<T> {
    machine: Arc<Machine>,
    desc: RelationDesc,
    as_of: u64,
    chunks: VecDeque<Chunk>,
    _pin: Pin,
    _time: PhantomData<T>,
}

impl<T: StorageTimestamp> SnapshotCursor<T> {
    /// The next chunk of updates, or `None` when the snapshot is exhausted.
    pub async fn next(&mut self) -> Result<Option<Vec<Update<T>>>> {
        let Some(chunk) = self.chunks.pop_front() else {
            return Ok(None);
        };
        let mut updates = match &chunk {
            Chunk::Inline(b) => read_inline(&self.machine, &self.desc, b)?,
            Chunk::Part(p) => read_part(&self.machine, &self.desc, p).await?,
        };
        advance_to(&mut updates, self.as_of);
        consolidate(&mut updates);
        Ok(Some(decode_times(updates)))
    }

    /// How many chunks are left.
    pub fn remaining(&self) -> usize {
        self.chunks.len()
    }
}

/// A subscription to a shard's updates beyond an as_of; see [`ReadHandle::listen`].
#[derive(Debug)]
pub struct Listen<T> {
    machine: Arc<Machine>,
    pins: Arc<Pins>,
    desc: RelationDesc,
    as_of: u64,
    frontier: Option<u64>,
    done: bool,
    pin: Pin,
    _time: PhantomData<T>,
}

impl<T: StorageTimestamp> Listen<T> {
    /// The frontier up to which updates have been yielded.
    pub fn frontier(&self) -> Antichain<T> {
        match self.frontier {
            None if self.done => Antichain::new(),
            None => frontier_of(Some(self.as_of)),
            Some(f) => frontier_of(Some(f)),
        }
    }

    /// Waits for the upper to advance, then yields the updates in between (if any) and
    /// the new progress. After progress `[]` it returns no more events.
    pub async fn next(&mut self) -> Result<Vec<ListenEvent<T>>> {
        if self.done {
            return Ok(Vec::new());
        }
        let (wait, lo) = match self.frontier {
            None => (self.as_of, self.as_of.saturating_add(1)),
            Some(f) => (f, f),
        };
        let state = wait_for_upper_past(&self.machine, Some(wait)).await?;
        // Compaction moves times before the since up to it: once the since is past
        // what this listen has yielded, updates it already yielded (or that were
        // before its as_of) may come back at the since, inside the window. Refuse
        // rather than yield them twice (the caller reads a snapshot again).
        if state.since.is_none_or(|since| since >= lo) {
            return Err(PersistError::ReadBeforeSince {
                shard: self.machine.shard,
                as_of: time_of::<T>(lo.saturating_sub(1)).to_string(),
                since: render(&frontier_of::<T>(state.since)),
            });
        }
        self.pin = self.pins.pin(state.seqno);
        let mut updates = Vec::new();
        for b in state.batches.iter().filter(|b| before(lo, b.upper)) {
            let mut part = read_hollow(&self.machine, &self.desc, b).await?;
            restrict(&mut part, lo, state.upper);
            updates.extend(part);
        }
        consolidate(&mut updates);
        let mut events = Vec::new();
        if !updates.is_empty() {
            events.push(ListenEvent::Updates(decode_times(updates)));
        }
        match state.upper {
            Some(u) => self.frontier = Some(u),
            None => self.done = true,
        }
        events.push(ListenEvent::Progress(frontier_of(state.upper)));
        Ok(events)
    }
}

/// See [`PersistClient::peek_latest`](crate::PersistClient::peek_latest).
pub(crate) async fn peek_latest<T: StorageTimestamp>(
    machine: &Machine,
    desc: &RelationDesc,
) -> Result<(Vec<Update<T>>, Antichain<T>)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let state = machine.fetch().await?;
        let Some(upper) = state.upper else {
            return Err(PersistError::InvalidUsage(format!(
                "{} is closed: it has no latest time to read",
                machine.shard
            )));
        };
        let frontier = frontier_of(Some(upper));
        if upper <= state.lower {
            return Ok((Vec::new(), frontier));
        }
        let as_of = upper - 1;
        if !frontier_le(state.since, Some(as_of)) {
            return Err(PersistError::ReadBeforeSince {
                shard: machine.shard,
                as_of: time_of::<T>(as_of).to_string(),
                since: render(&frontier_of::<T>(state.since)),
            });
        }
        let mut out = Vec::new();
        let mut consolidated = true;
        let mut read = Ok(());
        for batch in state.batches.iter().filter(|b| b.lower <= as_of) {
            match read_hollow_at(machine, desc, batch, as_of, &mut out).await {
                Ok(in_order) => consolidated &= in_order,
                Err(error) => {
                    read = Err(error);
                    break;
                }
            }
        }
        match read {
            Ok(()) => {
                if !consolidated {
                    consolidate(&mut out);
                }
                return Ok((decode_times(out), frontier));
            }
            // Unpinned, a part may have been compacted away and deleted meanwhile.
            Err(error) if attempt < machine.cfg.io_attempts => {
                tracing::debug!(shard = %machine.shard, %error, "a peek lost a part; reading again");
            }
            Err(error) => return Err(error),
        }
    }
}
