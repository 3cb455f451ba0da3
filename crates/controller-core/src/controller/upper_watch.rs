//! Following the persist uppers of collections whose writer is outside the controller.
//!
//! A `DataSource::Other` collection (say, a materialized view a compute layer writes)
//! has no replica report and no txns shard to tell the controller its upper; nor,
//! while read-only, has any collection the previous controller still writes. One task
//! follows them all: each round it peeks at every watched shard once (without writing,
//! at most [`PEEK_CONCURRENCY`] at a time) and sends `Event::Upper` for every id whose
//! upper advanced. Ids may share a shard: a read-only controller's tables all follow
//! the txns shard, so 10k of them cost one peek a round.
//!
//! The cost is one task, and one head read per distinct shard per round, however many
//! collections there are; [`ControllerConfig::upper_watch_interval`](super::ControllerConfig::upper_watch_interval)
//! sets the round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use strata_controller_api::{Antichain, GlobalId, ShardId, StorageTimestamp};
use strata_persist_backend::{PersistClient, PersistError};
use timely::PartialOrder;
use tokio::sync::mpsc;

use super::storage_task::Event;

/// How many shards one round peeks at at once.
pub(crate) const PEEK_CONCURRENCY: usize = 16;

/// What the controller tells the watch.
#[derive(Debug)]
enum Request<T> {
    /// Follow `shard`'s upper for `id`, which is known to be at least `upper`.
    Watch {
        id: GlobalId,
        shard: ShardId,
        upper: Antichain<T>,
    },
    /// Stop following these ids.
    Unwatch(Vec<GlobalId>),
}

/// The controller's end of the upper watch. Dropping it stops the task; [`Self::stop`]
/// also waits until the task has let go of what it holds.
#[derive(Debug)]
pub(crate) struct UpperWatch<T> {
    tx: mpsc::UnboundedSender<Request<T>>,
    task: tokio::task::JoinHandle<()>,
    /// The ids watched, by the shard they follow (mirrors the task's set, so the
    /// controller can ask what it watches without a round trip).
    watched: BTreeMap<GlobalId, ShardId>,
}

impl<T: StorageTimestamp> UpperWatch<T> {
    /// Spawns the watch task; it sends what it learns to `events`.
    pub(crate) fn spawn(
        client: PersistClient,
        interval: Duration,
        events: mpsc::UnboundedSender<Event<T>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(client, interval, rx, events));
        UpperWatch {
            tx,
            task,
            watched: BTreeMap::new(),
        }
    }

    /// Stops the task and waits until it has ended (and dropped its persist client).
    pub(crate) async fn stop(self) {
        let UpperWatch { tx, task, .. } = self;
        drop(tx);
        // An error means the task panicked or was cancelled: it has ended either way.
        let _ = task.await;
    }

    /// Follows `shard`'s upper for `id` from `upper` on. Watching an id again moves it to
    /// the new shard.
    pub(crate) fn watch(&mut self, id: GlobalId, shard: ShardId, upper: Antichain<T>) {
        self.watched.insert(id, shard);
        let _ = self.tx.send(Request::Watch { id, shard, upper });
    }

    /// Stops following `ids`; ids not watched are ignored.
    pub(crate) fn unwatch(&mut self, ids: impl IntoIterator<Item = GlobalId>) {
        let ids: Vec<GlobalId> = ids
            .into_iter()
            .filter(|id| self.watched.remove(id).is_some())
            .collect();
        if !ids.is_empty() {
            let _ = self.tx.send(Request::Unwatch(ids));
        }
    }

    /// The ids watched now.
    pub(crate) fn ids(&self) -> impl Iterator<Item = GlobalId> + '_ {
        self.watched.keys().copied()
    }
}

/// The task's set: per shard, the ids following it and the upper each last reported.
#[derive(Debug)]
pub(crate) struct WatchSet<T> {
    shards: BTreeMap<ShardId, BTreeMap<GlobalId, Antichain<T>>>,
    by_id: BTreeMap<GlobalId, ShardId>,
}

impl<T: StorageTimestamp> Default for WatchSet<T> {
    fn default() -> Self {
        WatchSet {
            shards: BTreeMap::new(),
            by_id: BTreeMap::new(),
        }
    }
}

impl<T: StorageTimestamp> WatchSet<T> {
    /// Follows `shard` for `id`, known to be at `upper`.
    pub(crate) fn watch(&mut self, id: GlobalId, shard: ShardId, upper: Antichain<T>) {
        self.unwatch(&[id]);
        self.by_id.insert(id, shard);
        self.shards.entry(shard).or_default().insert(id, upper);
    }

    /// Stops following `ids`.
    pub(crate) fn unwatch(&mut self, ids: &[GlobalId]) {
        for id in ids {
            let Some(shard) = self.by_id.remove(id) else {
                continue;
            };
            if let Some(ids) = self.shards.get_mut(&shard) {
                ids.remove(id);
                if ids.is_empty() {
                    self.shards.remove(&shard);
                }
            }
        }
    }

    /// The shards to peek at this round.
    pub(crate) fn shards(&self) -> Vec<ShardId> {
        self.shards.keys().copied().collect()
    }

