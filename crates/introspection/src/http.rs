//! A tiny HTTP/1.1 server that serves [`Metrics`] at `GET /metrics`.
//!
//! It reads one request per connection (the head only, at most 8 KiB, within five
//! seconds), answers and closes. Anything but `GET /metrics` gets 404 or 405. That is
//! all a Prometheus scraper needs, without a web framework.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Binding the listener failed (determinate: nothing is listening).
    #[error("binding the metrics listener to {addr} failed: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Listens on `addr` (port 0 picks a free port) and serves `metrics` at `/metrics`.
/// Returns the bound address and the accept loop's task; abort the task to stop.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Metrics,
) -> Result<(SocketAddr, JoinHandle<()>), ServeError> {
    let bind = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    let task = tokio::spawn(accept_loop(listener, metrics));
    Ok((local, task))
}

async fn accept_loop(listener: TcpListener, metrics: Metrics) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(error) = handle(stream, &metrics).await {
                        tracing::debug!(%peer, %error, "metrics connection failed");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            break;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

/// The status line and body for a request line such as `GET /metrics HTTP/1.1`.
fn route(request_line: &str, metrics: &Metrics) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, metrics.encode()),
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let text = String::from_utf8_lossy(&head);
    let request_line = text.lines().next().unwrap_or("");
    let (status, content_type, body) = route(request_line, metrics);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(request_line: &str, expected_status: &str) {
        let (status, _, _) = route(request_line, &Metrics::new());
        assert_eq!(status, expected_status, "{request_line}");
    }

    #[test]
    fn routes() {
        check("GET /metrics HTTP/1.1", "200 OK");
        check("GET /metrics?x=1 HTTP/1.0", "200 OK");
        check("POST /metrics HTTP/1.1", "405 Method Not Allowed");
        check("GET / HTTP/1.1", "404 Not Found");
        check("", "404 Not Found");
    }
}
