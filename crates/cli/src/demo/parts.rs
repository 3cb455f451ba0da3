//! Step 5, continued: where the data lives. A shard keeps small batches inline in its
//! state and writes larger ones as Parquet parts under the location; this lists both
//! per collection and prints the command that opens a part with a Parquet reader that
//! nobody here wrote.

use strata_controller_api::{Collections, GlobalId};
use strata_persist_backend::ShardInspect;
use strata_persist_backend::location::LocationSpec;

use super::driver::Driver;
use super::options::short_path;
use super::plan;
use super::progress::table;

/// What the location holds as parts, over the demo's collections.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PartsTotal {
    pub(crate) parts: usize,
    pub(crate) bytes: u64,
}

/// One collection's storage, read from its shard's state.
struct Stored {
    parts: usize,
    bytes: u64,
    inline_batches: usize,
    inline_updates: u64,
    /// The key of its largest part.
    largest: Option<(u64, String)>,
}

fn stored(state: &ShardInspect) -> Stored {
    let mut s = Stored {
        parts: 0,
        bytes: 0,
        inline_batches: 0,
        inline_updates: 0,
        largest: None,
    };
    for batch in &state.batches {
        let inline = batch.inline_updates as u64;
        if inline > 0 {
            s.inline_batches += 1;
            s.inline_updates += inline;
        }
        for part in &batch.parts {
            s.parts += 1;
            s.bytes += part.bytes;
            if s.largest.as_ref().is_none_or(|(b, _)| part.bytes > *b) {
                s.largest = Some((part.bytes, part.key.clone()));
            }
        }
    }
    s
}

/// `bytes` for people: B, KiB or MiB with one decimal.
pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Commands that print the part at `key` of the location `url` with pyarrow and with
/// DuckDB; none for `mem://`, whose parts no other process can see.
pub(crate) fn read_commands(url: &str, key: &str) -> Vec<String> {
    let target = match LocationSpec::parse(url) {
        Ok(LocationSpec::File { path }) => short_path(&path.join(key)),
        Ok(LocationSpec::S3 { bucket, prefix }) => {
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                format!("s3://{bucket}/{key}")
            } else {
                format!("s3://{bucket}/{prefix}/{key}")
            }
        }
        _ => return Vec::new(),
    };
    vec![
        format!("python3 -c \"import pyarrow.parquet as pq; print(pq.read_table('{target}'))\""),
        format!("duckdb -c \"SELECT * FROM '{target}' LIMIT 5\""),
    ]
}

/// Lists every live collection of the demo with its parts and inline batches, and how
/// to read its largest part.
pub(crate) async fn parts(driver: &mut Driver, url: &str) -> anyhow::Result<PartsTotal> {
    let mut ids: Vec<(GlobalId, strata_controller_api::ShardId)> = driver
        .ctl
        .active_collection_metadatas()
        .into_iter()
        .filter(|(id, _)| matches!(id, GlobalId::User(_)))
        .map(|(id, meta)| (id, meta.data_shard))
        .collect();
    ids.sort();
    let mut rows = Vec::new();
    let mut total = PartsTotal::default();
    let mut example: Option<(u64, String, GlobalId)> = None;
    for (id, shard) in ids {
        let state = driver.client.inspect_shard(shard).await?;
        let s = stored(&state);
        total.parts += s.parts;
        total.bytes += s.bytes;
        if let Some((bytes, key)) = s.largest
            && example.as_ref().is_none_or(|(b, ..)| bytes > *b)
        {
            example = Some((bytes, key, id));
        }
        rows.push(vec![
            plan::name(id),
            s.parts.to_string(),
            human_bytes(s.bytes),
            format!("{} ({} updates)", s.inline_batches, s.inline_updates),
        ]);
    }
    driver
        .display
        .line("  storage: batches above 4 KiB are Parquet parts, smaller ones stay inline in the shard's state");
    driver.display.line(&table(
        &["collection", "parts", "part bytes", "inline batches"],
        &rows,
    ));
    match example {
        Some((bytes, key, id)) => {
            let commands = read_commands(url, &key);
            if commands.is_empty() {
                driver.display.line(
                    "  (mem:// keeps its parts inside this process: use --persist file://… to open one)",
                );
            } else {
                driver.display.line(&format!(
                    "  read {}'s largest part ({}) with any Parquet reader:",
                    plan::name(id),
                    human_bytes(bytes)
                ));
                for command in commands {
                    driver.display.line(&format!("    {command}"));
                }
            }
        }
        None => driver
            .display
            .line("  no parts yet: every batch so far is small enough to stay inline"),
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_for_people() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (5 * 1024 * 1024, "5.0 MiB"),
        ] {
            assert_eq!(human_bytes(bytes), text);
        }
    }

    #[test]
    fn commands_to_read_a_part() {
        let key = "shards/s1/parts/w1/p1";
        let file = read_commands("file:///data/strata", key);
        assert_eq!(
            file,
            [
                "python3 -c \"import pyarrow.parquet as pq; print(pq.read_table('/data/strata/shards/s1/parts/w1/p1'))\"",
                "duckdb -c \"SELECT * FROM '/data/strata/shards/s1/parts/w1/p1' LIMIT 5\"",
            ]
        );
        let s3 = read_commands("s3://bucket/some/prefix/", key);
        assert!(
            s3[1].contains("'s3://bucket/some/prefix/shards/s1/parts/w1/p1'"),
            "{s3:?}"
        );
        let bare = read_commands("s3://bucket", key);
        assert!(
            bare[0].contains("'s3://bucket/shards/s1/parts/w1/p1'"),
            "{bare:?}"
        );
        assert!(read_commands("mem://demo", key).is_empty());
    }

    #[test]
    fn storage_of_a_shard_state() {
        use strata_persist_backend::inspect::{BatchInspect, PartInspect};
        let batch = |inline_updates: usize, parts: &[(&str, u64)]| BatchInspect {
            lower: vec![0],
            upper: vec![1],
            since: vec![0],
            parts: parts
                .iter()
                .map(|(key, bytes)| PartInspect {
                    key: (*key).to_owned(),
                    len: 1,
                    bytes: *bytes,
                })
                .collect(),
            inline_updates,
            len: 1,
            bytes: 0,
        };
        let state = ShardInspect {
            shard: "s1".to_owned(),
            name: String::new(),
            seqno: 4,
            since: vec![0],
            upper: vec![1],
            tombstone: false,
            batches: vec![
                batch(3, &[]),
                batch(0, &[("a", 10), ("b", 30)]),
                batch(0, &[("c", 20)]),
            ],
            part_count: 3,
            leased_readers: Vec::new(),
            critical_readers: Vec::new(),
            writers: Vec::new(),
            garbage: Vec::new(),
            schema: serde_json::Value::Null,
        };
        let s = stored(&state);
        assert_eq!(
            (s.parts, s.bytes, s.inline_batches, s.inline_updates),
            (3, 60, 1, 3)
        );
        assert_eq!(s.largest, Some((30, "b".to_owned())));
    }
}
