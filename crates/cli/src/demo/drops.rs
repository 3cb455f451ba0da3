//! Step 6: check the sink's output against its input, then drop a subsource and the
//! sink, and watch the subsource's shard get finalized and its parts collected.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use strata_controller_api::{Collections, Exports, Reads, Row, ShardId, StorageTxn, Timestamp};
use strata_replica::sink::file::{Progress, SinkLine, progress_path, read_output};

use super::driver::{Driver, first, sink_frontier};
use super::options::short_path;
use super::plan::{self, AUCTIONS_ID, BIDS_ID};
use super::steps::Sink;

/// How long the demo waits for the sink to catch up and for drops to be confirmed.
const WAIT: Duration = Duration::from_secs(20);

/// How long the demo waits for a dropped shard to be finalized. It takes under a second
/// when the replicas let go of the shard at once; a reader lease left by an interrupted
/// earlier run holds it until the lease expires, and then the next run finishes it.
const FINALIZE_WAIT: Duration = Duration::from_secs(10);

/// What the sink check found.
#[derive(Debug, Clone)]
pub(crate) struct SinkCheck {
    /// The sink file.
    pub(crate) path: PathBuf,
    /// The file with the snapshot the sink was compared with.
    pub(crate) snapshot_path: PathBuf,
    /// Lines in the sink file.
    pub(crate) lines: usize,
    /// The time both sides were compared at: the sink's frontier minus one.
    pub(crate) as_of: u64,
    /// Distinct rows at that time.
    pub(crate) rows: usize,
}

/// What a shard holds: batches and updates in its state, and part blobs beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ShardParts {
    pub(crate) batches: usize,
    pub(crate) updates: u64,
    pub(crate) blobs: usize,
    pub(crate) tombstone: bool,
}

impl std::fmt::Display for ShardParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} batches, {} updates, {} part blobs",
            self.batches, self.updates, self.blobs
        )?;
        if self.tombstone {
            f.write_str(", tombstone")?;
        }
        Ok(())
    }
}

impl ShardParts {
    /// Finalized: tombstoned, and nothing left in state or beside it.
    pub(crate) fn finalized(&self) -> bool {
        self.tombstone && self.batches == 0 && self.blobs == 0
    }
}

/// What happened to the dropped subsource's shard.
#[derive(Debug, Clone)]
pub(crate) struct Finalized {
    pub(crate) shard: ShardId,
    pub(crate) before: ShardParts,
    pub(crate) after: ShardParts,
}

/// What step 6 did.
#[derive(Debug, Clone)]
pub(crate) struct Drops {
    pub(crate) sink: SinkCheck,
    /// `None` when `bids` was dropped by an earlier run.
    pub(crate) bids: Option<Finalized>,
}

/// The sink's durable progress marker, if it wrote one.
fn sink_progress(path: &Path) -> anyhow::Result<Option<Progress>> {
    let marker = progress_path(path);
    match std::fs::read(&marker) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("cannot parse {}", marker.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow!(e).context(format!("cannot read {}", marker.display()))),
    }
}

