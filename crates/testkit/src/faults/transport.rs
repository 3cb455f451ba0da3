//! [`FaultyConnector`]: a fault-injecting decorator for any replica transport
//! ([`ReplicaConnector`]), typically the `local` one.
//!
//! Each connection it opens runs the inner connection through two pumps, one per
//! direction, which consult a shared, seeded [`TransportFaultHandle`] for every message:
//!
//! - **delay** ([`TransportFaultConfig::delay`]): the message waits `fixed` plus a
//!   seeded draw from `[0, jitter]`; order within a direction is kept;
//! - **drop** ([`TransportFaultConfig::drop_rate`]): the message is lost and the
//!   connection is cut with it, as when a connection dies with messages in flight (a
//!   stream transport never loses a message and then delivers the next one);
//! - **reorder** ([`TransportFaultConfig::reorder_rate`], responses only): the response
//!   is held back and delivered after the next one (or after 5 ms if none comes).
//!   Commands are never reordered: the transport contract promises their order and
//!   the replica relies on it;
//! - **disconnect** ([`TransportFaultConfig::disconnect_rate`], or
//!   [`TransportFaultHandle::disconnect`] now): the connection is cut after the message
//!   is delivered;
//! - **refuse** ([`TransportFaultConfig::refuse_connections`]): new connections fail
//!   with [`TransportError::Connect`], as an unreachable replica's do.
//!
//! The controller's [`Instance`](strata_instance_client::Instance) reconnects after a
//! cut and replays its command history, so a correct controller converges through all
//! of these.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use strata_controller_api::rng::SplitMix64;
use strata_instance_client::transport::{ReplicaConnection, ReplicaConnector, TransportError};
use tokio::sync::{Notify, mpsc};

use super::config::{Latency, fires};

/// What a [`FaultyConnector`] injects. The default injects nothing.
///
/// Rates are probabilities per message: at or below `0.0` never, at or above `1.0`
/// always.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportFaultConfig {
    /// Chance that a message is lost, cutting its connection.
    pub drop_rate: f64,
    /// Added delay per message.
    pub delay: Latency,
    /// Chance that a response is delivered after the next one.
    pub reorder_rate: f64,
    /// Chance that the connection is cut after a message is delivered.
    pub disconnect_rate: f64,
    /// Whether new connections are refused.
    pub refuse_connections: bool,
}

/// What a [`FaultyConnector`] did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TransportFaultCounters {
    /// Connections opened through the decorator.
    pub connections: u64,
    /// Connection attempts refused.
    pub refused: u64,
    /// Commands and responses seen.
    pub messages: u64,
    /// Messages lost (each cut its connection).
    pub dropped: u64,
    /// Messages delayed.
    pub delayed: u64,
    /// Responses delivered after a later one.
    pub reordered: u64,
    /// Connections cut after a delivered message or by [`TransportFaultHandle::disconnect`].
    pub disconnects: u64,
}

impl TransportFaultCounters {
    /// Every injected fault: drops, delays, reorders, disconnects and refusals.
    pub fn total_faults(&self) -> u64 {
        self.dropped + self.delayed + self.reordered + self.disconnects + self.refused
    }
}

struct State {
    config: TransportFaultConfig,
    rng: SplitMix64,
    counters: TransportFaultCounters,
}

/// The knobs and counters of a [`FaultyConnector`]; clones share them, so one handle
/// may drive several connectors (all replicas of an instance).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_testkit::faults::{TransportFaultConfig, TransportFaultHandle};
///
/// let faults = TransportFaultHandle::new(3);
/// faults.set_drop_rate(0.01);
/// faults.set_delay(Duration::from_millis(1), Duration::from_millis(5));
/// assert_eq!(faults.config().drop_rate, 0.01);
/// faults.set_config(TransportFaultConfig::default());
/// assert_eq!(faults.counters().total_faults(), 0);
/// ```
#[derive(Clone)]
pub struct TransportFaultHandle {
    state: Arc<Mutex<State>>,
    seed: u64,
    cut: Arc<Notify>,
}

impl std::fmt::Debug for TransportFaultHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportFaultHandle")
            .field("seed", &self.seed)
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fate {
    delay: Duration,
    drop: bool,
    reorder: bool,
    disconnect: bool,
}

