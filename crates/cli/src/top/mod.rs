//! `strata top --persist URL`: a live terminal view of every collection of the durable
//! catalog with its status, since, upper, lag and a sparkline of its lag over time.
//!
//! - [`load`] reads a [`model::Snapshot`] from the location (catalog, shard states,
//!   introspection rows decoded by [`decode`]) on an interval, on a tokio task;
//! - [`model`] turns snapshots into rows and lag history (pure);
//! - [`render`] draws the model with ratatui (pure, tested on a `TestBackend`);
//! - [`term`] owns the terminal and the key loop.
//!
//! It needs no running controller: it reads what the catalog and the shards say, so it
//! works during a run, after one, and while introspection is still empty (status `-`).

mod decode;
mod load;
mod model;
mod render;
mod term;

use std::io::IsTerminal;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use crate::args::{OpenTimeout, TopArgs};
use crate::location::{self, Access};
pub(crate) use load::Loader;
pub(crate) use model::{Frontier, Lag, TopModel, time_text};
use term::{Refresh, TerminalGuard};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a snapshot every `interval` and sends it (or the error, as one line) until
/// the view goes away.
async fn refresh_loop(
    mut loader: Loader,
    refreshes: Sender<Refresh>,
    interval: Duration,
    url: String,
    timeout: OpenTimeout,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = location::within(&url, timeout, loader.load())
            .await
            .map(|mut snapshot| {
                // Stamped after the read, so a slow read shows more lag, never less.
                snapshot.taken_at_ms = now_ms();
                snapshot
            })
            .map_err(|e| crate::one_line(&format!("{e:#}")));
        if refreshes.send(result).is_err() {
            return;
        }
    }
}

/// `strata top`.
pub(crate) fn run(args: TopArgs) -> anyhow::Result<()> {
    let url = location::normalize(&args.persist)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = runtime.block_on(location::open(&url, Access::ReadOnly, args.open_timeout))?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "strata top needs a terminal; for plain output use `strata inspect collections --persist {url}`"
        );
    }
    let (sender, receiver) = channel();
    runtime.spawn(refresh_loop(
        Loader::new(client, &url),
        sender,
        args.interval,
        url.clone(),
        args.open_timeout,
    ));
    let interval_ms = u64::try_from(args.interval.as_millis()).unwrap_or(u64::MAX);
    let mut model = TopModel::new(&url, interval_ms, render::HISTORY);
    let result =
        TerminalGuard::enter().and_then(|mut guard| term::run(&mut guard, &mut model, &receiver));
    drop(receiver);
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
