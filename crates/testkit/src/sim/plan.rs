//! [`FaultPlan`]: which faults a simulation applies, at which simulated times.

use std::time::Duration;

use strata_controller_api::rng::SplitMix64;

/// One fault, applied to the link to a replica or to the replica itself. Replicas are
/// numbered from 0; replica `i` is the turmoil host `replica-i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Partitions the controller from the replica: messages on the link are dropped,
    /// its open connections fail (as a TCP retransmission timeout would end them) and
    /// new connections are refused until [`Fault::Repair`].
    Partition {
        /// The replica cut off.
        replica: usize,
    },
    /// Ends a [`Fault::Partition`]: new connections succeed again.
    Repair {
        /// The replica reachable again.
        replica: usize,
    },
    /// Holds every message on the link (a stall that connections survive): nothing is
    /// lost, and it is all delivered at [`Fault::Release`].
    Hold {
        /// The replica whose link stalls.
        replica: usize,
    },
    /// Ends a [`Fault::Hold`], delivering the held messages.
    Release {
        /// The replica whose link flows again.
        replica: usize,
    },
    /// Crashes the replica: its host's software stops (every connection with it) and
    /// its timely workers stop. It stays down until [`Fault::Restart`].
    Crash {
        /// The replica that crashes.
        replica: usize,
    },
    /// Starts a crashed replica again: a new process on the same storage, which the
    /// controller's reconnect replays its command history to.
    Restart {
        /// The replica that starts again.
        replica: usize,
    },
    /// Crashes the replica and starts it again at once (a process bounce).
    Bounce {
        /// The replica that bounces.
        replica: usize,
    },
}

impl Fault {
    /// The replica the fault is about.
    pub fn replica(&self) -> usize {
        match *self {
            Fault::Partition { replica }
            | Fault::Repair { replica }
            | Fault::Hold { replica }
            | Fault::Release { replica }
            | Fault::Crash { replica }
            | Fault::Restart { replica }
            | Fault::Bounce { replica } => replica,
        }
    }
}

/// The faults of one simulation, each at a simulated time since the start.
///
/// Build one by hand with [`FaultPlan::at`], or from a seed with
/// [`FaultPlan::random`]. A plan should leave the system whole at its end (every
/// partition repaired, every hold released, every crashed replica restarted): the
/// simulation's convergence checks run after [`FaultPlan::end`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_testkit::sim::{Fault, FaultPlan};
///
/// let plan = FaultPlan::new()
///     .at(Duration::from_millis(100), Fault::Partition { replica: 0 })
///     .at(Duration::from_millis(300), Fault::Repair { replica: 0 })
///     .at(Duration::from_millis(200), Fault::Bounce { replica: 1 });
/// assert_eq!(plan.end(), Duration::from_millis(300));
/// // Events are kept in time order.
/// assert_eq!(plan.events()[1].1, Fault::Bounce { replica: 1 });
///
/// let random = FaultPlan::random(7, 2, Duration::from_millis(1_000));
/// assert_eq!(random, FaultPlan::random(7, 2, Duration::from_millis(1_000)));
/// assert!(random.events().iter().any(|(_, f)| matches!(f, Fault::Crash { .. })));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    events: Vec<(Duration, Fault)>,
}

impl FaultPlan {
    /// A plan without faults.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Adds `fault` at simulated time `at` (events at the same time keep the order
    /// they were added in).
    pub fn at(mut self, at: Duration, fault: Fault) -> FaultPlan {
        let index = self.events.partition_point(|(t, _)| *t <= at);
        self.events.insert(index, (at, fault));
        self
    }

    /// The events, in time order.
    pub fn events(&self) -> &[(Duration, Fault)] {
        &self.events
    }

    /// The time of the last event (zero for an empty plan).
    pub fn end(&self) -> Duration {
        self.events.last().map_or(Duration::ZERO, |(t, _)| *t)
    }

    /// A plan drawn from `seed` for `replicas` replicas within `window`: one to three
    /// network faults (the first a partition with its repair, the others
    /// partitions or now and then holds with their release, never two at once on one
    /// link), one crash of a replica with its
    /// restart, and for about half the seeds a bounce of a replica that is up. Every
    /// fault ends within `window`. The same arguments always give the same plan.
    pub fn random(seed: u64, replicas: usize, window: Duration) -> FaultPlan {
        let mut plan = FaultPlan::new();
        if replicas == 0 {
            return plan;
        }
        let mut rng = SplitMix64::new(seed ^ 0x5eed_fa17_0000_0000);
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX)
            .max(40);
        let ms = Duration::from_millis;
        // A fault lasts between 1/20 and 1/4 of the window.
        let length = |rng: &mut SplitMix64| window_ms / 20 + rng.below(window_ms / 5);
        let start = |rng: &mut SplitMix64, len: u64| rng.below(window_ms.saturating_sub(len));

        // The link faults, none overlapping another on the same link.
        let mut busy: Vec<Vec<(u64, u64)>> = vec![Vec::new(); replicas];
        for round in 0..1 + rng.below(3) {
            let replica = usize::try_from(rng.below(replicas as u64)).unwrap_or(0);
            let len = length(&mut rng);
            let from = start(&mut rng, len);
            let until = from + len;
            if busy[replica].iter().any(|&(a, b)| from <= b && a <= until) {
                continue;
            }
            busy[replica].push((from, until));
            // The first is always a partition.
            let (begin, end) = if round > 0 && rng.below(3) == 0 {
                (Fault::Hold { replica }, Fault::Release { replica })
            } else {
                (Fault::Partition { replica }, Fault::Repair { replica })
            };
            plan = plan.at(ms(from), begin).at(ms(until), end);
        }

        // One crash with its restart.
        let crashed = usize::try_from(rng.below(replicas as u64)).unwrap_or(0);
        let len = length(&mut rng);
        let down = start(&mut rng, len);
        let up = down + len;
        plan = plan
            .at(ms(down), Fault::Crash { replica: crashed })
            .at(ms(up), Fault::Restart { replica: crashed });

        // Sometimes a bounce, of a replica that is up then.
        if rng.below(2) == 0 {
            let replica = usize::try_from(rng.below(replicas as u64)).unwrap_or(0);
            let at = rng.below(window_ms);
            if replica != crashed || !(down..=up).contains(&at) {
                plan = plan.at(ms(at), Fault::Bounce { replica });
            }
        }
        plan
    }
}