impl TransportFaultHandle {
    /// A handle that injects nothing until configured, drawing from `seed`.
    pub fn new(seed: u64) -> TransportFaultHandle {
        TransportFaultHandle {
            state: Arc::new(Mutex::new(State {
                config: TransportFaultConfig::default(),
                rng: SplitMix64::new(seed),
                counters: TransportFaultCounters::default(),
            })),
            seed,
            cut: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is one assignment: a poisoned lock holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The seed the fault sequence started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current config.
    pub fn config(&self) -> TransportFaultConfig {
        self.lock().config.clone()
    }

    /// Replaces the config; the next message sees it.
    pub fn set_config(&self, config: TransportFaultConfig) {
        self.lock().config = config;
    }

    /// Sets the chance that a message is lost (cutting its connection).
    pub fn set_drop_rate(&self, rate: f64) {
        self.lock().config.drop_rate = rate;
    }

    /// Sets the delay added to every message.
    pub fn set_delay(&self, fixed: Duration, jitter: Duration) {
        self.lock().config.delay = Latency { fixed, jitter };
    }

    /// Sets the chance that a response is delivered after the next one.
    pub fn set_reorder_rate(&self, rate: f64) {
        self.lock().config.reorder_rate = rate;
    }

    /// Sets the chance that a connection is cut after a delivered message.
    pub fn set_disconnect_rate(&self, rate: f64) {
        self.lock().config.disconnect_rate = rate;
    }

    /// Refuses (or accepts again) new connections.
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.lock().config.refuse_connections = refuse;
    }

    /// Stops injecting anything; open connections stay open.
    pub fn clear_faults(&self) {
        self.set_config(TransportFaultConfig::default());
    }

    /// Cuts every open connection of every connector using this handle now.
    pub fn disconnect(&self) {
        self.cut.notify_waiters();
    }

    /// The counters so far.
    pub fn counters(&self) -> TransportFaultCounters {
        self.lock().counters
    }

    fn connect_allowed(&self) -> bool {
        let mut state = self.lock();
        if state.config.refuse_connections {
            state.counters.refused += 1;
            false
        } else {
            state.counters.connections += 1;
            true
        }
    }

    fn fate(&self, response: bool) -> Fate {
        let mut state = self.lock();
        let State {
            config,
            rng,
            counters,
        } = &mut *state;
        counters.messages += 1;
        let drop = fires(config.drop_rate, rng.next_f64());
        let reorder = response && !drop && fires(config.reorder_rate, rng.next_f64());
        let disconnect = !drop && fires(config.disconnect_rate, rng.next_f64());
        let mut delay = config.delay.fixed;
        let jitter = u64::try_from(config.delay.jitter.as_micros()).unwrap_or(u64::MAX);
        if jitter > 0 {
            delay += Duration::from_micros(rng.next_u64() % (jitter + 1));
        }
        counters.dropped += u64::from(drop);
        counters.reordered += u64::from(reorder);
        counters.disconnects += u64::from(disconnect);
        counters.delayed += u64::from(!delay.is_zero());
        Fate {
            delay,
            drop,
            reorder,
            disconnect,
        }
    }

    fn count_disconnect(&self) {
        self.lock().counters.disconnects += 1;
    }
}

/// Wraps a [`ReplicaConnector`] and injects the faults its [`TransportFaultHandle`]
/// asks for into every connection (see the [module docs](self)).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use strata_instance_client::LocalConnector;
/// use strata_instance_client::transport::{ReplicaConnector, ReplicaHandler};
/// # use strata_instance_client::transport::{CommandReceiver, Hello, ResponseSender};
/// use strata_testkit::faults::{FaultyConnector, TransportFaultHandle};
/// # struct Echo;
/// # #[async_trait::async_trait]
/// # impl ReplicaHandler<u64> for Echo {
/// #     async fn serve(&self, _: Hello, mut c: CommandReceiver<u64>, _: ResponseSender<u64>) {
/// #         while c.recv().await.is_some() {}
/// #     }
/// # }
///
/// # #[tokio::main]
/// # async fn main() {
/// let local = LocalConnector::new(Arc::new(Echo) as Arc<dyn ReplicaHandler<u64>>);
/// let faults = TransportFaultHandle::new(42);
/// let connector = FaultyConnector::new(local, faults.clone());
/// faults.set_refuse_connections(true);
/// assert!(connector.connect().await.is_err());
/// faults.set_refuse_connections(false);
/// assert!(connector.connect().await.is_ok());
/// assert_eq!(faults.counters().refused, 1);
/// # }
/// ```
pub struct FaultyConnector<T> {
    inner: Arc<dyn ReplicaConnector<T>>,
    faults: TransportFaultHandle,
}

impl<T: 'static> std::fmt::Debug for FaultyConnector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyConnector")
            .field("target", &self.inner.target())
            .field("faults", &self.faults)
            .finish()
    }
}

