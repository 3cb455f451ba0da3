//! Reading one [`Snapshot`] from a persist location: the durable catalog, each
//! collection's shard state, and the rows of the introspection collections.
//!
//! It writes nothing but reader registrations (which it expires), and it re-reads only
//! what changed: the catalog when its shard's upper moved, an introspection
//! collection's rows when its upper moved.

use std::collections::BTreeMap;

use anyhow::Context;
use strata_controller_api::{IntrospectionType, Row, ShardId, Timestamp};
use strata_controller_core::catalog::{CATALOG_SHARD_ID, CatalogContents};
use strata_introspection::schema::desc;
use strata_persist_backend::{PersistClient, PersistError};

use super::decode;
use super::model::{CollectionState, Frontier, Snapshot};
use crate::read;

/// Reads snapshots of one location, caching what did not change.
pub(crate) struct Loader {
    client: PersistClient,
    url: String,
    catalog: Option<(Frontier, CatalogContents)>,
    rows: BTreeMap<ShardId, (Frontier, Vec<Row>)>,
}

impl Loader {
    /// A loader over an opened location.
    pub(crate) fn new(client: PersistClient, url: &str) -> Loader {
        Loader {
            client,
            url: url.to_owned(),
            catalog: None,
            rows: BTreeMap::new(),
        }
    }

    /// The catalog, re-read only when its shard's upper moved.
    async fn catalog(&mut self) -> anyhow::Result<CatalogContents> {
        let upper = match read::shard_state(&self.client, CATALOG_SHARD_ID, &"catalog").await? {
            Some(state) => Frontier::from_state(Some(&state.upper)),
            None => Frontier::Unknown,
        };
        if let Some((seen, contents)) = &self.catalog
            && *seen == upper
            && upper != Frontier::Unknown
        {
            return Ok(contents.clone());
        }
        let contents = read::read_catalog(&self.client, &self.url).await?;
        self.catalog = Some((upper, contents.clone()));
        Ok(contents)
    }

    /// Reads everything (the caller stamps the time).
    pub(crate) async fn load(&mut self) -> anyhow::Result<Snapshot> {
        let contents = self.catalog().await?;
        let mut snapshot = Snapshot {
            epoch: contents.epoch,
            ..Snapshot::default()
        };
        let mut live = Vec::new();
        for (id, shard) in &contents.collection_metadata {
            let state = read::shard_state(&self.client, *shard, id).await?;
            let collection = CollectionState {
                id: id.to_string(),
                shard: shard.to_string(),
                since: Frontier::from_state(state.as_ref().map(|s| &s.since[..])),
                upper: Frontier::from_state(state.as_ref().map(|s| &s.upper[..])),
                introspection: decode::recognise(state.as_ref().map(|s| &s.schema)),
                name: state.as_ref().map(|s| s.name.clone()),
                parts: state.as_ref().map(|s| s.part_count as u64),
            };
            if let Some(typ) = collection.introspection.filter(|t| decode::is_read(*t)) {
                let rows = self
                    .rows(*shard, typ, collection.since, collection.upper)
                    .await
                    .with_context(|| format!("cannot read {id} (shard {shard})"))?;
                live.push(*shard);
                match typ {
                    IntrospectionType::Frontiers => {
                        snapshot.frontiers.extend(decode::frontiers(&rows));
                    }
                    IntrospectionType::ShardMapping => {
                        snapshot.shard_mapping.extend(decode::shard_mapping(&rows));
                    }
                    _ => decode::statuses(&rows, &mut snapshot.statuses),
                }
            }
            snapshot.collections.push(collection);
        }
        self.rows.retain(|shard, _| live.contains(shard));
        Ok(snapshot)
    }

    /// The rows of an introspection collection at its latest readable time (the time
    /// before its upper), from the cache while its upper has not moved. A shard with
    /// nothing readable yet has no rows.
    async fn rows(
        &mut self,
        shard: ShardId,
        typ: IntrospectionType,
        since: Frontier,
        upper: Frontier,
    ) -> anyhow::Result<Vec<Row>> {
        match self.rows.get(&shard) {
            Some((seen, rows)) if *seen == upper => return Ok(rows.clone()),
            _ => {}
        }
        let read = match (since, upper) {
            (Frontier::At(since), Frontier::At(upper)) if upper > since => {
                read_rows(&self.client, shard, typ).await?
            }
            _ => Some(Vec::new()),
        };
        match read {
            Some(rows) => {
                self.rows.insert(shard, (upper, rows.clone()));
                Ok(rows)
            }
            // Not readable at that time any more: keep the last rows, retry next time.
            None => Ok(self
                .rows
                .get(&shard)
                .map(|(_, rows)| rows.clone())
                .unwrap_or_default()),
        }
    }
}

/// The rows of `shard` at its latest readable time, each repeated by its positive
/// multiplicity, or `None` when that time is no longer readable (compacted past).
/// Nothing is written: no reader is registered (`PersistClient::peek_latest`).
async fn read_rows(
    client: &PersistClient,
    shard: ShardId,
    typ: IntrospectionType,
) -> anyhow::Result<Option<Vec<Row>>> {
    let updates = match client.peek_latest::<Timestamp>(shard, &desc(typ)).await {
        Ok((updates, _upper)) => updates,
        Err(PersistError::ReadBeforeSince { .. }) => return Ok(None),
        Err(error) => return Err(anyhow::Error::new(error).context("cannot read a snapshot")),
    };
    let mut rows = Vec::new();
    for (data, _, diff) in updates {
        if let Ok(row) = data {
            for _ in 0..diff.max(0) {
                rows.push(row.clone());
            }
        }
    }
    Ok(Some(rows))
}
