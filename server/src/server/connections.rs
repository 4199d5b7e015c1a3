//! The stream of accepted connections that the gRPC server serves: TCP
//! options, the connection limits, pauses when accepts fail, TLS
//! (terminated here), one deadline for the whole opening of a connection,
//! and batched writes.
//!
//! The deadline runs from the moment a connection is accepted until its
//! HTTP/2 preface has arrived, TLS handshake included: a peer that sends
//! nothing, that stalls in the handshake, or that completes it and then
//! sends nothing is closed when it passes. That is why TLS is terminated
//! here rather than by the HTTP/2 server, which would only let the deadline
//! see encrypted bytes. Handshakes run side by side, each in a task of its
//! own, so a slow one never holds up the next connection.
//!
//! When accept fails for want of resources (the open-file limit, kernel
//! memory), the listener stays readable: retrying at once would spin a
//! core until files are free. Accepting pauses instead, from 10 ms doubling
//! up to a second, and a warning says which limit was hit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use super::admission::{Admission, Admitted};
use crate::batched_writes::BatchedWrites;
use crate::config::ConnectionSettings;
use crate::handshake::OpeningDeadline;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;

/// The first pause after an accept failed for want of resources.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause: the pause doubles while accepts keep failing.
const LONGEST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);
/// Failures of single connections in a row after which accepting pauses
/// anyway: an error that looks like one connection's (EPERM from a
/// security module, say) may be the listener's every time, and retrying it
/// at once would spin.
const FAILURES_IN_A_ROW_BEFORE_PAUSE: u32 = 32;

type Plain = OpeningDeadline<BatchedWrites<TcpStream>>;
type Encrypted = OpeningDeadline<TlsStream<BatchedWrites<TcpStream>>>;

/// An accepted connection, ready for HTTP/2, holding its place among the
/// open connections until it is dropped.
#[derive(Debug)]
pub(super) struct Connection {
    io: Io,
    _admitted: Admitted,
}

#[derive(Debug)]
enum Io {
    Plain(Plain),
    // Boxed: rustls's connection state is large, and most connections of a
    // server either all are TLS or none is.
    Tls(Box<Encrypted>),
}

/// What connections are accepted with: shared by every thread that
/// accepts them, so that limits count and warnings are throttled across
/// all of them.
#[derive(Clone)]
pub(super) struct Accepting {
    pub settings: ConnectionSettings,
    pub tls: Option<TlsAcceptor>,
    pub admission: Admission,
    pub metrics: Metrics,
    /// Warnings of failed accepts: one a minute for the whole server.
    pub failed_accepts: Arc<LogThrottle>,
}

/// The accepted connections of one listener (or one thread's copy of it).
pub(super) struct Connections {
    tcp: TcpIncoming,
    tls: Option<TlsAcceptor>,
    admission: Admission,
    /// TLS handshakes under way; a failed one yields `None`.
    handshakes: JoinSet<Option<Connection>>,
    opening_timeout: Duration,
    /// Accepting is paused until this passes.
    pause: Option<Pin<Box<Sleep>>>,
    /// The pause after the next failed accept.
    next_pause: Duration,
    /// Accepts that failed since the last one that succeeded.
    failures_in_a_row: u32,
    failed_accepts: Arc<LogThrottle>,
    metrics: Metrics,
    /// The listener has ended.
    tcp_done: bool,
    /// A connection was just accepted: the next accept waits one turn.
    accepted: bool,
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
    /// Accepts on `listener` what `accepting.admission` lets in, without
    /// Nagle's delay and with TCP keepalive when pings are on, speaking TLS
    /// when `accepting.tls` is given.
    pub(super) fn new(listener: TcpListener, accepting: Accepting) -> Self {
        let settings = accepting.settings;
        let keepalive = (!settings.keepalive.is_zero()).then_some(settings.keepalive);
        Self {
            tcp: TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(keepalive),
            tls: accepting.tls,
            admission: accepting.admission,
            handshakes: JoinSet::new(),
            opening_timeout: settings.handshake_timeout,
            pause: None,
            next_pause: FIRST_ACCEPT_PAUSE,
            failures_in_a_row: 0,
            failed_accepts: accepting.failed_accepts,
            metrics: accepting.metrics,
            tcp_done: false,
            accepted: false,
        }
    }

