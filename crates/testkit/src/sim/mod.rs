//! Simulation (feature `sim`): a controller and replicas on [turmoil] hosts, talking
//! over instance-client's real gRPC transport (tonic), through a simulated network
//! that partitions, stalls, crashes and bounces them on a seeded plan.
//!
//! One run ([`Sim::run`]) is one seed:
//! - the turmoil client `controller` opens a real [`Controller`] with the durable
//!   catalog on a fresh `mem://` location and connects replicas `replica-0`,
//!   `replica-1`, … over gRPC ([`GrpcConnector::with_dialer`] dials turmoil TCP);
//! - each turmoil host `replica-i` serves a real
//!   [`ReplicaServer`](strata_replica::server::ReplicaServer) with instance-client's
//!   `grpc::serve` on a turmoil listener;
//! - the controller creates a table and an auction load-generator source (ingestion,
//!   remap collection and its subsources) on the replicas, and appends rows to the
//!   table while the [`FaultPlan`] runs (by default [`FaultPlan::random`] from the
//!   seed: partitions with repairs, sometimes stalls, a replica crash with its
//!   restart, sometimes a bounce);
//! - once the plan is over it checks convergence: every replica's running process
//!   admitted the controller's epoch and is connected to it over a link not cut
//!   since, the uppers of every source collection pass the clock's time after the
//!   faults, and the table's upper passes its last write; then
//!   exactness: the table holds exactly the appended rows, and every source output
//!   holds exactly what the deterministic generator produces for the offsets the
//!   remap collection binds (a duplicated or lost row fails the seed);
//! - a [`Workload`] of your own, if given, creates its collections as the faults begin
//!   and checks them after the built-in checks, through [`SimControl`].
//!
//! Storage is not what the simulation partitions: every host shares one in-memory
//! persist location (as if S3 never failed). Use
//! [`FaultyObjectStore`](crate::faults::FaultyObjectStore) in a harness for store
//! faults.
//!
//! # How deterministic a seed is
//!
//! A seed fixes the fault plan (which fault, on which replica, at which simulated
//! millisecond), turmoil's network randomness (message latencies) and the source's
//! data, so a failing seed replays the same faults against the same data. It does not
//! fix the interleaving: the replicas' timely workers, their command threads and their
//! persist adapters run on real threads in real time (they block, and turmoil's
//! runtimes are single-threaded and paused), and the controller uses random nonces.
//! The driver steps turmoil one simulated millisecond at a time and never lets
//! simulated time run ahead of real time (it sleeps when it is ahead; when steps are
//! slow it lags, then catches up), so the controller's timers (reconnect backoff,
//! waits) never fire before the replicas had the real time to act. A seed is therefore
//! a reproducible *scenario*, not a bit-for-bit replay: which offsets are bound at
//! which time, and how many, differ from run to run (the checks compare against what
//! was bound), and a bug that depends on a narrow race may need a few runs of its seed
//! (or the soak run, `STRATA_SOAK=1`) to show again.
//!
//! A partition in turmoil drops segments that are never retransmitted, which would
//! leave a connection hanging forever after the repair; the simulated network cuts the
//! connections of a partitioned link instead (as TCP's retransmission timeout would),
//! and refuses new ones until the repair. A [`Fault::Hold`] is the stall that
//! connections survive.
//!
//! # Seeds from the environment
//!
//! [`seeds_from_env`] gives the seeds a test should run: only `STRATA_SIM_SEED=<n>`
//! if that is set, otherwise [`DEFAULT_SEEDS`] seeds, or [`SOAK_SEEDS`] with
//! `STRATA_SOAK=1` (as `cargo xtask test --soak` sets). [`run_seeds`] runs them on a
//! few threads; a [`SimFailure`] names its seed and the variable that re-runs it.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use strata_testkit::sim::{Fault, FaultPlan, Sim};
//!
//! // A seeded random plan on two replicas.
//! let report = Sim::builder().seed(7).replicas(2).build().run()?;
//! assert_eq!(report.seed, 7);
//! assert!(report.offsets > 0);
//!
//! // A plan of your own: cut replica 0 off, then crash replica 1 while it is away.
//! let plan = FaultPlan::new()
//!     .at(Duration::from_millis(100), Fault::Partition { replica: 0 })
//!     .at(Duration::from_millis(200), Fault::Crash { replica: 1 })
//!     .at(Duration::from_millis(400), Fault::Repair { replica: 0 })
//!     .at(Duration::from_millis(500), Fault::Restart { replica: 1 });
//! let report = Sim::builder().seed(1).faults(plan).table_rows(20).build().run()?;
//! assert_eq!(report.faults_applied, 4);
//! # Ok::<(), strata_testkit::sim::SimFailure>(())
//! ```
//!
//! `run` drives its own runtimes: call it from a plain `#[test]`, not inside a tokio
//! runtime.
//!
//! [`Controller`]: strata_controller_core::Controller
//! [`GrpcConnector::with_dialer`]: strata_instance_client::grpc::GrpcConnector::with_dialer

