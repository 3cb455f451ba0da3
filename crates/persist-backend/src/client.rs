//! [`PersistClient`]: opens a location and hands out handles to its shards.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use strata_controller_api::{Antichain, RelationDesc, ShardId, StorageTimestamp};

use crate::cmds;
use crate::config::PersistConfig;
use crate::consensus::{self, Consensus};
use crate::critical::SinceHandle;
use crate::error::Result;
use crate::inspect::ShardInspect;
use crate::lease::{Heartbeat, Holder};
use crate::location::Location;
use crate::machine::{Machine, ShardCache};
use crate::maintenance::{self, GcReport};
use crate::read::{Pins, ReadHandle};
use crate::state::State;
use crate::update::{frontier_code, frontier_of, time_code};
use crate::write::WriteHandle;

#[derive(Debug)]
struct Inner {
    loc: Location,
    consensus: Arc<dyn Consensus>,
    cfg: Arc<PersistConfig>,
    caches: Mutex<HashMap<ShardId, Arc<ShardCache>>>,
}

/// A client of one location. Cheap to clone; clones share a cache of shard states, so
/// handles of one client see each other's writes without a read.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use strata_controller_api::{Antichain, Datum, RelationDesc, Row, ScalarType, ShardId, Timestamp};
/// use strata_persist_backend::PersistClient;
///
/// let client = PersistClient::open("mem://doc-example").await.unwrap();
/// let shard = ShardId::from_bytes([9; 16]);
/// let desc = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
/// let mut write = client.open_writer::<Timestamp>(shard, desc.clone()).await.unwrap();
/// let row = Row::pack(&[Datum::Int64(7)]);
/// let updates = vec![(Ok(row.clone()), Timestamp::new(0), 1)];
/// let from = Antichain::from_elem(Timestamp::new(0));
/// let to = Antichain::from_elem(Timestamp::new(1));
/// write.compare_and_append(&updates, from, to).await.unwrap().unwrap();
///
/// let mut read = client.open_leased_reader::<Timestamp>(shard, desc).await.unwrap();
/// assert_eq!(read.snapshot(&Timestamp::new(0)).await.unwrap(), updates);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct PersistClient {
    inner: Arc<Inner>,
}

impl PersistClient {
    /// Opens a location URL (`mem://name`, `file:///path`, `s3://bucket/prefix`) with
    /// the default configuration.
    pub async fn open(url: &str) -> Result<PersistClient> {
        Self::open_with_config(url, PersistConfig::default()).await
    }

    /// Opens a location URL with `cfg`.
    pub async fn open_with_config(url: &str, cfg: PersistConfig) -> Result<PersistClient> {
        Ok(Self::from_location(Location::open(url).await?, cfg))
    }

    /// A client for inspection: the location is opened with
    /// [`Location::open_read_only`], and a client that only calls [`Self::inspect`],
    /// [`Self::peek_latest`] and [`Self::is_finalized`] writes nothing anywhere.
    pub async fn open_read_only(url: &str) -> Result<PersistClient> {
        let cfg = PersistConfig {
            background_maintenance: false,
            ..PersistConfig::default()
        };
        Ok(Self::from_location(
            Location::open_read_only(url).await?,
            cfg,
        ))
    }

