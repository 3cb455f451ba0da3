//! `strata inspect shard` and `strata inspect collections`: read durable state and
//! print it, writing nothing at all (the location is opened read-only and the catalog
//! is read without a reader registration). `strata top` reads the catalog and shard
//! states through the same functions, in [`crate::read`].

use std::io::Write;
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use strata_controller_api::ShardId;
use strata_persist_backend::ShardInspect;

use crate::args::OpenTimeout;
use crate::location::{self, Access};
use crate::read::{read_catalog, shard_exists, shard_state};

/// Parses a shard id given on the command line.
pub(crate) fn parse_shard(text: &str) -> anyhow::Result<ShardId> {
    ShardId::from_str(text.trim())
        .map_err(|e| anyhow!("{e} (a shard id looks like s2f6c1a9e-0b7d-4c1e-9a3f-5d8e7b6a4c21)"))
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
            .inspect_shard(shard)
            .await
            .with_context(|| format!("cannot read shard {shard}"))
    })
    .await?;
    print_json(&serde_json::to_value(state).context("cannot render json")?)
}

/// One row of `inspect collections`.
fn collection_row(id: String, shard: ShardId, state: Option<&ShardInspect>) -> Value {
    json!({
        "id": id,
        "name": state.map(|s| &s.name),
        "shard": shard.to_string(),
        "since": state.map(|s| &s.since),
        "upper": state.map(|s| &s.upper),
        "tombstone": state.map(|s| s.tombstone),
        "part_count": state.map(|s| s.part_count),
    })
}

/// `strata inspect collections --persist URL`.
pub(crate) async fn collections(
    url: &str,
    as_json: bool,
    raw: bool,
    timeout: OpenTimeout,
) -> anyhow::Result<()> {
    let url = &location::normalize(url)?;
    let client = location::open(url, Access::ReadOnly, timeout).await?;
    if !as_json {
        // The same reading as `strata top`: shard states, then the controller's
        // introspection, for names, statuses and tables' logical uppers.
        let mut loader = crate::top::Loader::new(client, url);
        let mut snapshot = location::within(url, timeout, loader.load()).await?;
        snapshot.taken_at_ms = crate::top::now_ms();
        let mut model = crate::top::TopModel::new(url, 0, 1);
        model.apply(snapshot);
        return write_stdout(&collections_table(&model, raw));
    }
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
    print_json(&report)
}

/// The table of `inspect collections`: 80 columns, or wider with `raw`.
pub(crate) fn collections_table(model: &crate::top::TopModel, raw: bool) -> String {
    use crate::top::{Frontier, time_text};
    let mut out = format!(
        "catalog epoch {} · as of {} UTC · times are UTC{}\n",
        model.epoch.unwrap_or(0),
        model
            .refreshed_at_ms
            .map_or_else(|| "-".to_owned(), time_text),
        if raw { " (raw)" } else { "" },
    );
    if let Some(ago) = model.stale_for_ms {
        out.push_str(&format!(
            "statuses marked * are stale: no controller has written introspection for {}\n",
            crate::top::Lag::Millis(ago).text()
        ));
    }
    let time = |f: Frontier| if raw { f.text() } else { f.time_text() };
    let name_width = model
        .rows
        .iter()
        .map(|r| r.name.chars().count().min(20))
        .max()
        .unwrap_or(4)
        .max(4);
    let cut = |name: &str| {
        if name.chars().count() <= 20 {
            name.to_owned()
        } else {
            format!("{}…", name.chars().take(19).collect::<String>())
        }
    };
    let tw = if raw { 14 } else { 12 };
    out.push_str(&format!(
        "{:<5} {:<name_width$} {:<9} {:>tw$} {:>tw$} {:>6} {:>5}{}\n",
        "ID",
        "NAME",
        "STATUS",
        "SINCE",
        "UPPER",
        "LAG",
        "PARTS",
        if raw { "  SHARD" } else { "" },
    ));
    for row in &model.rows {
        // A shard never written has no frontiers and no status yet.
        let unwritten = matches!(row.since, Frontier::Unknown)
            && matches!(row.upper, Frontier::Unknown)
            && row.status == "-";
        out.push_str(&format!(
            "{:<5} {:<name_width$} {:<9} {:>tw$} {:>tw$} {:>6} {:>5}{}\n",
            row.id,
            cut(&row.name),
            if unwritten { "unwritten" } else { &row.status },
            time(row.since),
            time(row.upper),
            row.lag.text(),
            row.parts.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            if raw {
                format!("  {}", row.shard)
            } else {
                String::new()
            },
        ));
    }
    if model.rows.is_empty() {
        out.push_str("(no collections)\n");
    }
    out
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
}
