//! [`SimControl`], the controller inside a simulation with helpers that drive it, and
//! [`Workload`], a team's own collections and checks run by a simulation.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use strata_controller_api::{
    Collections, GlobalId, InstanceId, Lifecycle, Reads, Row, StorageError, Tables, Timestamp,
};
use strata_controller_core::Controller;
use tokio::time::Instant;

use super::SimError;
use crate::harness::{ManualClock, consolidate};

/// The instance every simulated replica belongs to.
pub const SIM_INSTANCE: InstanceId = InstanceId(1);
/// How long one round of driving the controller waits for it to have work.
const ROUND: Duration = Duration::from_millis(5);

pub(crate) fn storage(context: &str) -> impl FnOnce(StorageError<Timestamp>) -> SimError + '_ {
    move |source| SimError::Diverged {
        what: format!("{context}: {source}"),
    }
}

/// The first time of `id`'s upper (`None` once it is closed), or what went wrong.
pub(crate) fn upper_time(ctl: &Controller<Timestamp>, id: GlobalId) -> Result<Option<u64>, String> {
    ctl.collection_frontiers(id)
        .map(|f| f.upper.as_option().map(Timestamp::as_millis))
        .map_err(|e| format!("{id}: {e}"))
}

/// Your own part of a simulation: collections you create on the simulated replicas and
/// what you check once the faults are over.
///
/// The built-in scenario uses ids `User(1)` (its table) and `User(10)` to `User(13)`
/// (its auction source); use ids from `User(100)` up. Both methods run inside the
/// simulation (on turmoil's controller client), so time there is simulated.
///
/// # Examples
///
/// ```no_run
/// use async_trait::async_trait;
/// use strata_controller_api::{
///     CollectionDescription, Collections, Datum, GlobalId, RelationDesc, Row, ScalarType,
///     StorageMetadata, Timestamp,
/// };
/// use strata_testkit::sim::{Sim, SimControl, SimError, Workload};
///
/// struct Ledger;
///
/// const LEDGER: GlobalId = GlobalId::User(100);
///
/// #[async_trait(?Send)]
/// impl Workload for Ledger {
///     async fn setup(&self, sim: &mut SimControl) -> Result<(), SimError> {
///         let desc = RelationDesc::builder()
///             .with_column("amount", ScalarType::Int64.nullable(false))
///             .finish();
///         sim.controller_mut()
///             .create_collections(
///                 &StorageMetadata::default(),
///                 Some(Timestamp::new(0)),
///                 vec![(LEDGER, CollectionDescription::table(desc))],
///             )
///             .await
///             .map_err(|e| SimError::Diverged { what: e.to_string() })?;
///         sim.append(LEDGER, vec![(Row::pack(&[Datum::Int64(5)]), 1)]).await?;
///         Ok(())
///     }
///
///     async fn check(&self, sim: &mut SimControl) -> Result<(), SimError> {
///         let upper = sim.wait_for_upper(LEDGER, 0).await?;
///         let rows = sim.snapshot(LEDGER, upper - 1).await?;
///         if rows.values().sum::<i64>() == 1 {
///             Ok(())
///         } else {
///             Err(SimError::Diverged { what: format!("the ledger holds {rows:?}") })
///         }
///     }
/// }
///
/// let report = Sim::builder().seed(3).workload(Ledger).build().run()?;
/// assert_eq!(report.seed, 3);
/// # Ok::<(), strata_testkit::sim::SimFailure>(())
/// ```
#[async_trait(?Send)]
pub trait Workload: Send + Sync + 'static {
    /// Runs once the controller is open, its replicas are connected and the built-in
    /// collections exist, as the faults begin: create your collections here (sources
    /// on [`SIM_INSTANCE`]) and write what you like.
    async fn setup(&self, sim: &mut SimControl) -> Result<(), SimError>;

    /// Runs after the built-in convergence and exactness checks passed: the fault plan
    /// is over and every replica serves the controller again. Wait for your uppers and
    /// compare your contents here; an error fails the seed.
    async fn check(&self, sim: &mut SimControl) -> Result<(), SimError>;
}

/// The controller of a simulation, with helpers that drive it while they wait.
///
/// Waits are bounded by the simulation's timeout
/// ([`SimBuilder::timeout`](super::SimBuilder::timeout)), in simulated time, and fail
/// with [`SimError::Diverged`] naming what they waited for and what they last saw.
pub struct SimControl {
    controller: Controller<Timestamp>,
    timeout: Duration,
    clock: ManualClock,
}

