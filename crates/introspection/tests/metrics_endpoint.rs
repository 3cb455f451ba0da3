//! The `/metrics` endpoint serves text that a strict Prometheus/OpenMetrics text
//! parser accepts.

#![cfg(test)]

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use strata_introspection::{Metrics, serve_metrics};

/// One parsed sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or(format!("label without =\": {rest}"))?;
        if !valid_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(labels)
}

/// A strict parser of the text format: comments are HELP/TYPE/UNIT/EOF, every sample
/// belongs to a declared family, values are floats, and `# EOF` ends the text.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut families = BTreeSet::new();
    let mut samples = Vec::new();
    let mut saw_eof = false;
    for line in text.lines() {
        if saw_eof {
            return Err(format!("text after # EOF: {line}"));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("EOF"), None, None) => saw_eof = true,
                (Some("TYPE"), Some(name), Some(typ)) => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                        "gaugehistogram",
                    ];
                    if !valid_name(name) || !known.contains(&typ) {
                        return Err(format!("bad TYPE line {line}"));
                    }
                    families.insert(name.to_owned());
                }
                (Some("HELP" | "UNIT"), Some(name), _) if valid_name(name) => {}
                _ => return Err(format!("bad comment {line}")),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or(format!("no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value in {line}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                parse_labels(
                    rest.strip_suffix('}')
                        .ok_or(format!("unclosed labels: {line}"))?,
                )?,
            ),
            None => (series, Vec::new()),
        };
        if !valid_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let family = ["_total", "_bucket", "_sum", "_count", "_created", "_info"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        if !families.contains(family) {
            return Err(format!("sample {name} of an undeclared family"));
        }
        samples.push((name.to_owned(), labels, value));
    }
    if !saw_eof {
        return Err("missing # EOF".into());
    }
    Ok(samples)
}

#[test]
fn the_parser_rejects_malformed_text() {
    assert!(parse("# TYPE a counter\na_total 1\n# EOF\n").is_ok());
    for bad in [
        "a_total 1\n# EOF\n",
        "# TYPE a counter\na_total one\n# EOF\n",
        "# TYPE a counter\na_total{x=\"1} 1\n# EOF\n",
        "# TYPE a counter\na_total 1\n",
        "# TYPE a counter\n# EOF\na_total 1\n",
        "# TYPE 1a counter\n# EOF\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
}

async fn get(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_parses() {
    let metrics = Metrics::new();
    let c = &metrics.controller;
    c.command_sent("i1", "r1", "run_ingestion");
    c.command_sent("i1", "r1", "run_ingestion");
    c.response_received("i1", "r1", "frontier_upper");
    c.set_history_size("i1", 12);
    c.cas_retry("s3");
    c.observe_persist_op("compare_and_append", Duration::from_millis(3));
    c.set_frontier_lag("u7", 1_000, 400);
    c.managed_write("s3", "ok");
    metrics.replica.command_received("create_sources");
    metrics.replica.batch_committed("u7", 42);
    metrics.replica.dataflows.set(2);

    let server = serve_metrics("127.0.0.1:0".parse().unwrap(), metrics.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    let response = get(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let samples = parse(body).unwrap_or_else(|e| panic!("{e}\n{body}"));

    let value = |name: &str, label: (&str, &str)| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| (k.as_str(), v.as_str()) == label))
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        value("strata_commands_sent_total", ("kind", "run_ingestion")),
        Some(2.0)
    );
    assert_eq!(
        value("strata_responses_total", ("kind", "frontier_upper")),
        Some(1.0)
    );
    assert_eq!(
        value("strata_command_history_size", ("instance", "i1")),
        Some(12.0)
    );
    assert_eq!(
        value("strata_cas_retries_total", ("collection", "s3")),
        Some(1.0)
    );
    assert_eq!(
        value(
            "strata_persist_op_seconds_count",
            ("op", "compare_and_append")
        ),
        Some(1.0)
    );
    assert_eq!(
        value("strata_frontier_lag_ms", ("collection", "u7")),
        Some(600.0)
    );
    assert_eq!(
        value("strata_replica_updates_written_total", ("collection", "u7")),
        Some(42.0)
    );
    assert!(
        samples
            .iter()
            .any(|(n, _, v)| n == "strata_replica_dataflows" && *v == 2.0)
    );

    let not_found = get(addr, "GET /other HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(not_found.starts_with("HTTP/1.1 404"), "{not_found}");
    let not_allowed = get(addr, "POST /metrics HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(not_allowed.starts_with("HTTP/1.1 405"), "{not_allowed}");
    assert!(not_allowed.contains("allow: GET"), "{not_allowed}");
    server.shutdown().await;
}

/// Reads one response (head and a body of its content-length) off a kept-alive stream.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "the connection closed mid-response");
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            if body.len() >= length {
                return text;
            }
        }
    }
}

/// Shutting down answers the request in flight, closes kept-alive connections and
/// releases the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_kept_alive_connections_and_the_listener() {
    let server = serve_metrics("127.0.0.1:0".parse().unwrap(), Metrics::new())
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");

    // The connection is idle and kept alive: shutdown closes it and then returns.
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown waits for an idle kept-alive connection");
    let mut rest = Vec::new();
    let n = stream.read_to_end(&mut rest).await.unwrap_or(0);
    assert_eq!(n, 0, "after shutdown: {:?}", String::from_utf8_lossy(&rest));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
