//! [`MetadataShard`]: the persist handles of the metadata shard and the few operations
//! the catalog needs on them. Catalog versions are written at consecutive times `0, 1,
//! 2, ...`, so the shard's upper is the number of versions written and the latest
//! version is the snapshot at `upper - 1`.

use strata_controller_api::{Antichain, Row, ShardId, Timestamp};
use strata_persist_backend::{PersistClient, PersistError, ReadHandle, SinceHandle, WriteHandle};

use super::error::{CatalogError, Result};
use super::rows::{CatalogContents, catalog_desc, decode};

/// The persist handles of one catalog instance.
#[derive(Debug)]
pub(crate) struct MetadataShard {
    client: PersistClient,
    shard: ShardId,
    write: WriteHandle<Timestamp>,
    read: ReadHandle<Timestamp>,
    since: SinceHandle<Timestamp>,
}

fn frontier(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

impl MetadataShard {
    /// Registers a writer, a leased reader and the critical reader `reader_id`.
    pub(crate) async fn open(
        client: &PersistClient,
        shard: ShardId,
        reader_id: &str,
    ) -> Result<Self> {
        let err = |op| CatalogError::persist(shard, op);
        let write = client
            .open_writer(shard, catalog_desc())
            .await
            .map_err(err("open writer"))?;
        let read = client
            .open_leased_reader(shard, catalog_desc())
            .await
            .map_err(err("open reader"))?;
        let since = client
            .open_critical_since(shard, reader_id)
            .await
            .map_err(err("open critical since"))?;
        Ok(MetadataShard {
            client: client.clone(),
            shard,
            write,
            read,
            since,
        })
    }

    /// The metadata shard's id.
    pub(crate) fn shard_id(&self) -> ShardId {
        self.shard
    }

    /// The opaque (epoch) of the critical since as of its last operation.
    pub(crate) fn opaque(&self) -> u64 {
        self.since.opaque()
    }

    /// The shard's upper, read from storage.
    pub(crate) async fn fetch_upper(&mut self) -> Result<u64> {
        let upper = self
            .write
            .fetch_recent_upper()
            .await
            .map_err(CatalogError::persist(self.shard, "fetch upper"))?;
        match upper.as_option() {
            Some(t) => Ok(t.as_millis()),
            None => Err(CatalogError::Sealed { shard: self.shard }),
        }
    }

    /// The latest version and the upper it was read at.
    pub(crate) async fn read(&mut self) -> Result<(CatalogContents, u64)> {
        let upper = self.fetch_upper().await?;
        let Some(as_of) = upper.checked_sub(1).map(Timestamp::new) else {
            return Ok((CatalogContents::default(), upper));
        };
        let updates = match self.read.snapshot(&as_of).await {
            Err(PersistError::LeaseExpired { .. }) => {
                self.read = self
                    .client
                    .open_leased_reader(self.shard, catalog_desc())
                    .await
                    .map_err(CatalogError::persist(self.shard, "reopen reader"))?;
                self.read.snapshot(&as_of).await
            }
            other => other,
        }
        .map_err(CatalogError::persist(self.shard, "snapshot"))?;
        let contents = decode(
            self.shard,
            updates.into_iter().map(|(d, _, diff)| (d, diff)),
        )?;
        // Later reads are at or after `as_of`: release older versions for compaction.
        self.read
            .downgrade_since(&Antichain::from_elem(as_of))
            .await
            .map_err(CatalogError::persist(self.shard, "downgrade reader since"))?;
        Ok((contents, upper))
    }

    /// Writes `updates` as the version at time `at`, if the upper is still `at`.
    /// Returns `Ok(Err(()))`, having written nothing, if another writer moved it.
    pub(crate) async fn append(
        &mut self,
        updates: &[(Row, i64)],
        at: u64,
    ) -> Result<Result<(), ()>> {
        let next = at
            .checked_add(1)
            .ok_or(CatalogError::Sealed { shard: self.shard })?;
        let time = Timestamp::new(at);
        let updates: Vec<_> = updates
            .iter()
            .map(|(r, d)| (Ok(r.clone()), time, *d))
            .collect();
        let res = self
            .write
            .compare_and_append(&updates, frontier(at), frontier(next))
            .await
            .map_err(CatalogError::persist(self.shard, "compare_and_append"))?;
        Ok(res.map_err(|_| ()))
    }

    /// If the critical since's opaque is `expected`, sets it to `new` and holds the
    /// since at `since`. Otherwise returns the opaque found.
    pub(crate) async fn compare_and_downgrade(
        &mut self,
        expected: u64,
        new: u64,
        since: u64,
    ) -> Result<Result<(), u64>> {
        let res = self
            .since
            .compare_and_downgrade_since(expected, (new, &frontier(since)))
            .await
            .map_err(CatalogError::persist(
                self.shard,
                "compare_and_downgrade_since",
            ))?;
        Ok(res.map(|_| ()).map_err(|m| m.current))
    }
}