    /// A client over an already opened location (for example a fault-injecting store).
    pub fn from_location(loc: Location, cfg: PersistConfig) -> PersistClient {
        let consensus = consensus::open(&loc);
        PersistClient {
            inner: Arc::new(Inner {
                loc,
                consensus,
                cfg: Arc::new(cfg),
                caches: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A client of the same location with another configuration (and its own cache).
    pub fn with_config(&self, cfg: PersistConfig) -> PersistClient {
        Self::from_location(self.inner.loc.clone(), cfg)
    }

    /// The opened location.
    pub fn location(&self) -> &Location {
        &self.inner.loc
    }

    /// The URL this client was opened from.
    pub fn location_url(&self) -> &str {
        &self.inner.loc.url
    }

    /// The configuration.
    pub fn config(&self) -> &PersistConfig {
        &self.inner.cfg
    }

    pub(crate) fn machine(&self, shard: ShardId) -> Arc<Machine> {
        let cache = {
            let mut caches = self.inner.caches.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                caches
                    .entry(shard)
                    .or_insert_with(|| Arc::new(ShardCache::new())),
            )
        };
        Arc::new(Machine {
            shard,
            consensus: self.inner.consensus.clone(),
            loc: self.inner.loc.clone(),
            cfg: Arc::clone(&self.inner.cfg),
            cache,
        })
    }

    pub(crate) async fn init<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: Option<&RelationDesc>,
    ) -> Result<Arc<Machine>> {
        Ok(self.init_state::<T>(shard, desc).await?.0)
    }

    /// [`Self::init`], with the state it read or created.
    async fn init_state<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: Option<&RelationDesc>,
    ) -> Result<(Arc<Machine>, Arc<State>)> {
        let machine = self.machine(shard);
        let schema = desc
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .unwrap_or_default();
        let state = machine.init(time_code(&T::minimum()), schema).await?;
        if state.tombstone {
            return Err(crate::PersistError::Tombstoned { shard });
        }
        Ok((machine, state))
    }

    /// Registers a writer of `shard` (creating the shard if it does not exist yet).
    /// Rows it writes must match `desc`.
    pub async fn open_writer<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: RelationDesc,
    ) -> Result<WriteHandle<T>> {
        self.open_writer_with(shard, desc, true).await
    }

