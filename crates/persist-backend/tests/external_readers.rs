//! A part is a plain Parquet file that tools nobody here wrote can read: pyarrow reads
//! one written by Strata, with every scalar type, and finds the rows, times and diffs
//! Strata wrote. `cargo xtask test` installs pyarrow beside the S3 server and names its
//! interpreter in `STRATA_PYTHON`; without it the test returns early.
#![cfg(feature = "file")]

use strata_controller_api::{Antichain, Datum, RelationDesc, Row, ScalarType, Timestamp};
use strata_persist_backend::{PersistClient, PersistConfig};

/// Prints the part's schema and rows as JSON, using nothing but pyarrow.
const READ_WITH_PYARROW: &str = r#"
import json, sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
def plain(v):
    if isinstance(v, bytes):
        return "0x" + v.hex()
    return v
print(json.dumps({
    "columns": [[f.name, str(f.type)] for f in table.schema],
    "rows": [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()],
}))
"#;

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("b", ScalarType::Bool.nullable(true))
        .with_column("i", ScalarType::Int64.nullable(false))
        .with_column("u", ScalarType::UInt64.nullable(true))
        .with_column("f", ScalarType::Float64.nullable(true))
        .with_column("s", ScalarType::String.nullable(true))
        .with_column("y", ScalarType::Bytes.nullable(true))
        .with_column("j", ScalarType::Jsonb.nullable(true))
        .with_column("t", ScalarType::TimestampMillis.nullable(true))
        .finish()
}

fn row(i: i64) -> Row {
    if i % 2 == 1 {
        return Row::pack(&[
            Datum::Null,
            Datum::Int64(i),
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Null,
            Datum::Null,
        ]);
    }
    Row::pack(&[
        Datum::Bool(i % 4 == 0),
        Datum::Int64(i),
        Datum::UInt64(u64::MAX - i as u64),
        Datum::Float64(i as f64 / 4.0),
        Datum::String(format!("row {i} ✓")),
        Datum::Bytes(vec![0, 255, i as u8]),
        Datum::Jsonb(format!(r#"{{"n":{i}}}"#)),
        Datum::TimestampMillis(1_700_000_000_000 + i as u64),
    ])
}

#[test]
fn pyarrow_reads_a_part_as_strata_wrote_it() {
    let Ok(python) = std::env::var("STRATA_PYTHON") else {
        eprintln!("pyarrow_reads_a_part_as_strata_wrote_it: STRATA_PYTHON is unset");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let shard = strata_persist_backend::conformance::new_shard();
    let keys = runtime.block_on(async {
        let cfg = PersistConfig {
            inline_threshold_bytes: 0,
            ..PersistConfig::for_tests()
        };
        let client = PersistClient::open_with_config(&url, cfg).await.unwrap();
        let mut w = client
            .open_writer::<Timestamp>(shard, desc())
            .await
            .unwrap();
        let updates: Vec<_> = (0..6)
            .map(|i| {
                (
                    Ok(row(i)),
                    Timestamp::new(10 + i as u64),
                    if i == 5 { -1 } else { 1 },
                )
            })
            .collect();
        w.append(&updates, Antichain::from_elem(Timestamp::new(100)))
            .await
            .unwrap()
            .unwrap();
        client.referenced_part_keys(shard).await.unwrap()
    });
    assert_eq!(keys.len(), 1, "{keys:?}");
    let path = dir.path().join(&keys[0]);
    let out = std::process::Command::new(&python)
        .args(["-c", READ_WITH_PYARROW])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns: Vec<(String, String)> = read["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    let expected_columns = [
        ("b", "bool"),
        ("i", "int64"),
        ("u", "uint64"),
        ("f", "double"),
        ("s", "string"),
        ("y", "binary"),
        ("j", "string"),
        ("t", "uint64"),
        ("ts", "uint64"),
        ("diff", "int64"),
        ("err", "string"),
    ];
    let expected_columns: Vec<(String, String)> = expected_columns
        .iter()
        .map(|(n, t)| ((*n).into(), (*t).into()))
        .collect();
    assert_eq!(columns, expected_columns);
    let mut rows: Vec<serde_json::Value> = read["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["i"].as_i64());
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[2],
        serde_json::json!({
            "b": false, "i": 2, "u": u64::MAX - 2, "f": 0.5, "s": "row 2 ✓",
            "y": "0x00ff02", "j": r#"{"n":2}"#, "t": 1_700_000_000_002u64,
            "ts": 12, "diff": 1, "err": null,
        })
    );
    assert_eq!(
        rows[5],
        serde_json::json!({
            "b": null, "i": 5, "u": null, "f": null, "s": null, "y": null, "j": null,
            "t": null, "ts": 15, "diff": -1, "err": null,
        })
    );
}