mod control;
mod hosts;
mod net;
mod plan;
mod scenario;
mod seeds;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use self::control::{SIM_INSTANCE, SimControl, Workload};
use self::hosts::{ReplicaHost, ReplicaSettings};
use self::net::Links;
pub use self::plan::{Fault, FaultPlan};
use self::scenario::Scenario;
pub use self::seeds::{
    DEFAULT_SEEDS, SEED_ENV, SOAK_ENV, SOAK_SEEDS, rerun_hint, run_seeds, seeds_from_env,
};
use crate::harness::ManualClock;

/// The simulation clock's time at the start, in milliseconds: replicas bind source
/// data at `CLOCK_START` plus the simulated time.
const CLOCK_START: u64 = 1_000_000;
/// The simulated time of one step.
const TICK: Duration = Duration::from_millis(1);
/// The name of the controller's turmoil client.
const CONTROLLER: &str = "controller";

/// What went wrong in one simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The simulation could not be set up (a replica did not start).
    #[error("setup failed: {reason}")]
    Setup {
        /// What went wrong.
        reason: String,
    },
    /// The system did not converge, or converged to the wrong contents.
    #[error("{what}")]
    Diverged {
        /// What was checked and what was seen.
        what: String,
    },
    /// turmoil reported an error (a host's software failed).
    #[error("the simulation failed: {reason}")]
    Simulation {
        /// turmoil's error.
        reason: String,
    },
}

/// A failed seed: the seed, what went wrong, and (in its message) how to re-run it.
#[derive(Debug, thiserror::Error)]
#[error("simulation seed {seed} failed: {error}\n{}", rerun_hint(*seed))]
pub struct SimFailure {
    /// The seed that failed.
    pub seed: u64,
    /// What went wrong.
    pub error: SimError,
}

/// What a converged simulation saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// The controller's epoch.
    pub epoch: u64,
    /// The time the source's collections were read at (all their uppers passed it).
    pub as_of: u64,
    /// How many source offsets were bound as of `as_of`, all checked exactly.
    pub offsets: u64,
    /// How many rows the table holds, all checked exactly.
    pub table_rows: u64,
    /// How many fault events were applied.
    pub faults_applied: usize,
    /// How many times each replica process started (1, plus 1 per restart or bounce).
    pub replica_starts: Vec<u64>,
    /// Simulated time until the checks passed.
    pub simulated: Duration,
    /// Real time of the run, replica start-up included.
    pub real: Duration,
}

/// Builds a [`Sim`]; see the [module docs](self).
#[derive(Clone)]
pub struct SimBuilder {
    seed: u64,
    replicas: usize,
    workers: usize,
    plan: Option<FaultPlan>,
    fault_window: Duration,
    table_rows: u64,
    timeout: Duration,
    max_latency: Duration,
    workload: Option<Arc<dyn Workload>>,
}

