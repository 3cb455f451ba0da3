//! Reading a location's durable state without writing anything: whether a shard was
//! ever written, the latest durable catalog, a shard's state. `strata inspect` and
//! `strata top` both read through these.

use anyhow::{Context, bail};
use strata_controller_api::ShardId;
use strata_controller_core::catalog::{
    CATALOG_SHARD_ID, CatalogContents, CatalogOptions, DurableCatalog,
};
use strata_persist_backend::{PersistClient, ShardInspect};

/// Whether `shard` was ever written at the client's location: its consensus has a
/// head (a register's head object or file, or a log's versions).
pub(crate) async fn shard_exists(client: &PersistClient, shard: ShardId) -> anyhow::Result<bool> {
    let consensus = strata_persist_backend::consensus::open(client.location());
    let head = consensus
        .head(shard, 0)
        .await
        .with_context(|| format!("cannot read {}", client.location_url()))?;
    Ok(head.is_some())
}

/// The latest durable catalog at the client's location, with an error that says so
/// when no controller has run there.
pub(crate) async fn read_catalog(
    client: &PersistClient,
    url: &str,
) -> anyhow::Result<CatalogContents> {
    if !shard_exists(client, CATALOG_SHARD_ID).await? {
        bail!("no durable catalog at {url}: no controller has run on this location");
    }
    DurableCatalog::read_latest(client, &CatalogOptions::default())
        .await
        .context("cannot read the durable catalog")
}

/// The state of `shard` (the shard of `of`), or `None` when the shard was never
/// written.
pub(crate) async fn shard_state(
    client: &PersistClient,
    shard: ShardId,
    of: &(dyn std::fmt::Display + Sync),
) -> anyhow::Result<Option<ShardInspect>> {
    if !shard_exists(client, shard).await? {
        return Ok(None);
    }
    let state = client
        .inspect_shard(shard)
        .await
        .with_context(|| format!("cannot read shard {shard} of {of}"))?;
    Ok(Some(state))
}
