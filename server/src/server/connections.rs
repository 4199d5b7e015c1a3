//! The stream of accepted connections that the gRPC server serves: TCP
//! options, TLS (terminated here), one deadline for the whole opening of a
//! connection, and batched writes.
//!
//! The deadline runs from the moment a connection is accepted until its
//! HTTP/2 preface has arrived, TLS handshake included: a peer that sends
//! nothing, that stalls in the handshake, or that completes it and then
//! sends nothing is closed when it passes. That is why TLS is terminated
//! here rather than by the HTTP/2 server, which would only let the deadline
//! see encrypted bytes. Handshakes run side by side, each in a task of its
//! own, so a slow one never holds up the next connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::batched_writes::BatchedWrites;
use crate::config::ConnectionSettings;
use crate::handshake::OpeningDeadline;

type Plain = OpeningDeadline<BatchedWrites<TcpStream>>;
type Encrypted = OpeningDeadline<TlsStream<BatchedWrites<TcpStream>>>;

/// An accepted connection, ready for HTTP/2.
#[derive(Debug)]
pub(super) enum Connection {
    Plain(Plain),
    // Boxed: rustls's connection state is large, and most connections of a
    // server either all are TLS or none is.
    Tls(Box<Encrypted>),
}

/// The accepted connections of one listener.
pub(super) struct Connections {
    tcp: TcpIncoming,
    tls: Option<TlsAcceptor>,
    /// TLS handshakes under way; a failed one yields `None`.
    handshakes: JoinSet<Option<Connection>>,
    opening_timeout: Duration,
    /// The listener has ended.
    tcp_done: bool,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("tls", &self.tls.is_some())
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// Accepts on `listener`, without Nagle's delay and with TCP keepalive
    /// when pings are on, speaking TLS when `tls` is given.
    pub(super) fn new(
        listener: TcpListener,
        settings: ConnectionSettings,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let keepalive = (!settings.keepalive.is_zero()).then_some(settings.keepalive);
        Self {
            tcp: TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(keepalive),
            tls,
            handshakes: JoinSet::new(),
            opening_timeout: settings.handshake_timeout,
            tcp_done: false,
        }
    }
}

impl Stream for Connections {
    type Item = io::Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            // Finished handshakes first, so that they never wait behind a
            // listener that keeps failing (at the open-file limit every
            // accept fails at once).
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(connection)))) => {
                    return Poll::Ready(Some(Ok(connection)));
                }
                // A failed handshake: on to the next.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => {}
            }
            if this.tcp_done {
                return if this.handshakes.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Pending
                };
            }
            match Pin::new(&mut this.tcp).poll_next(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    let deadline = Instant::now() + this.opening_timeout;
                    let stream = BatchedWrites::new(stream);
                    let Some(acceptor) = &this.tls else {
                        let plain = OpeningDeadline::new(stream, deadline);
                        return Poll::Ready(Some(Ok(Connection::Plain(plain))));
                    };
                    this.handshakes
                        .spawn(handshake(acceptor.clone(), stream, deadline));
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err))),
                Poll::Ready(None) => this.tcp_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The TLS handshake of one connection, within its opening deadline.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: BatchedWrites<TcpStream>,
    deadline: Instant,
) -> Option<Connection> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Connection::Tls(Box::new(OpeningDeadline::new(
            tls, deadline,
        )))),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake not finished by the opening deadline");
            None
        }
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Self::Plain(plain) => plain.get_ref().connect_info(),
            Self::Tls(tls) => tls.get_ref().get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(plain) => Pin::new(plain).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(plain) => Pin::new(plain).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(plain) => Pin::new(plain).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(plain) => plain.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(plain) => Pin::new(plain).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