impl std::fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBuilder")
            .field("seed", &self.seed)
            .field("replicas", &self.replicas)
            .field("workers", &self.workers)
            .field("plan", &self.plan)
            .field("fault_window", &self.fault_window)
            .field("table_rows", &self.table_rows)
            .field("timeout", &self.timeout)
            .field("max_latency", &self.max_latency)
            .field("workload", &self.workload.is_some())
            .finish()
    }
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            seed: 0,
            replicas: 2,
            workers: 1,
            plan: None,
            fault_window: Duration::from_millis(800),
            table_rows: 8,
            timeout: Duration::from_secs(20),
            max_latency: Duration::from_millis(5),
            workload: None,
        }
    }
}

impl SimBuilder {
    /// The seed of the fault plan, the network and the source (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many replicas the instance has (default 2, at least 1).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Timely workers per replica (default 1, at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The faults to apply (default: [`FaultPlan::random`] from the seed over the
    /// fault window). Faults naming a replica the simulation lacks are ignored.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.plan = Some(plan);
        self
    }

    /// The simulated time the random fault plan spreads over (default 800 ms).
    pub fn fault_window(mut self, window: Duration) -> Self {
        self.fault_window = window;
        self
    }

    /// How many rows the controller appends to the table during the faults (default 8).
    pub fn table_rows(mut self, rows: u64) -> Self {
        self.table_rows = rows;
        self
    }

    /// How long, in simulated time, each convergence wait may take (default 20 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The highest latency of one network message (default 5 ms; turmoil draws each
    /// message's latency from the seed).
    pub fn max_latency(mut self, latency: Duration) -> Self {
        self.max_latency = latency;
        self
    }

    /// Runs `workload` too: its `setup` once the built-in collections exist, its
    /// `check` after the built-in checks passed (see [`Workload`]).
    pub fn workload(mut self, workload: impl Workload) -> Self {
        self.workload = Some(Arc::new(workload));
        self
    }

    /// The simulation, ready to [`run`](Sim::run).
    pub fn build(self) -> Sim {
        let plan = self
            .plan
            .clone()
            .unwrap_or_else(|| FaultPlan::random(self.seed, self.replicas, self.fault_window));
        Sim {
            settings: self,
            plan,
        }
    }
}

/// One seeded simulation; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Sim {
    settings: SimBuilder,
    plan: FaultPlan,
}