/// Rows with their summed diffs, without zeros.
fn consolidate(updates: impl IntoIterator<Item = (Row, i64)>) -> BTreeMap<Row, i64> {
    let mut out = BTreeMap::new();
    for (row, diff) in updates {
        *out.entry(row).or_insert(0) += diff;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// What `shard` holds now.
async fn parts(driver: &Driver, shard: ShardId) -> anyhow::Result<ShardParts> {
    let blobs = driver
        .client
        .list_part_keys(shard)
        .await
        .with_context(|| format!("cannot list the parts of {shard}"))?
        .len();
    let state = driver
        .client
        .inspect_shard(shard)
        .await
        .with_context(|| format!("cannot read the state of {shard}"))?;
    Ok(ShardParts {
        batches: state.batches.iter().filter(|b| b.len > 0).count(),
        updates: state.batches.iter().map(|b| b.len).sum(),
        blobs,
        tombstone: state.tombstone,
    })
}

/// Step 6. Holds `auctions` so it stays readable at the sink's frontier, drops `bids`
/// (if this run has it) and the sink, compares the sink file with a snapshot, then
/// waits for `bids`' shard to be finalized.
pub(crate) async fn drops(driver: &mut Driver, sink: &Sink) -> anyhow::Result<Drops> {
    let holds = driver.ctl.acquire_read_holds(vec![AUCTIONS_ID])?;
    let held = holds
        .first()
        .and_then(|h| first(h.since()))
        .ok_or_else(|| anyhow!("auctions is closed: nothing to compare the sink with"))?;
    let path = sink.path.clone();
    let caught_up = driver
        .wait_until("sink catching up", WAIT, |_| sink_frontier(&path) > held)
        .await?;
    if !caught_up {
        bail!(
            "the sink did not write past time {held} within {}s (its frontier is {})",
            WAIT.as_secs(),
            sink_frontier(&path)
        );
    }

    let bids_shard = match driver.ctl.collection_metadata(BIDS_ID) {
        Ok(meta) => Some(meta.data_shard),
        Err(_) => None,
    };
    let mut expect_dropped = BTreeSet::from([sink.id]);
    let mut before = ShardParts::default();
    if let Some(shard) = bids_shard {
        before = parts(driver, shard).await?;
        let mut txn = driver.catalog.begin::<Timestamp>();
        driver
            .ctl
            .prepare_state(&mut txn, BTreeSet::new(), BTreeSet::from([BIDS_ID]))
            .await
            .context("cannot record the drop of bids")?;
        txn.commit().await.context("cannot commit the catalog")?;
        driver
            .ctl
            .drop_sources(vec![BIDS_ID])
            .await
            .context("cannot drop bids")?;
        expect_dropped.insert(BIDS_ID);
        driver.display.line(&format!(
            "  dropped subsource bids (shard {shard}: {before})"
        ));
    } else {
        driver
            .display
            .line("  subsource bids: already dropped by an earlier run, nothing to drop");
    }
    driver
        .ctl
        .drop_sinks(vec![sink.id])
        .context("cannot drop the sink")?;
    driver
        .display
        .line(&format!("  dropped sink {}", plan::name(sink.id)));
    let confirmed = driver
        .wait_until("drops confirmed", WAIT, |d| {
            expect_dropped.iter().all(|id| d.dropped.contains(id))
        })
        .await?;
    if !confirmed {
        bail!(
            "the replicas did not confirm the drops within {}s",
            WAIT.as_secs()
        );
    }
    driver.display.done();
    let names: Vec<String> = expect_dropped.iter().map(|id| plan::name(*id)).collect();
    driver.display.line(&format!(
        "  the replicas confirmed: {} dropped",
        names.join(", ")
    ));

    let check = check_sink(driver, sink).await?;
    drop(holds);
    driver.display.line(&format!(
        "  sink check: {} ({} lines) consolidates to auctions as of {}: {} rows, equal",
        short_path(&check.path),
        check.lines,
        check.as_of,
        check.rows
    ));

    let bids = match bids_shard {
        Some(shard) => Some(finalize(driver, shard, before).await?),
        None => None,
    };
    Ok(Drops { sink: check, bids })
}

/// Compares the sink file, consolidated, with a snapshot of `auctions` at the sink's
/// final frontier minus one; writes that snapshot beside the sink file.
async fn check_sink(driver: &mut Driver, sink: &Sink) -> anyhow::Result<SinkCheck> {
    let frontier = match sink_progress(&sink.path)? {
        Some(Progress {
            frontier: Some(f), ..
        }) if f > 0 => f,
        other => bail!("the sink left no usable progress marker: {other:?}"),
    };
    let as_of = frontier - 1;
    let written = read_output(&sink.path)
        .with_context(|| format!("cannot read the sink file {}", sink.path.display()))?;
    let lines = written.len();
    let from_sink = consolidate(written.into_iter().map(|(row, _, diff)| (row, diff)));
    let snapshot = driver
        .ctl
        .snapshot(AUCTIONS_ID, Timestamp::new(as_of))
        .await
        .with_context(|| format!("cannot read auctions as of {as_of}"))?;
    let from_source = consolidate(snapshot);

    let snapshot_path = sink.path.with_extension("snapshot.ndjson");
    let mut text = String::new();
    for (row, diff) in &from_source {
        let line = SinkLine {
            row: row.unpack(),
            time: as_of,
            diff: *diff,
        };
        text.push_str(&serde_json::to_string(&line).context("cannot render a snapshot row")?);
        text.push('\n');
    }
    std::fs::write(&snapshot_path, text)
        .with_context(|| format!("cannot write {}", snapshot_path.display()))?;

    if from_sink != from_source {
        let missing = from_source
            .keys()
            .filter(|r| !from_sink.contains_key(*r))
            .count();
        let extra = from_sink
            .keys()
            .filter(|r| !from_source.contains_key(*r))
            .count();
        bail!(
            "the sink file {} does not match auctions as of {as_of}: {missing} rows missing, \
             {extra} rows extra (the snapshot is in {})",
            sink.path.display(),
            snapshot_path.display()
        );
    }
    Ok(SinkCheck {
        path: sink.path.clone(),
        snapshot_path,
        lines,
        as_of,
        rows: from_source.len(),
    })
}

/// Waits for `shard` to be tombstoned and its parts collected, printing what it sees.
async fn finalize(
    driver: &mut Driver,
    shard: ShardId,
    before: ShardParts,
) -> anyhow::Result<Finalized> {
    let mut seen = before;
    let limit = tokio::time::Instant::now() + FINALIZE_WAIT;
    loop {
        seen = parts(driver, shard).await.unwrap_or(seen);
        // The last step of finalization takes the shard off the catalog's list.
        let listed = driver
            .catalog
            .begin::<Timestamp>()
            .get_unfinalized_shards()
            .contains(&shard);
        if (seen.finalized() && !listed) || tokio::time::Instant::now() >= limit {
            break;
        }
        driver
            .display
            .live("finalizing", None, &format!("bids' shard: {seen}"));
        driver.pump(Duration::from_millis(100)).await?;
    }
    driver.display.done();
    if seen.finalized() {
        driver.display.line(&format!(
            "  bids' shard finalized and collected: {before} -> {seen}"
        ));
    } else {
        driver.display.line(&format!(
            "  bids' shard is not finalized yet ({seen}): the catalog lists it as unfinalized, \
             so the controller keeps trying and the next run finishes it"
        ));
    }
    Ok(Finalized {
        shard,
        before,
        after: seen,
    })
}
