//! Fault injection for object storage.
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
//! The faulty replica transport is not built yet; it will live next to this module.

mod config;
mod error;
mod handle;
mod plan;
mod rng;
mod store;

pub use config::{FaultConfig, FaultCounters, Latency, OpClass, PerClass};
pub use error::{FAULTY_STORE_NAME, InjectedFault};
pub use handle::FaultHandle;
pub use store::FaultyObjectStore;