    /// A writer with no task renewing its lease: registered now, its registration
    /// lasts one writer lease past its last append, and dropping it writes nothing.
    /// An append after the lease lapsed fails with
    /// [`PersistError::LeaseExpired`](crate::PersistError::LeaseExpired); the caller
    /// registers again ([`WriteHandle::register`]) and retries. For writers that are
    /// many and mostly idle (the txns shard's data shards): an idle one costs no store
    /// request.
    pub(crate) async fn open_passive_writer<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: RelationDesc,
    ) -> Result<WriteHandle<T>> {
        self.open_writer_with(shard, desc, false).await
    }

    async fn open_writer_with<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: RelationDesc,
        renew: bool,
    ) -> Result<WriteHandle<T>> {
        let machine = self.init::<T>(shard, Some(&desc)).await?;
        let writer_id = format!("w{}", uuid::Uuid::new_v4().simple());
        let heartbeat = if renew {
            Heartbeat::start(Arc::clone(&machine), Holder::Writer(writer_id.clone()))
        } else {
            Heartbeat::none()
        };
        let mut handle = WriteHandle {
            fence: None,
            machine,
            desc,
            writer_id,
            upper: Antichain::new(),
            _heartbeat: heartbeat,
            _time: PhantomData,
        };
        handle.register().await?;
        Ok(handle)
    }

    /// Registers a leased reader of `shard` at its current since.
    pub async fn open_leased_reader<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: RelationDesc,
    ) -> Result<ReadHandle<T>> {
        let machine = self.init::<T>(shard, Some(&desc)).await?;
        let reader_id = format!("r{}", uuid::Uuid::new_v4().simple());
        let (lease, now) = (
            machine.cfg.reader_lease.as_millis() as u64,
            machine.cfg.now_ms(),
        );
        let (_, since) = machine
            .apply_plain(|s: &State| cmds::register_leased_reader(s, &reader_id, lease, now))
            .await?;
        let heartbeat = Heartbeat::start(Arc::clone(&machine), Holder::Reader(reader_id.clone()));
        Ok(ReadHandle {
            machine,
            desc,
            reader_id,
            since: frontier_of(since),
            pins: Arc::new(Pins::default()),
            _heartbeat: heartbeat,
        })
    }

    /// Opens (registering on first use, with opaque 0 at the shard's since) the critical
    /// reader `reader_id` of `shard`.
    pub async fn open_critical_since<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        reader_id: &str,
    ) -> Result<SinceHandle<T>> {
        // The state init just read is fresh: a reader registered already (a restart)
        // needs no second read.
        let (machine, state) = self.init_state::<T>(shard, None).await?;
        let (_, (opaque, since)) = machine
            .apply_from(Some(state), |s: &State| {
                cmds::register_critical_reader(s, reader_id)
            })
            .await?
            .map_err(|e| machine.cmd_error(e))?;
        Ok(SinceHandle {
            machine,
            reader_id: reader_id.to_owned(),
            opaque,
            since: frontier_of(since),
            _time: PhantomData,
        })
    }

    /// Names `shard` for people (inspection shows the name; nothing else reads it).
    /// Costs a compare-and-set only when the name changes, and no I/O when this
    /// process's latest read of the shard already has it; the shard must exist.
    pub async fn set_shard_name(&self, shard: ShardId, name: &str) -> Result<()> {
        let machine = self.machine(shard);
        // A state this process just read already carrying the name needs no I/O: the
        // common case of a controller re-opening its shards at every start.
        if machine.cached().is_some_and(|s| s.name == name) {
            return Ok(());
        }
        machine
            .apply_plain(|s: &State| cmds::set_name(s, name))
            .await?;
        Ok(())
    }

    /// The shard's current upper, read from storage.
    pub async fn fetch_recent_upper<T: StorageTimestamp>(
        &self,
        shard: ShardId,
    ) -> Result<Antichain<T>> {
        let machine = self.init::<T>(shard, None).await?;
        Ok(frontier_of(machine.fetch().await?.upper))
    }

    /// Records `new` as the shard's relation: a later version of the current one, with
    /// nullable columns added at the end (the same version changes nothing). From then
    /// on parts written under either version read under both: an older part gets NULL
    /// in the added columns, and a reader of the older version leaves them out.
    ///
    /// # Errors
    ///
    /// [`PersistError::IncompatibleSchema`](crate::PersistError::IncompatibleSchema) for
    /// any other change, [`PersistError::Tombstoned`](crate::PersistError::Tombstoned)
    /// for a finalized shard.
    pub async fn evolve_schema(&self, shard: ShardId, new: &RelationDesc) -> Result<()> {
        let machine = self.machine(shard);
        machine
            .apply_plain(|s: &State| cmds::evolve_schema(s, new))
            .await?;
        Ok(())
    }

    /// The shard's current upper, read from storage without writing anything; `None`
    /// if the shard was never initialized. A state this client already holds is not
    /// decoded again, so polling an idle shard costs one head read.
    pub async fn peek_upper<T: StorageTimestamp>(
        &self,
        shard: ShardId,
    ) -> Result<Option<Antichain<T>>> {
        match self.machine(shard).fetch().await {
            Ok(state) => Ok(Some(frontier_of(state.upper))),
            Err(crate::PersistError::NotInitialized { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Waits until `shard`'s upper is beyond `frontier` and returns that upper, without
    /// registering a reader or writing anything.
    ///
    /// It subscribes to the states this client sees: an append through any handle of
    /// this client (or a clone) wakes it at once. Writes of other processes are seen by
    /// reading the shard every [`PersistConfig::poll_interval`]. A shard that does not
    /// exist yet is waited for like one whose upper is at the minimum.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidUsage`](crate::PersistError::InvalidUsage) for the empty
    /// `frontier`, which no upper is ever past;
    /// [`PersistError::Tombstoned`](crate::PersistError::Tombstoned) once the shard is
    /// finalized.
    pub async fn wait_for_upper_past<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        frontier: &Antichain<T>,
    ) -> Result<Antichain<T>> {
        let machine = self.machine(shard);
        let state = crate::read::wait_for_upper_past(&machine, frontier_code(frontier)).await?;
        Ok(frontier_of(state.upper))
    }

    /// Runs up to `max_steps` compaction merges; returns how many were made.
    pub async fn compact(&self, shard: ShardId, max_steps: usize) -> Result<usize> {
        maintenance::compact(&self.machine(shard), max_steps).await
    }

    /// Waits until background maintenance (compaction and GC) that appends of this
    /// client started on `shard` has finished. Returns at once when none runs.
    pub async fn maintenance_idle(&self, shard: ShardId) {
        self.machine(shard).maintenance_idle().await;
    }

    /// Waits until no background maintenance that this client (or a clone of it)
    /// started runs on any shard: what a host calls before it exits, so that no
    /// compaction or GC is cut off half way. Bound it with a timeout if the store may
    /// hang.
    pub async fn all_maintenance_idle(&self) {
        // Only shards whose maintenance ever ran here have any to wait for.
        let maintained: Vec<Arc<ShardCache>> = {
            let caches = self.inner.caches.lock().unwrap_or_else(|p| p.into_inner());
            caches
                .values()
                .filter(|cache| cache.maintained())
                .cloned()
                .collect()
        };
        for cache in maintained {
            cache.maintenance_idle().await;
        }
    }

    /// Runs one garbage collection of `shard`.
    pub async fn gc(&self, shard: ShardId) -> Result<GcReport> {
        maintenance::gc(&self.machine(shard)).await
    }

    /// Finalizes a shard whose since and upper are both `[]`: it becomes a tombstone and
    /// its parts are deleted. Later operations on it fail with
    /// [`PersistError::Tombstoned`](crate::PersistError::Tombstoned). Idempotent.
    pub async fn finalize_shard(&self, shard: ShardId) -> Result<()> {
        maintenance::finalize(&self.machine(shard)).await
    }

    /// The shard's state: its frontiers, batches, readers, writers and garbage.
    pub async fn inspect_shard(&self, shard: ShardId) -> Result<ShardInspect> {
        let state = self.machine(shard).fetch().await?;
        Ok(ShardInspect::from_state(&state))
    }

    /// [`PersistClient::inspect_shard`] as JSON, for callers that pass it on
    /// (`inspect_persist_state`); code that reads fields uses the typed form.
    pub async fn inspect(&self, shard: ShardId) -> Result<serde_json::Value> {
        let inspect = self.inspect_shard(shard).await?;
        // A struct of strings, numbers, lists and a JSON value always serializes.
        Ok(serde_json::to_value(inspect).unwrap_or(serde_json::Value::Null))
    }

    /// The shard's contents at the latest time they are complete for (its upper minus
    /// one), and that upper, read without registering a reader or writing anything:
    /// for inspecting locations that are read-only or whose writers must not be
    /// disturbed. Nothing holds the since meanwhile, so a part that GC deletes during
    /// the read makes it start over from a fresh state, at most `io_attempts` times.
    /// A shard whose upper is still at its lower has no complete time: its contents
    /// are empty.
    ///
    /// # Errors
    ///
    /// [`PersistError::NotInitialized`](crate::PersistError::NotInitialized) if the shard was never written; a closed shard
    /// (upper `[]`) is [`PersistError::InvalidUsage`](crate::PersistError::InvalidUsage).
    pub async fn peek_latest<T: StorageTimestamp>(
        &self,
        shard: ShardId,
        desc: &RelationDesc,
    ) -> Result<(Vec<crate::Update<T>>, Antichain<T>)> {
        let machine = self.machine(shard);
        crate::read::peek_latest(&machine, desc).await
    }

    /// Whether `shard` is finalized: tombstoned, so it can never be written or read
    /// again. A shard that was never written is not finalized.
    pub async fn is_finalized(&self, shard: ShardId) -> Result<bool> {
        match self.machine(shard).fetch().await {
            Ok(state) => Ok(state.tombstone),
            Err(crate::PersistError::NotInitialized { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The keys of every part object stored for `shard`, referenced or not (for tests
    /// and operators).
    pub async fn list_part_keys(&self, shard: ShardId) -> Result<Vec<String>> {
        let machine = self.machine(shard);
        let prefix = machine.loc.prefix_of(crate::paths::Prefix::Parts(shard));
        let metas = crate::blob::list(machine.loc.store.as_ref(), &prefix).await?;
        let mut keys: Vec<String> = metas
            .iter()
            .filter_map(|m| machine.loc.relative(&m.location))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The keys of the parts the shard's current state references.
    pub async fn referenced_part_keys(&self, shard: ShardId) -> Result<Vec<String>> {
        let state = self.machine(shard).fetch().await?;
        let mut keys: Vec<String> = state
            .live_parts()
            .map(|p| p.key.clone())
            .chain(state.garbage.iter().map(|g| g.key.clone()))
            .collect();
        keys.sort();
        Ok(keys)
    }
}
