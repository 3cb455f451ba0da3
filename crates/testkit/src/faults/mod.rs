//! Fault injection for object storage and for replica transports.
//!
//! [`FaultyObjectStore`] wraps any `Arc<dyn ObjectStore>` and implements the whole
//! trait, so code under test cannot tell it from a real store until a fault fires. A
//! [`FaultHandle`] changes the [`FaultConfig`] while the store is in use and reads the
//! [`FaultCounters`]. Every made-up error carries an [`InjectedFault`] that says whether
//! the operation reached the inner store (Determinate or Indeterminate).
//!
//! What is injected, per call:
//! 1. added latency (fixed plus seeded jitter, on tokio's clock);
//! 2. if the store is unavailable (the manual switch or a time window), a determinate
//!    [`InjectedFault::Unavailable`];
//! 3. otherwise, at the error rate of the call's [`OpClass`], a determinate
//!    [`InjectedFault::Determinate`];
//! 4. otherwise the inner store runs the call, and a successful mutation is reported as
//!    an [`InjectedFault::Indeterminate`] at the indeterminate rate.
//!
//!
//! [`WriteGate`] is the opposite tool: no random faults, but a switch that refuses the
//! writes a test forbids (all, or those a predicate picks) at the moment they are made,
//! and records them; [`gated_memory_location`] puts one under a fresh `mem://` URL.
//!
//! [`FaultyConnector`] does the same for a replica transport: a seeded
//! [`TransportFaultHandle`] delays, drops (cutting the connection), reorders
//! (responses) and disconnects messages, and refuses connections (see [`transport`]).

mod config;
mod error;
mod gate;
mod handle;
mod plan;
mod store;
pub mod transport;

pub use config::{FaultConfig, FaultCounters, Latency, OpClass, PerClass};
pub use error::{FAULTY_STORE_NAME, InjectedFault};
pub use gate::{
    GatedLocation, RefusedWrite, WRITE_GATE_STORE_NAME, WriteGate, gated_memory_location,
};
pub use handle::FaultHandle;
pub use store::FaultyObjectStore;
pub use transport::{
    FaultyConnector, TransportFaultConfig, TransportFaultCounters, TransportFaultHandle,
};
