//! Lease upkeep: a background task that renews a handle's lease every lease / 4 and,
//! when the handle is dropped, removes its registration so its hold ends at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::cmds;
use crate::machine::Machine;
use crate::state::State;

/// Which registration a heartbeat renews.
#[derive(Debug, Clone)]
pub(crate) enum Holder {
    Writer(String),
    Reader(String),
}

/// Stops the lease task when dropped; the task then expires the registration.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: Option<oneshot::Sender<bool>>,
}

impl Heartbeat {
    /// Starts the lease task of `holder`.
    pub(crate) fn start(machine: Arc<Machine>, holder: Holder) -> Heartbeat {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(run(machine, holder, rx));
        Heartbeat { stop: Some(tx) }
    }

    /// No task: the registration lapses one lease after its last renewal, and nothing
    /// happens on drop.
    pub(crate) fn none() -> Heartbeat {
        Heartbeat { stop: None }
    }

    /// Stops the task without expiring (the caller expires explicitly).
    pub(crate) fn disarm(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(false);
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
    }
}

async fn run(machine: Arc<Machine>, holder: Holder, mut stop: oneshot::Receiver<bool>) {
    let lease = match holder {
        Holder::Writer(_) => machine.cfg.writer_lease,
        Holder::Reader(_) => machine.cfg.reader_lease,
    };
    let period = (lease / 4).max(Duration::from_millis(1));
    loop {
        let tick = async {
            if machine.cfg.heartbeat_in_background {
                tokio::time::sleep(period).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            expire = &mut stop => {
                // A dropped sender (the handle leaked) also ends the lease early.
                if expire.unwrap_or(true) {
                    expire_holder(&machine, &holder).await;
                }
                return;
            }
            () = tick => {
                if !renew(&machine, &holder, lease).await {
                    return;
                }
            }
        }
    }
}

async fn renew(machine: &Machine, holder: &Holder, lease: Duration) -> bool {
    let (lease, now) = (lease.as_millis() as u64, machine.cfg.now_ms());
    let res = match holder {
        Holder::Writer(id) => machine
            .apply_plain(|s: &State| cmds::heartbeat_writer(s, id, lease, now))
            .await
            .map(|_| ()),
        Holder::Reader(id) => machine
            .apply_plain(|s: &State| cmds::heartbeat_reader(s, id, None, None, lease, now))
            .await
            .map(|_| ()),
    };
    match res {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(shard = %machine.shard, error = %e, "lease heartbeat failed");
            !matches!(
                e,
                crate::PersistError::LeaseExpired { .. } | crate::PersistError::Tombstoned { .. }
            )
        }
    }
}

async fn expire_holder(machine: &Machine, holder: &Holder) {
    let res = match holder {
        Holder::Writer(id) => {
            machine
                .apply_plain(|s: &State| cmds::expire_writer(s, id))
                .await
        }
        Holder::Reader(id) => {
            machine
                .apply_plain(|s: &State| cmds::expire_reader(s, id))
                .await
        }
    };
    if let Err(e) = res {
        tracing::debug!(shard = %machine.shard, error = %e, "expiring a dropped handle failed; its lease will lapse");
    }
}
