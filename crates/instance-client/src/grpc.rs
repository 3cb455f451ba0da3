//! The `grpc` transport: one tonic bidirectional stream per connection, with optional
//! TLS (rustls) and a bearer token checked by the server.
//!
//! Both ends can run over any byte stream: [`GrpcConnector::with_dialer`] replaces the
//! TCP dial and [`serve`] takes any stream of accepted connections, so tests and
//! simulations can run the real protocol over in-memory or faulty networks.
//!
//! A peer that sends bytes that are not HTTP/2, a message that does not decode, or one
//! that does not validate loses its connection; nothing else is affected.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use strata_controller_api::StorageTimestamp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig, Uri};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::{ProtoStorageCommand, ProtoStorageResponse};
use crate::proto_grpc::storage_replica_client::StorageReplicaClient;
use crate::proto_grpc::storage_replica_server::{StorageReplica, StorageReplicaServer};
use crate::protocol::{ReplicaResponse, StorageCommand};
use crate::transport::{
    EpochFence, ReplicaConnection, ReplicaConnector, ReplicaHandler, TransportError,
    serve_connection,
};

/// A byte stream a gRPC connection can run over.
pub trait GrpcIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin + 'static> GrpcIo for S {}

/// Opens a byte stream to the given URI, in place of a TCP dial.
pub type Dialer = Arc<dyn Fn(Uri) -> BoxFuture<'static, io::Result<Box<dyn GrpcIo>>> + Send + Sync>;

fn connect_error(
    target: &str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> TransportError {
    TransportError::Connect {
        target: target.to_owned(),
        source: Arc::new(source),
    }
}

/// TLS settings of a client: the CA that signs the replica's certificate and the name
/// the certificate is for.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM of the trusted CA (or of a self-signed server certificate).
    pub ca_pem: Vec<u8>,
    /// The server name to verify, such as `localhost`.
    pub domain: String,
}

/// Connects to a replica's gRPC server.
#[derive(Clone)]
pub struct GrpcConnector {
    uri: String,
    endpoint: Endpoint,
    token: Option<String>,
    dialer: Option<Dialer>,
}

impl std::fmt::Debug for GrpcConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcConnector")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Makes sure rustls has a process-wide crypto provider before a TLS config is built.
///
/// tonic's TLS is built with ring, but a binary that also links the S3 client gets
/// aws-lc-rs too, and with two providers rustls refuses to pick one and panics. ring is
/// installed unless the host program installed a provider first.
fn ensure_crypto_provider() {
    // An error only means a provider is already installed, which is what we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl GrpcConnector {
    /// A connector to `uri` (`http://host:port`, or `https://…` with TLS).
    pub fn new(uri: &str, tls: Option<ClientTls>) -> Result<Self, TransportError> {
        let mut endpoint =
            Endpoint::from_shared(uri.to_owned()).map_err(|e| connect_error(uri, e))?;
        if let Some(tls) = tls {
            ensure_crypto_provider();
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(tls.ca_pem))
                .domain_name(tls.domain);
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| connect_error(uri, e))?;
        }
        Ok(GrpcConnector {
            uri: uri.to_owned(),
            endpoint,
            token: None,
            dialer: None,
        })
    }

    /// Sends `token` as `authorization: Bearer <token>` on every connection.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Dials with `dialer` instead of TCP.
    pub fn with_dialer(mut self, dialer: Dialer) -> Self {
        self.dialer = Some(dialer);
        self
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, TransportError> {
        let result = match &self.dialer {
            None => self.endpoint.connect().await,
            Some(dialer) => {
                let dialer = Arc::clone(dialer);
                let service = tower::service_fn(move |uri: Uri| {
                    let dial = dialer(uri);
                    async move { dial.await.map(hyper_util::rt::TokioIo::new) }
                });
                self.endpoint.connect_with_connector(service).await
            }
        };
        result.map_err(|e| connect_error(&self.uri, e))
    }
}

#[async_trait]
impl<T: StorageTimestamp> ReplicaConnector<T> for GrpcConnector {
    async fn connect(&self) -> Result<ReplicaConnection<T>, TransportError> {
        let channel = self.channel().await?;
        let bearer = match &self.token {
            Some(token) => Some(
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|e| connect_error(&self.uri, e))?,
            ),
            None => None,
        };
        let mut client =
            StorageReplicaClient::with_interceptor(channel, move |mut request: Request<()>| {
                if let Some(bearer) = &bearer {
                    request
                        .metadata_mut()
                        .insert("authorization", bearer.clone());
                }
                Ok(request)
            });
        let (command_tx, command_rx) = mpsc::unbounded_channel::<StorageCommand<T>>();
        let (response_tx, response_rx) = mpsc::unbounded_channel();
        // The command stream ends with the response stream (when the task below
        // returns and drops `stopped`), so that the connection's command channel
        // closes too: that is how the instance's replica task learns of the end.
        let (stopped, stop) = tokio::sync::oneshot::channel::<()>();
        let outbound = UnboundedReceiverStream::new(command_rx)
            .map(|c| ProtoStorageCommand::from(&c))
            .take_until(stop);
        let target = self.uri.clone();
        tokio::spawn(async move {
            let _stopped = stopped;
            let mut inbound = match client.command_response_stream(Request::new(outbound)).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::warn!(%target, %status, "replica refused the stream");
                    return;
                }
            };
            loop {
                let response = match inbound.message().await {
                    Ok(Some(proto)) => ReplicaResponse::<T>::try_from(proto),
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(%target, %status, "replica stream failed");
                        return;
                    }
                };
                match response {
                    Ok(response) => {
                        if response_tx.send(response).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%target, %error, "malformed response, closing the connection");
                        return;
                    }
                }
            }
        });
        Ok(ReplicaConnection {
            commands: command_tx,
            responses: response_rx,
        })
    }

    fn target(&self) -> String {
        self.uri.clone()
    }
}

