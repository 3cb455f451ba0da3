//! Steps 4 and 5: introspection (the controller's view of every collection, the
//! introspection collections, statuses and statistics) and small snapshots.

use strata_controller_api::{
    Collections, Datum, GlobalId, IntrospectionType, Reads, RelationDesc, Row,
};

use super::driver::{Driver, now_ms, show};
use super::plan::{self, AUCTIONS_ID, ORDERS};
use super::progress::table;

/// How many rows a small result table shows.
const SHOWN: usize = 5;

/// The introspection collections step 4 prints rows of.
const SHOWN_KINDS: [IntrospectionType; 6] = [
    IntrospectionType::ShardMapping,
    IntrospectionType::Frontiers,
    IntrospectionType::SourceStatistics,
    IntrospectionType::SinkStatistics,
    IntrospectionType::SourceStatusHistory,
    IntrospectionType::SinkStatusHistory,
];

/// The number in the first column of a row, for ordering rows newest first.
fn first_number(row: &Row) -> i128 {
    match row.unpack().first() {
        Some(Datum::Int64(n)) => i128::from(*n),
        Some(Datum::UInt64(n)) | Some(Datum::TimestampMillis(n)) => i128::from(*n),
        _ => 0,
    }
}

/// A datum as a table cell.
fn cell(datum: &Datum) -> String {
    let text = match datum {
        Datum::Null => "null".to_owned(),
        Datum::String(s) | Datum::Jsonb(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(39).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Up to [`SHOWN`] rows of `rows` (newest first), with `desc`'s column names and a
/// `count` column when a row occurs more than once.
pub(crate) fn result_table(desc: &RelationDesc, rows: &[(Row, i64)]) -> String {
    let mut sorted: Vec<&(Row, i64)> = rows.iter().collect();
    sorted.sort_by_key(|(row, _)| std::cmp::Reverse(first_number(row)));
    let multi = rows.iter().any(|(_, d)| *d != 1);
    let mut header: Vec<&str> = desc.names().collect();
    if multi {
        header.push("count");
    }
    let body: Vec<Vec<String>> = sorted
        .iter()
        .take(SHOWN)
        .map(|(row, diff)| {
            let mut cells: Vec<String> = row.unpack().iter().map(cell).collect();
            if multi {
                cells.push(diff.to_string());
            }
            cells
        })
        .collect();
    let mut text = table(&header, &body);
    if rows.len() > SHOWN {
        text.push_str(&format!("\n  … {} more rows", rows.len() - SHOWN));
    }
    text
}

/// Step 4: the collections as the controller sees them, then the introspection
/// collections' contents, statuses and statistics.
pub(crate) async fn introspection(driver: &mut Driver) -> anyhow::Result<()> {
    driver.ctl.apply_pending();
    let now = now_ms();
    let mut rows = Vec::new();
    let mut ids: Vec<(GlobalId, String, String)> = driver
        .ctl
        .active_collection_metadatas()
        .into_iter()
        .map(|(id, meta)| (id, plan::name(id), meta.data_shard.to_string()))
        .collect();
    ids.sort_by_key(|(id, ..)| (matches!(id, GlobalId::System(_)), *id));
    for (id, name, shard) in ids {
        let Some((since, upper)) = driver.frontiers(id) else {
            continue;
        };
        let lag = upper.map_or_else(
            || "-".to_owned(),
            |u| format!("{} ms", now.saturating_sub(u)),
        );
        rows.push(vec![
            name,
            id.to_string(),
            shard,
            show(since),
            show(upper),
            lag,
        ]);
    }
    driver.display.line("  collections (controller view):");
    driver.display.line(&table(
        &["name", "id", "shard", "since", "upper", "lag"],
        &rows,
    ));

    driver.display.line("  introspection collections:");
    for kind in SHOWN_KINDS {
        let id = plan::introspection_id(kind);
        let name = plan::introspection_name(kind);
        let rows = match driver.ctl.snapshot_latest(id).await {
            Ok(rows) => rows,
            Err(error) => {
                driver
                    .display
                    .line(&format!("  {name}: cannot read it: {error}"));
                continue;
            }
        };
        let upper = driver.upper(id);
        if rows.is_empty() {
            let note = if upper == 0 {
                "not written yet"
            } else {
                "empty"
            };
            driver.display.line(&format!("  {name}: 0 rows ({note})"));
            continue;
        }
        driver.display.line(&format!(
            "  {name}: {} rows as of {}",
            rows.len(),
            upper.saturating_sub(1)
        ));
        let desc = strata_introspection::schema::desc(kind);
        driver.display.line(&result_table(&desc, &rows));
    }

    driver
        .display
        .line("  statuses (reported by the replicas):");
    let statuses: Vec<Vec<String>> = driver
        .statuses
        .values()
        .map(|s| {
            vec![
                plan::name(s.id),
                s.status.to_string(),
                s.replica_id
                    .map_or_else(|| "-".to_owned(), |r| r.to_string()),
                s.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if statuses.is_empty() {
        driver.display.line("  (none yet)");
    } else {
        driver
            .display
            .line(&table(&["object", "status", "replica", "error"], &statuses));
    }

    let upper = driver.upper(AUCTIONS_ID);
    if let Some(as_of) = upper.checked_sub(1) {
        let as_of = strata_controller_api::Antichain::from_elem(
            strata_controller_api::Timestamp::new(as_of),
        );
        if let Ok(stats) = driver.ctl.snapshot_stats(AUCTIONS_ID, as_of).await {
            driver.display.line(&format!(
                "  statistics: auctions' snapshot reads {} updates; {} frontier reports and {} status updates so far",
                stats.num_updates, driver.frontier_reports, driver.status_updates
            ));
        }
    }
    Ok(())
}

/// Step 5: a table and a subsource, read at their latest readable time.
pub(crate) async fn snapshots(driver: &mut Driver) -> anyhow::Result<(usize, usize)> {
    let mut counts = Vec::new();
    for id in [ORDERS, AUCTIONS_ID] {
        driver.ctl.apply_pending();
        let upper = driver.upper(id);
        let rows = driver.ctl.snapshot_latest(id).await?;
        let desc = driver.ctl.collection_metadata(id)?.relation_desc;
        driver.display.line(&format!(
            "  {} as of {}: {} rows, newest first",
            plan::name(id),
            upper.saturating_sub(1),
            rows.len()
        ));
        driver.display.line(&result_table(&desc, &rows));
        counts.push(rows.len());
    }
    Ok((
        counts.first().copied().unwrap_or(0),
        counts.get(1).copied().unwrap_or(0),
    ))
}