impl std::fmt::Debug for SimControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimControl")
            .field("epoch", &self.controller.epoch())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SimControl {
    pub(crate) fn new(
        controller: Controller<Timestamp>,
        timeout: Duration,
        clock: ManualClock,
    ) -> SimControl {
        SimControl {
            controller,
            timeout,
            clock,
        }
    }

    /// The controller.
    pub fn controller(&self) -> &Controller<Timestamp> {
        &self.controller
    }

    /// The controller, for any controller-api call.
    pub fn controller_mut(&mut self) -> &mut Controller<Timestamp> {
        &mut self.controller
    }

    /// The simulation clock's time in milliseconds: the time replicas bind source data
    /// at. It follows simulated time.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Drives the controller (applies what is pending, processes replica responses)
    /// for at most `round` of simulated time.
    ///
    /// # Errors
    ///
    /// [`SimError::Diverged`] if processing a response fails.
    pub async fn drive(&mut self, round: Duration) -> Result<(), SimError> {
        self.controller.apply_pending();
        if tokio::time::timeout(round, self.controller.ready())
            .await
            .is_ok()
        {
            while self
                .controller
                .process()
                .map_err(storage("processing replica responses"))?
                .is_some()
            {}
        }
        Ok(())
    }

    /// Drives the controller until `check` returns `Ok`, and returns its value.
    /// `check` returns `Err(observation)` while the condition does not hold; the last
    /// observation goes into the timeout error with `description`.
    ///
    /// # Errors
    ///
    /// [`SimError::Diverged`] after the timeout, or if processing a response fails.
    pub async fn wait_until<R>(
        &mut self,
        description: &str,
        mut check: impl FnMut(&Controller<Timestamp>) -> Result<R, String>,
    ) -> Result<R, SimError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.controller.apply_pending();
            let seen = match check(&self.controller) {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            if Instant::now() >= deadline {
                return Err(SimError::Diverged {
                    what: format!(
                        "timed out after {:?} of simulated time waiting for {description}; last saw {seen}",
                        self.timeout
                    ),
                });
            }
            self.drive(ROUND).await?;
        }
    }

    /// Waits until the upper of `id` passes `t` (milliseconds) and returns the upper's
    /// time.
    ///
    /// # Errors
    ///
    /// [`SimError::Diverged`] after the timeout, naming `id`, `t` and the last upper.
    pub async fn wait_for_upper(&mut self, id: GlobalId, t: u64) -> Result<u64, SimError> {
        self.wait_until(
            &format!("the upper of {id} to pass {t}"),
            |ctl| match upper_time(ctl, id)? {
                Some(upper) if upper > t => Ok(upper),
                Some(upper) => Err(format!("upper {upper}")),
                None => Err("closed".into()),
            },
        )
        .await
    }

    /// Appends `updates` to the table `id` at its upper, waits until the write is
    /// durable, and returns the write's time (a snapshot as of it sees the rows).
    ///
    /// # Errors
    ///
    /// [`SimError::Diverged`] if the controller refuses the write.
    pub async fn append(
        &mut self,
        id: GlobalId,
        updates: Vec<(Row, i64)>,
    ) -> Result<u64, SimError> {
        let deadline = Instant::now() + self.timeout;
        let mut at = None;
        loop {
            self.controller.apply_pending();
            let write = match at.take() {
                Some(at) => at,
                None => upper_time(&self.controller, id)
                    .map_err(|what| SimError::Diverged { what })?
                    .ok_or_else(|| SimError::Diverged {
                        what: format!("{id} is closed"),
                    })?,
            };
            let result = match self.controller.append_table(
                Timestamp::new(write),
                Timestamp::new(write.saturating_add(1)),
                vec![(id, updates.clone())],
            ) {
                Ok(pending) => pending.await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    self.controller.apply_pending();
                    return Ok(write);
                }
                // The upper moved on before the controller told us: write at it.
                Err(StorageError::UpdateBeforeUpper { upper, .. }) if Instant::now() < deadline => {
                    at = upper.as_option().map(Timestamp::as_millis);
                }
                Err(e) => return Err(storage(&format!("appending to {id} at {write}"))(e)),
            }
        }
    }

    /// The contents of `id` as of `as_of`, consolidated (rows with their counts).
    ///
    /// # Errors
    ///
    /// [`SimError::Diverged`] if the read fails (for example before the since; hold
    /// it with a read policy).
    pub async fn snapshot(
        &mut self,
        id: GlobalId,
        as_of: u64,
    ) -> Result<BTreeMap<Row, i64>, SimError> {
        let rows = self
            .controller
            .snapshot(id, Timestamp::new(as_of))
            .await
            .map_err(storage(&format!("reading {id} as of {as_of}")))?;
        Ok(consolidate(rows))
    }
}