    /// Records that `shard`'s upper is `upper`; returns each id following it whose
    /// upper that advances. An upper never goes back: a stale peek changes nothing.
    pub(crate) fn observe(&mut self, shard: ShardId, upper: &Antichain<T>) -> Vec<GlobalId> {
        let Some(ids) = self.shards.get_mut(&shard) else {
            return Vec::new();
        };
        let mut advanced = Vec::new();
        for (id, known) in ids.iter_mut() {
            if PartialOrder::less_than(&*known, upper) {
                known.clone_from(upper);
                advanced.push(*id);
            }
        }
        advanced
    }

    /// Whether nothing is watched.
    pub(crate) fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// The ids following `shard`.
    pub(crate) fn ids_of(&self, shard: ShardId) -> BTreeSet<GlobalId> {
        self.shards
            .get(&shard)
            .map(|ids| ids.keys().copied().collect())
            .unwrap_or_default()
    }
}

async fn run<T: StorageTimestamp>(
    client: PersistClient,
    interval: Duration,
    mut requests: mpsc::UnboundedReceiver<Request<T>>,
    events: mpsc::UnboundedSender<Event<T>>,
) {
    let mut set = WatchSet::default();
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => apply(&mut set, request),
                None => return,
            },
            _ = ticker.tick() => {
                // Requests that arrived meanwhile count for this round.
                while let Ok(request) = requests.try_recv() {
                    apply(&mut set, request);
                }
                if set.is_empty() {
                    continue;
                }
                if round(&client, &mut set, &events).await.is_err() {
                    // The controller is gone.
                    return;
                }
            }
        }
    }
}

fn apply<T: StorageTimestamp>(set: &mut WatchSet<T>, request: Request<T>) {
    match request {
        Request::Watch { id, shard, upper } => set.watch(id, shard, upper),
        Request::Unwatch(ids) => set.unwatch(&ids),
    }
}

/// Peeks at every watched shard once and reports what advanced. `Err` once the
/// controller stopped listening.
async fn round<T: StorageTimestamp>(
    client: &PersistClient,
    set: &mut WatchSet<T>,
    events: &mpsc::UnboundedSender<Event<T>>,
) -> Result<(), ()> {
    let mut peeks = futures::stream::iter(set.shards())
        .map(|shard| {
            let client = client.clone();
            async move { (shard, client.peek_upper::<T>(shard).await) }
        })
        .buffer_unordered(PEEK_CONCURRENCY);
    while let Some((shard, peeked)) = peeks.next().await {
        let upper = match peeked {
            Ok(Some(upper)) => upper,
            // Not written yet: nothing to report.
            Ok(None) => continue,
            Err(PersistError::Tombstoned { .. }) => {
                // Finalized under us: its collection is gone, and its drop unwatches it.
                let ids: Vec<GlobalId> = set.ids_of(shard).into_iter().collect();
                set.unwatch(&ids);
                continue;
            }
            Err(error) => {
                // Transient (or the location is gone): the next round tries again.
                tracing::debug!(%shard, %error, "cannot peek at a watched upper");
                continue;
            }
        };
        for id in set.observe(shard, &upper) {
            events
                .send(Event::Upper(id, upper.clone()))
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strata_controller_api::Timestamp;

    use super::*;

    fn f(t: &[u64]) -> Antichain<Timestamp> {
        Antichain::from_iter(t.iter().map(|t| Timestamp::new(*t)))
    }

    fn shard(n: u8) -> ShardId {
        ShardId::from_bytes([n; 16])
    }

    #[test]
    fn ids_on_one_shard_advance_together_and_never_go_back() {
        let mut set = WatchSet::default();
        let (a, b) = (GlobalId::User(1), GlobalId::User(2));
        set.watch(a, shard(1), f(&[3]));
        set.watch(b, shard(1), f(&[5]));
        assert_eq!(set.shards(), vec![shard(1)]);
        // Only `a` is behind 4.
        assert_eq!(set.observe(shard(1), &f(&[4])), vec![a]);
        assert_eq!(set.observe(shard(1), &f(&[9])), vec![a, b]);
        // A stale peek (say, a slower replica of the store) moves nothing back.
        assert_eq!(set.observe(shard(1), &f(&[7])), Vec::<GlobalId>::new());
        assert_eq!(set.observe(shard(1), &f(&[])), vec![a, b]);
        assert_eq!(set.observe(shard(1), &f(&[])), Vec::<GlobalId>::new());
    }

    #[test]
    fn unwatching_the_last_id_of_a_shard_stops_peeking_at_it() {
        let mut set = WatchSet::default();
        let (a, b) = (GlobalId::User(1), GlobalId::User(2));
        set.watch(a, shard(1), f(&[0]));
        set.watch(b, shard(2), f(&[0]));
        set.unwatch(&[a, GlobalId::User(99)]);
        assert_eq!(set.shards(), vec![shard(2)]);
        assert_eq!(set.observe(shard(1), &f(&[5])), Vec::<GlobalId>::new());
        // Watching again moves an id to its new shard.
        set.watch(b, shard(3), f(&[0]));
        assert_eq!(set.shards(), vec![shard(3)]);
        assert!(set.ids_of(shard(2)).is_empty());
        set.unwatch(&[b]);
        assert!(set.is_empty());
    }
}
