//! `strata inspect shard` and `strata inspect collections`: read durable state and
//! print it, writing nothing at all (the location is opened read-only and the catalog
//! is read without a reader registration). `strata top` reads the catalog and shard
//! states through the same functions.

use std::io::Write;
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use strata_controller_api::ShardId;
use strata_controller_core::catalog::{
    CATALOG_SHARD_ID, CatalogContents, CatalogOptions, DurableCatalog,
};
use strata_persist_backend::PersistClient;

use crate::args::OpenTimeout;
use crate::location::{self, Access};

/// Parses a shard id given on the command line.
pub(crate) fn parse_shard(text: &str) -> anyhow::Result<ShardId> {
    ShardId::from_str(text.trim())
        .map_err(|e| anyhow!("{e} (a shard id looks like s2f6c1a9e-0b7d-4c1e-9a3f-5d8e7b6a4c21)"))
}

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

/// `strata inspect shard --persist URL SHARD_ID`.
pub(crate) async fn shard(url: &str, shard: &str, timeout: OpenTimeout) -> anyhow::Result<()> {
    let shard = parse_shard(shard)?;
    let url = &location::normalize(url)?;
    let client = location::open(url, Access::ReadOnly, timeout).await?;
    let state = location::within(url, timeout, async {
        if !shard_exists(&client, shard).await? {
            bail!("shard {shard} does not exist at {url}");
        }
        client
            .inspect(shard)
            .await
            .with_context(|| format!("cannot read shard {shard}"))
    })
    .await?;
    print_json(&state)
}

/// One row of `inspect collections`.
fn collection_row(id: String, shard: ShardId, state: Option<&Value>) -> Value {
    let field = |name: &str| {
        state
            .and_then(|s| s.get(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "id": id,
        "shard": shard.to_string(),
        "since": field("since"),
        "upper": field("upper"),
        "tombstone": field("tombstone"),
        "part_count": field("part_count"),
    })
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

/// The state of `shard` (the shard of `of`) as JSON (see `PersistClient::inspect`), or
/// `None` when the shard was never written.
pub(crate) async fn shard_state(
    client: &PersistClient,
    shard: ShardId,
    of: &(dyn std::fmt::Display + Sync),
) -> anyhow::Result<Option<Value>> {
    if !shard_exists(client, shard).await? {
        return Ok(None);
    }
    let state = client
        .inspect(shard)
        .await
        .with_context(|| format!("cannot read shard {shard} of {of}"))?;
    Ok(Some(state))
}

/// `strata inspect collections --persist URL`.
pub(crate) async fn collections(
    url: &str,
    as_json: bool,
    timeout: OpenTimeout,
) -> anyhow::Result<()> {
    let url = &location::normalize(url)?;
    let client = location::open(url, Access::ReadOnly, timeout).await?;
    let report = location::within(url, timeout, async {
        let contents = read_catalog(&client, url).await?;
        let mut rows = Vec::new();
        for (id, shard) in &contents.collection_metadata {
            let state = shard_state(&client, *shard, id).await?;
            rows.push(collection_row(id.to_string(), *shard, state.as_ref()));
        }
        Ok(json!({
            "epoch": contents.epoch,
            "txns_shard": contents.txns_shard.map(|s| s.to_string()),
            "unfinalized_shards": contents.unfinalized_shards.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "collections": rows,
        }))
    })
    .await?;
    if as_json {
        print_json(&report)
    } else {
        print_table(&report)
    }
}

/// A frontier as `[t]`, `[]` (closed) or `-` (unknown).
fn frontier_text(v: &Value) -> String {
    match v.as_array() {
        Some(items) if items.is_empty() => "[] (closed)".to_owned(),
        Some(items) => items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        None => "-".to_owned(),
    }
}

fn print_table(report: &Value) -> anyhow::Result<()> {
    let mut out = String::new();
    let epoch = report.get("epoch").cloned().unwrap_or(Value::Null);
    out.push_str(&format!("catalog epoch {epoch}\n"));
    out.push_str(&format!(
        "{:<8} {:<40} {:>15} {:>15} {:>6}\n",
        "ID", "SHARD", "SINCE", "UPPER", "PARTS"
    ));
    let empty = Vec::new();
    let rows = report
        .get("collections")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for row in rows {
        let text = |name: &str| {
            row.get(name)
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned()
        };
        let parts = row.get("part_count").map_or("-".to_owned(), |v| match v {
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        });
        let missing = row.get("since").is_none_or(Value::is_null);
        out.push_str(&format!(
            "{:<8} {:<40} {:>15} {:>15} {:>6}{}\n",
            text("id"),
            text("shard"),
            frontier_text(row.get("since").unwrap_or(&Value::Null)),
            frontier_text(row.get("upper").unwrap_or(&Value::Null)),
            parts,
            if missing {
                "  (shard not written yet)"
            } else {
                ""
            },
        ));
    }
    if rows.is_empty() {
        out.push_str("(no collections)\n");
    }
    write_stdout(&out)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot render json")?;
    text.push('\n');
    write_stdout(&text)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        match (parse_shard(input), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got.to_string(), want, "{input}"),
            (Err(got), Err(want)) => {
                let text = format!("{got:#}");
                assert!(text.contains(want), "{input}: {text}");
                assert!(!text.contains('\n'), "{input}: {text}");
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_shard_table() {
        let id = ShardId::from_bytes([7; 16]).to_string();
        check(&id, Ok(&id));
        check(&format!("  {id}\n"), Ok(&id));
        check("", Err("invalid shard id"));
        check("nope", Err("expected s prefix"));
        check("s1234", Err("invalid shard id"));
        check(&id.replace('s', "u"), Err("invalid shard id"));
    }

    fn check_frontier(v: Value, expected: &str) {
        assert_eq!(frontier_text(&v), expected);
    }

    #[test]
    fn frontier_text_table() {
        check_frontier(json!([5]), "5");
        check_frontier(json!([]), "[] (closed)");
        check_frontier(Value::Null, "-");
    }
}
