//! Serves [`Metrics`] at `GET /metrics` over HTTP/1.1, with hyper.
//!
//! Any other path gets 404, any other method on `/metrics` gets 405. A connection that
//! does not send a request head within five seconds is closed. Stopping the server
//! ([`MetricsServer::shutdown`], or dropping it) stops accepting, lets every request in
//! flight get its response, and closes idle keep-alive connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// How long a connection may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The OpenMetrics text format, which [`Metrics::encode`] writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

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

/// A running metrics server. Dropping it starts a graceful shutdown in the background;
/// [`MetricsServer::shutdown`] also waits for it to finish.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    /// Dropping or sending stops the accept loop.
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (with the port picked when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits until every open connection has had the
    /// response to its request in flight and is closed.
    pub async fn shutdown(mut self) {
        self.stop.take();
        if let Err(error) = (&mut self.task).await {
            tracing::warn!(%error, "the metrics server's task failed");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        // Dropping the sender wakes the accept loop, which shuts down gracefully.
        self.stop.take();
    }
}

/// Listens on `addr` (port 0 picks a free port) and serves `metrics` at `/metrics` until
/// the returned [`MetricsServer`] is shut down or dropped.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Metrics,
) -> Result<MetricsServer, ServeError> {
    let bind = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local_addr = listener.local_addr().map_err(bind)?;
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, metrics, stopped));
    Ok(MetricsServer {
        local_addr,
        stop: Some(stop),
        task,
    })
}

async fn accept_loop(listener: TcpListener, metrics: Metrics, mut stopped: oneshot::Receiver<()>) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                let service = service_fn(move |request: Request<_>| {
                    let response = respond(request.method(), request.uri().path(), &metrics);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, %error, "metrics connection failed");
                    }
                });
            }
            Err(error) => {
                // Usually out of file descriptors: give connections time to close.
                tracing::warn!(%error, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The status, content type and body of the answer to `method path`.
fn route(method: &Method, path: &str, metrics: &Metrics) -> (StatusCode, &'static str, String) {
    match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, OPENMETRICS, metrics.encode()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "method not allowed\n".into(),
        ),
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    }
}

fn respond(method: &Method, path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = route(method, path, metrics);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(ALLOW, HeaderValue::from_static("GET"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, path: &str, expected: (StatusCode, &str)) {
        let (status, content_type, _) = route(&method, path, &Metrics::new());
        assert_eq!((status, content_type), expected, "{method} {path}");
    }

    #[test]
    fn routes() {
        check(Method::GET, "/metrics", (StatusCode::OK, OPENMETRICS));
        check(
            Method::POST,
            "/metrics",
            (StatusCode::METHOD_NOT_ALLOWED, TEXT),
        );
        check(
            Method::HEAD,
            "/metrics",
            (StatusCode::METHOD_NOT_ALLOWED, TEXT),
        );
        check(Method::GET, "/", (StatusCode::NOT_FOUND, TEXT));
        check(Method::GET, "/metrics/", (StatusCode::NOT_FOUND, TEXT));
        check(Method::POST, "/other", (StatusCode::NOT_FOUND, TEXT));
    }
}
