//! [`SinceHandle`]: a critical reader whose hold has no lease, fenced by an opaque epoch.

use std::marker::PhantomData;
use std::sync::Arc;

use strata_controller_api::{Antichain, ShardId, StorageTimestamp};

use crate::cmds::{self, CmdError};
use crate::error::Result;
use crate::machine::Machine;
use crate::state::State;
use crate::update::{frontier_code, frontier_of};

/// The critical reader's opaque value was not the expected one: a newer holder (for
/// example a controller with a higher epoch) has taken over. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("opaque mismatch: the stored opaque is {current}")]
pub struct OpaqueMismatch {
    /// The opaque stored in the shard.
    pub current: u64,
}

/// A critical reader: it holds the shard's since until it moves it, with no lease, and
/// every move must present the opaque value last stored. A controller stores its epoch
/// there, so an older controller's downgrades fail once a newer one has taken over.
#[derive(Debug)]
pub struct SinceHandle<T> {
    pub(crate) machine: Arc<Machine>,
    pub(crate) reader_id: String,
    pub(crate) opaque: u64,
    pub(crate) since: Antichain<T>,
    pub(crate) _time: PhantomData<T>,
}

impl<T: StorageTimestamp> SinceHandle<T> {
    /// The shard.
    pub fn shard_id(&self) -> ShardId {
        self.machine.shard
    }

    /// The critical reader id.
    pub fn reader_id(&self) -> &str {
        &self.reader_id
    }

    /// The opaque as of this handle's last operation.
    pub fn opaque(&self) -> u64 {
        self.opaque
    }

    /// The since as of this handle's last operation.
    pub fn since(&self) -> &Antichain<T> {
        &self.since
    }

    /// If the stored opaque is `expected`, stores `new.0` and moves the since forward to
    /// `new.1` (a since never regresses), returning the resulting since. Otherwise
    /// returns `Ok(Err(OpaqueMismatch))` and changes nothing.
    pub async fn compare_and_downgrade_since(
        &mut self,
        expected: u64,
        new: (u64, &Antichain<T>),
    ) -> Result<Result<Antichain<T>, OpaqueMismatch>> {
        let (new_opaque, new_since) = (new.0, frontier_code(new.1));
        let id = self.reader_id.clone();
        let res = self
            .machine
            .apply(|s: &State| {
                cmds::compare_and_downgrade_since(s, &id, expected, new_opaque, new_since)
            })
            .await?;
        match res {
            Ok((_, since)) => {
                self.opaque = new_opaque;
                self.since = frontier_of(since);
                Ok(Ok(self.since.clone()))
            }
            Err(CmdError::OpaqueMismatch { current }) => {
                self.opaque = current;
                Ok(Err(OpaqueMismatch { current }))
            }
            Err(e) => Err(self.machine.cmd_error(e)),
        }
    }
}
