//! The simulated network between the controller and the replicas: turmoil TCP streams,
//! wrapped so a partition also cuts the connections that cross it.
//!
//! turmoil drops the segments that a partition meets and never retransmits them, so a
//! connection that lived through a partition would hang for good after the repair (the
//! receiver waits for the lost bytes). A real TCP connection fails once its
//! retransmission timeout runs out, and that is what the controller's reconnect loop
//! is built for; [`Links::cut`] plays that timeout: every stream of the link fails with
//! `ConnectionReset` at its next read or write, and pending reads and writes are woken
//! to see it. Streams opened after the cut are unaffected.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use strata_instance_client::grpc::{Dialer, GrpcIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The port every replica host serves gRPC on.
pub(crate) const REPLICA_PORT: u16 = 7000;

/// What one open stream shares with its link, so a cut can wake it.
#[derive(Default)]
struct StreamWakers {
    read: AtomicWaker,
    write: AtomicWaker,
}

#[derive(Default)]
struct Link {
    /// Bumped by every cut; a stream opened at an older generation is cut.
    generation: u64,
    /// The streams open on the link, with the generation each was opened at.
    streams: Vec<(u64, Weak<StreamWakers>)>,
}

/// The links between the controller and each replica host, by replica host name.
#[derive(Default, Clone)]
pub(crate) struct Links {
    links: Arc<Mutex<HashMap<String, Link>>>,
}

impl Links {
    fn with<R>(&self, host: &str, f: impl FnOnce(&mut Link) -> R) -> R {
        let mut links = match self.links.lock() {
            Ok(links) => links,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(links.entry(host.to_owned()).or_default())
    }

    /// Fails every stream open on the link to `host`.
    pub(crate) fn cut(&self, host: &str) {
        let streams = self.with(host, |link| {
            link.generation += 1;
            std::mem::take(&mut link.streams)
        });
        for stream in streams.iter().filter_map(|(_, s)| s.upgrade()) {
            stream.read.wake();
            stream.write.wake();
        }
    }

    fn generation(&self, host: &str) -> u64 {
        self.with(host, |link| link.generation)
    }

    /// Whether a stream opened since the last cut is open on the link to `host` (the
    /// controller's end or the replica's).
    pub(crate) fn is_connected(&self, host: &str) -> bool {
        self.with(host, |link| {
            let current = link.generation;
            link.streams
                .iter()
                .any(|(g, s)| *g == current && s.strong_count() > 0)
        })
    }

    fn is_cut(&self, host: &str, generation: u64) -> bool {
        self.generation(host) != generation
    }

    /// Wraps a stream on the link to `host`, opened when the link was at `generation`.
    fn wrap(&self, host: &str, generation: u64, inner: turmoil::net::TcpStream) -> SimStream {
        let wakers = Arc::new(StreamWakers::default());
        self.with(host, |link| {
            link.streams.retain(|(_, s)| s.strong_count() > 0);
            link.streams.push((generation, Arc::downgrade(&wakers)));
        });
        SimStream {
            inner,
            links: self.clone(),
            host: host.to_owned(),
            generation,
            wakers,
        }
    }

    /// A dialer for instance-client's gRPC connector: connects to `replica-N:PORT` over
    /// turmoil, on the link to that host.
    pub(crate) fn dialer(&self) -> Dialer {
        let links = self.clone();
        Arc::new(move |uri: tonic::transport::Uri| {
            let links = links.clone();
            Box::pin(async move {
                let host = uri
                    .host()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                    .to_owned();
                let port = uri.port_u16().unwrap_or(REPLICA_PORT);
                let generation = links.generation(&host);
                let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
                Ok(Box::new(links.wrap(&host, generation, stream)) as Box<dyn GrpcIo>)
            })
        })
    }

    /// The connections accepted by `listener` on replica host `host`, as a stream for
    /// instance-client's `grpc::serve`.
    pub(crate) fn incoming(
        &self,
        host: String,
        listener: turmoil::net::TcpListener,
    ) -> impl futures::Stream<Item = io::Result<SimStream>> + use<> {
        let links = self.clone();
        futures::stream::unfold(listener, move |listener| {
            let (links, host) = (links.clone(), host.clone());
            async move {
                let generation = links.generation(&host);
                let accepted = listener
                    .accept()
                    .await
                    .map(|(stream, _)| links.wrap(&host, generation, stream));
                Some((accepted, listener))
            }
        })
    }
}

/// A turmoil TCP stream that fails once its link is cut.
pub(crate) struct SimStream {
    inner: turmoil::net::TcpStream,
    links: Links,
    host: String,
    generation: u64,
    wakers: Arc<StreamWakers>,
}

impl SimStream {
    fn check(&self) -> io::Result<()> {
        if self.links.is_cut(&self.host, self.generation) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the link to {} was cut (partition or crash)", self.host),
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.wakers.read.register(cx.waker());
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wakers.write.register(cx.waker());
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wakers.write.register(cx.waker());
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