impl<T: Send + 'static> FaultyConnector<T> {
    /// Decorates `inner` with the faults of `faults`.
    pub fn new(
        inner: Arc<dyn ReplicaConnector<T>>,
        faults: TransportFaultHandle,
    ) -> Arc<FaultyConnector<T>> {
        Arc::new(FaultyConnector { inner, faults })
    }

    /// The handle that drives this connector.
    pub fn handle(&self) -> &TransportFaultHandle {
        &self.faults
    }
}

/// How long a held-back response waits for one to overtake it.
const HOLD: Duration = Duration::from_millis(5);

/// Why a pump stopped: the far side went away, or a fault cut the connection.
enum Stop {
    Closed,
    Cut,
}

async fn pump_commands<T>(
    faults: TransportFaultHandle,
    mut from: mpsc::UnboundedReceiver<T>,
    to: mpsc::UnboundedSender<T>,
) -> Stop {
    while let Some(message) = from.recv().await {
        let fate = faults.fate(false);
        if !fate.delay.is_zero() {
            tokio::time::sleep(fate.delay).await;
        }
        if fate.drop {
            return Stop::Cut;
        }
        if to.send(message).is_err() {
            return Stop::Closed;
        }
        if fate.disconnect {
            return Stop::Cut;
        }
    }
    Stop::Closed
}

async fn pump_responses<T>(
    faults: TransportFaultHandle,
    mut from: mpsc::UnboundedReceiver<T>,
    to: mpsc::UnboundedSender<T>,
) -> Stop {
    let mut held: Option<T> = None;
    loop {
        let next = match held.take() {
            // A held response waits for the next one, but not for ever.
            Some(earlier) => match tokio::time::timeout(HOLD, from.recv()).await {
                Ok(next) => {
                    held = Some(earlier);
                    next
                }
                Err(_) => {
                    if to.send(earlier).is_err() {
                        return Stop::Closed;
                    }
                    continue;
                }
            },
            None => from.recv().await,
        };
        let Some(message) = next else {
            break;
        };
        let fate = faults.fate(true);
        if !fate.delay.is_zero() {
            tokio::time::sleep(fate.delay).await;
        }
        if fate.drop {
            return Stop::Cut;
        }
        if fate.reorder && held.is_none() {
            held = Some(message);
            continue;
        }
        if to.send(message).is_err() {
            return Stop::Closed;
        }
        if let Some(earlier) = held.take()
            && to.send(earlier).is_err()
        {
            return Stop::Closed;
        }
        if fate.disconnect {
            return Stop::Cut;
        }
    }
    // The replica's side ended: nothing overtakes a held response any more.
    if let Some(earlier) = held {
        let _ = to.send(earlier);
    }
    Stop::Closed
}

#[async_trait]
impl<T: Send + 'static> ReplicaConnector<T> for FaultyConnector<T> {
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError> {
        if !self.faults.connect_allowed() {
            return Err(TransportError::Connect {
                target: self.target(),
                source: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "refused by the faulty transport",
                )),
            });
        }
        let inner = self.inner.connect().await?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (response_tx, responses) = mpsc::unbounded_channel();
        let faults = self.faults.clone();
        let cut = Arc::clone(&self.faults.cut);
        tokio::spawn(async move {
            let outbound = pump_commands(faults.clone(), command_rx, inner.commands);
            let inbound = pump_responses(faults.clone(), inner.responses, response_tx);
            // Counted before the branch completes: select drops the pumps (and with
            // them the channels) before it runs a branch's handler.
            let cut = async {
                cut.notified().await;
                faults.count_disconnect();
            };
            let stop = tokio::select! {
                stop = outbound => stop,
                stop = inbound => stop,
                () = cut => Stop::Cut,
            };
            if matches!(stop, Stop::Cut) {
                tracing::debug!("the faulty transport cut a connection");
            }
            // Returning drops every channel end: both sides see the connection close.
        });
        Ok(ReplicaConnection {
            commands,
            responses,
        })
    }

    fn target(&self) -> String {
        format!("faulty {}", self.inner.target())
    }
}