/// Settings of a replica's gRPC server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// The server's certificate chain and private key, as PEM; `None` serves plaintext.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// The bearer token clients must present; `None` accepts any client.
    pub token: Option<String>,
}

/// Wraps an accepted byte stream so tonic can serve it.
#[derive(Debug)]
pub struct Accepted<S>(pub S);

impl<S> tonic::transport::server::Connected for Accepted<S> {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl<S: AsyncRead + Unpin> AsyncRead for Accepted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Accepted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The tonic service in front of a [`ReplicaHandler`].
struct Service<T> {
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
}

type ResponseStream =
    Pin<Box<dyn futures::Stream<Item = Result<ProtoStorageResponse, Status>> + Send>>;

#[async_trait]
impl<T: StorageTimestamp> StorageReplica for Service<T> {
    type CommandResponseStreamStream = ResponseStream;

    async fn command_response_stream(
        &self,
        request: Request<Streaming<ProtoStorageCommand>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut stream = request.into_inner();
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (response_tx, mut response_rx) = mpsc::unbounded_channel::<ReplicaResponse<T>>();
        let reader = async move {
            loop {
                let item = match stream.message().await {
                    Ok(Some(proto)) => {
                        StorageCommand::<T>::try_from(proto).map_err(TransportError::from)
                    }
                    // The client half-closed: the commands end, and so does the
                    // connection once the handler has seen that.
                    Ok(None) => return,
                    Err(status) => Err(TransportError::Protocol {
                        source: crate::ProtoError::Decode {
                            reason: status.message().to_owned(),
                        },
                    }),
                };
                let failed = item.is_err();
                if inbound_tx.send(item).is_err() || failed {
                    return;
                }
            }
        };
        let serve = serve_connection(
            Arc::clone(&self.handler),
            Arc::clone(&self.fence),
            inbound_rx,
            response_tx,
        );
        tokio::spawn(async move {
            tokio::spawn(reader);
            // Responses flow while the handler serves this connection. The stream ends
            // when serving ends, even if the handler keeps a sender for later.
            tokio::pin!(serve);
            let send = |response: &ReplicaResponse<T>| {
                let _ = out_tx.send(Ok(ProtoStorageResponse::from(response)));
            };
            let result = loop {
                tokio::select! {
                    result = &mut serve => break result,
                    response = response_rx.recv() => match response {
                        Some(response) => send(&response),
                        None => break serve.await,
                    },
                }
            };
            // What the handler sent before it returned still goes out.
            while let Ok(response) = response_rx.try_recv() {
                send(&response);
            }
            if let Err(error) = result {
                tracing::info!(%error, "closing replica connection");
                let status = match error {
                    TransportError::Fenced { .. } => Status::failed_precondition(error.to_string()),
                    TransportError::Closed => return,
                    _ => Status::invalid_argument(error.to_string()),
                };
                let _ = out_tx.send(Err(status));
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            out_rx,
        ))))
    }
}

/// Compares tokens in time independent of where they differ.
fn token_matches(expected: &[u8], got: &[u8]) -> bool {
    expected.len() == got.len()
        && expected
            .iter()
            .zip(got)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Serves `handler` on every connection `incoming` yields, until `shutdown` resolves.
///
/// The fence is shared by every connection: a `Hello` with an epoch lower than the
/// highest seen is refused, and a higher one ends the commands of older connections.
pub async fn serve<T, S, IO>(
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    config: ServerConfig,
    incoming: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TransportError>
where
    T: StorageTimestamp,
    S: futures::Stream<Item = io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let server_error = |e: tonic::transport::Error| connect_error("grpc server", e);
    let mut builder = tonic::transport::Server::builder();
    if let Some((cert, key)) = &config.tls {
        ensure_crypto_provider();
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(server_error)?;
    }
    let token = config.token.clone();
    let service = StorageReplicaServer::with_interceptor(
        Service { handler, fence },
        move |request: Request<()>| {
            let Some(token) = &token else {
                return Ok(request);
            };
            let presented = request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes().to_vec());
            let expected = format!("Bearer {token}");
            match presented {
                Some(p) if token_matches(expected.as_bytes(), &p) => Ok(request),
                _ => Err(Status::unauthenticated("missing or wrong bearer token")),
            }
        },
    );
    let incoming = incoming.map(|io| io.map(Accepted));
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(server_error)
}

/// [`serve`] on a TCP address, for a replica process (`strata replica --listen ADDR`).
pub async fn serve_tcp<T: StorageTimestamp>(
    handler: Arc<dyn ReplicaHandler<T>>,
    fence: Arc<EpochFence>,
    config: ServerConfig,
    addr: std::net::SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TransportError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| connect_error(&addr.to_string(), e))?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    serve(handler, fence, config, incoming, shutdown).await
}

#[cfg(all(test, feature = "local"))]
mod tests;
