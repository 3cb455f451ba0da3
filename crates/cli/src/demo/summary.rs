//! Step 7: the one-screen summary.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_controller_api::GlobalId;

use super::driver::show;
use super::drops::Drops;
use super::options::{Options, Transport, short_path};
use super::plan;
use super::progress::table;
use super::steps::TableWriter;

/// One collection's line of the summary.
pub(crate) struct FrontierRow {
    pub(crate) id: GlobalId,
    pub(crate) kind: &'static str,
    /// The upper when this run re-created it (`None`: created by this run; `Some(None)`:
    /// recovered closed).
    pub(crate) start: Option<Option<u64>>,
    pub(crate) since: Option<u64>,
    pub(crate) upper: Option<u64>,
}

/// Everything the summary reports.
pub(crate) struct Summary<'a> {
    pub(crate) options: &'a Options,
    pub(crate) epoch: u64,
    pub(crate) previous_epoch: Option<u64>,
    pub(crate) recovered: usize,
    /// The replicas, as text (addresses or "in-process").
    pub(crate) replicas: Vec<String>,
    /// How many replica processes stopped on SIGTERM.
    pub(crate) stopped_cleanly: Option<(usize, usize)>,
    pub(crate) writer: &'a TableWriter,
    pub(crate) snapshot_counts: (usize, usize),
    /// The Parquet parts of the live collections after step 5.
    pub(crate) parts: super::parts::PartsTotal,
    pub(crate) drops: &'a Drops,
    /// The user collections' frontiers.
    pub(crate) frontiers: Vec<FrontierRow>,
    pub(crate) statuses: BTreeMap<GlobalId, String>,
    pub(crate) elapsed: Duration,
}

impl Summary<'_> {
    /// The summary as lines of text.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        out.push("summary".to_owned());
        let location = if self.options.is_memory() {
            format!(
                "{} (in memory: nothing survives this process)",
                self.options.persist
            )
        } else {
            self.options.persist.clone()
        };
        out.push(format!("  location    {location}"));
        out.push(format!(
            "  epoch       catalog epoch {}{}",
            self.epoch,
            self.previous_epoch
                .map(|p| format!(" (previous run: {p})"))
                .unwrap_or_default()
        ));
        out.push(if self.recovered > 0 {
            format!(
                "  recovery    recovered {} collections from a previous run; their frontiers continued",
                self.recovered
            )
        } else {
            "  recovery    fresh location: no previous run (run the demo again to see recovery)".to_owned()
        });
        let transport = match self.options.transport {
            Transport::Local => "in-process (local transport)",
            Transport::Grpc => "strata replica processes (grpc)",
        };
        let mut replicas = format!(
            "  replicas    {} × {transport}, {} workers each",
            self.replicas.len(),
            self.options.workers
        );
        if let Some((clean, all)) = self.stopped_cleanly {
            replicas.push_str(&format!("; {clean} of {all} stopped cleanly"));
        }
        out.push(replicas);
        let w = self.writer;
        out.push(format!(
            "  tables      {} atomic appends this run: orders +{} rows ({} before), order_lines +{} rows ({} before)",
            w.appends, w.rows_added.0, w.rows_before.0, w.rows_added.1, w.rows_before.1
        ));
        out.push(format!(
            "  snapshots   orders {} rows, auctions {} rows",
            self.snapshot_counts.0, self.snapshot_counts.1
        ));
        out.push(format!(
            "  parts       {} Parquet parts, {} (any Parquet reader opens them: see step 5)",
            self.parts.parts,
            super::parts::human_bytes(self.parts.bytes)
        ));
        let sink = &self.drops.sink;
        out.push(format!(
            "  sink        {}: {} lines = auctions as of {} ({} rows); compared snapshot in {}",
            short_path(&sink.path),
            sink.lines,
            sink.as_of,
            sink.rows,
            short_path(&sink.snapshot_path)
        ));
        out.push(match &self.drops.bids {
            Some(f) if f.after.finalized() => format!(
                "  dropped     bids (shard {} finalized: {} batches, {} part blobs -> 0 after GC) and the sink",
                f.shard, f.before.batches, f.before.blobs
            ),
            Some(f) => format!(
                "  dropped     bids (shard {} not finalized yet: {}) and the sink",
                f.shard, f.after
            ),
            None => "  dropped     the sink (bids was dropped by an earlier run)".to_owned(),
        });
        let rows: Vec<Vec<String>> = self
            .frontiers
            .iter()
            .map(|row| {
                let from = match row.start {
                    Some(upper) => format!("{} ->", show(upper)),
                    None => "new ->".to_owned(),
                };
                vec![
                    plan::name(row.id),
                    row.kind.to_owned(),
                    show(row.since),
                    from,
                    show(row.upper),
                    self.statuses.get(&row.id).cloned().unwrap_or_default(),
                ]
            })
            .collect();
        out.push(table(
            &[
                "collection",
                "kind",
                "since",
                "upper at start",
                "upper",
                "status",
            ],
            &rows,
        ));
        out.push(format!(
            "  done in {:.1}s. Inspect the durable state with: strata inspect collections --persist {}",
            self.elapsed.as_secs_f64(),
            self.options.persist
        ));
        out.join("\n")
    }
}