    /// After a failed accept: on at once when only that connection failed
    /// (unless such failures keep coming), else a pause.
    fn accept_failed(&mut self, err: &io::Error) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        if only_this_connection_failed(err)
            && self.failures_in_a_row < FAILURES_IN_A_ROW_BEFORE_PAUSE
        {
            tracing::debug!(error = %err, "a connection failed before it was accepted");
            return;
        }
        let pause = self.next_pause;
        self.next_pause = (pause * 2).min(LONGEST_ACCEPT_PAUSE);
        self.pause = Some(Box::pin(tokio::time::sleep(pause)));
        self.metrics.accept_failed();
        if let Some(held_back) = self.failed_accepts.admit() {
            warn_accept_failed(err, pause, held_back);
        }
    }
}

/// Errors that accept(2) reports for the connection it was taking, not for
/// the listener: Linux passes a new connection's pending network errors
/// on (accept(2), "Error handling"), and a peer may reset before it is
/// taken. The next accept may well succeed.
fn only_this_connection_failed(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
                | libc::ENETDOWN
                | libc::EPERM
                | libc::EINTR
                | libc::EAGAIN
        )
    )
}

/// Says which limit stopped accepts, and how to raise it.
fn warn_accept_failed(err: &io::Error, pause: Duration, held_back: u64) {
    let pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
    match err.raw_os_error() {
        Some(libc::EMFILE) => tracing::warn!(
            file_limit = ?rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _)| soft),
            pause_ms,
            failed_since_last_warning = held_back,
            "cannot accept connections: sessiond has as many files open as its open-file \
             limit allows; accepting pauses until some close. Raise the limit (`ulimit -n`, \
             systemd's LimitNOFILE=, the container runtime's nofile ulimit) or lower \
             --max-connections below it"
        ),
        Some(libc::ENFILE) => tracing::warn!(
            pause_ms,
            failed_since_last_warning = held_back,
            "cannot accept connections: the system has as many files open as it allows \
             (sysctl fs.file-max); accepting pauses until some close"
        ),
        _ => tracing::warn!(
            error = %err,
            pause_ms,
            failed_since_last_warning = held_back,
            "cannot accept connections; accepting pauses"
        ),
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
            if let Some(pause) = &mut this.pause {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.pause = None;
            }
            if this.accepted {
                // Every thread that serves connections accepts on this
                // socket, and all of them wake when connections arrive:
                // one turn off lets another take the next, so that a burst
                // (every replica of an app reconnecting at once) spreads
                // over the threads rather than landing on the first awake.
                this.accepted = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match Pin::new(&mut this.tcp).poll_next(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    this.accepted = true;
                    this.next_pause = FIRST_ACCEPT_PAUSE;
                    this.failures_in_a_row = 0;
                    let ip = stream.peer_addr().ok().map(|addr| addr.ip());
                    // Refused: dropping the stream closes it.
                    let Some(admitted) = this.admission.admit(ip) else {
                        continue;
                    };
                    let deadline = Instant::now() + this.opening_timeout;
                    // Every read of the connection goes through this
                    // wrapper, beneath TLS too: the SQLite engine's shared
                    // read transactions rely on hearing of each one
                    // (`socket_reads`).
                    let stream = BatchedWrites::new(stream);
                    let Some(acceptor) = &this.tls else {
                        let io = Io::Plain(OpeningDeadline::new(stream, deadline));
                        return Poll::Ready(Some(Ok(Connection {
                            io,
                            _admitted: admitted,
                        })));
                    };
                    this.handshakes
                        .spawn(handshake(acceptor.clone(), stream, deadline, admitted));
                }
                Poll::Ready(Some(Err(err))) => this.accept_failed(&err),
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
    admitted: Admitted,
) -> Option<Connection> {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Connection {
            io: Io::Tls(Box::new(OpeningDeadline::new(tls, deadline))),
            _admitted: admitted,
        }),
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
        match &self.io {
            Io::Plain(plain) => plain.get_ref().connect_info(),
            Io::Tls(tls) => tls.get_ref().get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(plain) => Pin::new(plain).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(plain) => Pin::new(plain).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(plain) => Pin::new(plain).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(plain) => plain.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(plain) => Pin::new(plain).poll_flush(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(plain) => Pin::new(plain).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