impl Sim {
    /// A builder with the defaults: seed 0, two replicas of one worker, a random plan
    /// over 800 ms, eight table rows, 20 s waits.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.settings.seed
    }

    /// The faults this simulation applies.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Runs the simulation to convergence and checks it.
    ///
    /// Blocks: it drives turmoil's runtimes and starts replica threads, so call it
    /// outside any tokio runtime (a plain `#[test]`).
    ///
    /// # Errors
    ///
    /// A [`SimFailure`] with the seed: [`SimError::Setup`] if a replica does not
    /// start, [`SimError::Diverged`] if a wait timed out or contents are not exact,
    /// [`SimError::Simulation`] if a host's software failed.
    pub fn run(self) -> Result<SimReport, SimFailure> {
        let seed = self.settings.seed;
        tracing::info!(seed, plan = ?self.plan, "simulation starting; re-run with {SEED_ENV}={seed}");
        let result = self.run_inner();
        match &result {
            Ok(report) => tracing::info!(seed, ?report, "simulation converged"),
            Err(error) => tracing::warn!(seed, %error, "simulation failed"),
        }
        result.map_err(|error| SimFailure { seed, error })
    }

    fn run_inner(self) -> Result<SimReport, SimError> {
        let started = Instant::now();
        let settings = &self.settings;
        let clock = ManualClock::new(CLOCK_START);
        let replica_settings = ReplicaSettings {
            location: format!(
                "mem://strata-sim-{}-{}",
                settings.seed,
                uuid::Uuid::new_v4().simple()
            ),
            workers: settings.workers,
            clock: clock.clone(),
        };
        let links = Links::default();
        let mut hosts: Vec<ReplicaHost> = (0..settings.replicas).map(ReplicaHost::new).collect();
        for host in &mut hosts {
            host.start(&replica_settings)?;
        }

        let mut sim = turmoil::Builder::new()
            .rng_seed(settings.seed)
            .tick_duration(TICK)
            // The scenario's own waits (each bounded by the timeout) say what they
            // waited for; this only bounds a run stuck elsewhere.
            .simulation_duration(self.plan.end() + settings.timeout * 8 + Duration::from_secs(10))
            .min_message_latency(Duration::ZERO)
            .max_message_latency(settings.max_latency)
            .build();
        for host in &hosts {
            sim.host(host.name(), host.software(&links));
        }
        let outcome = Rc::new(RefCell::new(None));
        let scenario = Scenario {
            seed: settings.seed,
            location: replica_settings.location.clone(),
            replicas: settings.replicas,
            links: links.clone(),
            fences: hosts.iter().map(ReplicaHost::fence_probe).collect(),
            clock: clock.clone(),
            healed_at: CLOCK_START + millis(self.plan.end()),
            table_rows: settings.table_rows,
            timeout: settings.timeout,
            workload: settings.workload.clone(),
        };
        let slot = Rc::clone(&outcome);
        sim.client(CONTROLLER, async move {
            let result = scenario.run().await;
            *slot.borrow_mut() = Some(result);
            Ok(())
        });

        let mut events = self
            .plan
            .events()
            .iter()
            .filter(|(_, fault)| fault.replica() < settings.replicas)
            .peekable();
        let mut applied = 0;
        let paced_from = Instant::now();
        loop {
            let now = sim.elapsed();
            clock.set(CLOCK_START + millis(now));
            while let Some((_, fault)) = events.next_if(|(at, _)| *at <= now) {
                tracing::info!(seed = settings.seed, at = ?now, ?fault, "fault");
                apply(&mut sim, &mut hosts, &links, &replica_settings, *fault)?;
                applied += 1;
            }
            let finished = sim.step().map_err(|e| SimError::Simulation {
                reason: e.to_string(),
            })?;
            if finished {
                break;
            }
            // Keep simulated time from running ahead of real time.
            let ahead = sim.elapsed().saturating_sub(paced_from.elapsed());
            if ahead > Duration::from_millis(2) {
                std::thread::sleep(ahead);
            }
        }
        let simulated = sim.elapsed();
        drop(sim);
        let result = outcome.borrow_mut().take();
        let mut report = result.unwrap_or_else(|| {
            Err(SimError::Simulation {
                reason: "the controller finished without a result".into(),
            })
        })?;
        report.faults_applied = applied;
        report.replica_starts = hosts.iter().map(ReplicaHost::starts).collect();
        report.simulated = simulated;
        drop(hosts);
        report.real = started.elapsed();
        Ok(report)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Applies one fault between two steps of the simulation.
fn apply(
    sim: &mut turmoil::Sim<'_>,
    hosts: &mut [ReplicaHost],
    links: &Links,
    settings: &ReplicaSettings,
    fault: Fault,
) -> Result<(), SimError> {
    let Some(host) = hosts.get_mut(fault.replica()) else {
        return Ok(());
    };
    let name = host.name();
    match fault {
        Fault::Partition { .. } => {
            sim.partition(CONTROLLER, name.as_str());
            links.cut(&name);
        }
        Fault::Repair { .. } => sim.repair(CONTROLLER, name.as_str()),
        Fault::Hold { .. } => sim.hold(CONTROLLER, name.as_str()),
        Fault::Release { .. } => sim.release(CONTROLLER, name.as_str()),
        Fault::Crash { .. } => crash(sim, host, links),
        Fault::Restart { .. } => {
            if !host.is_running() {
                host.start(settings)?;
                sim.bounce(name.as_str());
            }
        }
        Fault::Bounce { .. } => {
            crash(sim, host, links);
            host.start(settings)?;
            sim.bounce(name.as_str());
        }
    }
    Ok(())
}

/// Stops a replica's host software (its connections die with it) and its process.
fn crash(sim: &mut turmoil::Sim<'_>, host: &mut ReplicaHost, links: &Links) {
    let name = host.name();
    sim.crash(name.as_str());
    links.cut(&name);
    host.stop();
}
