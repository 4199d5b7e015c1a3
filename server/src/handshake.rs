//! A deadline for a new connection's first bytes.
//!
//! The HTTP/2 server waits for a client's connection preface (or TLS hello)
//! for as long as the client likes, and keepalive pings only start once the
//! preface is in. A client that connects and sends nothing would hold its
//! socket forever; enough of them use up the server's file descriptors. So
//! every accepted connection must send its first bytes within a deadline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Bytes a client must send before the deadline: the length of the HTTP/2
/// connection preface. A TLS ClientHello is longer.
const OPENING_BYTES: usize = 24;

/// An accepted TCP connection whose first [`OPENING_BYTES`] must arrive
/// within a deadline; reading past the deadline without them fails with
/// `TimedOut`, which ends the connection.
#[derive(Debug)]
pub struct OpeningDeadline {
    stream: TcpStream,
    /// Set until the opening bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl OpeningDeadline {
    pub fn new(stream: TcpStream, within: Duration) -> Self {
        Self {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            received: 0,
        }
    }
}

impl AsyncRead for OpeningDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.received += buf.filled().len() - before;
                if this.received >= OPENING_BYTES {
                    this.deadline = None;
                } else if this.deadline.as_ref().is_some_and(|d| d.is_elapsed()) {
                    // A byte now and then does not keep a connection open.
                    return Poll::Ready(Err(too_late()));
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if let Some(deadline) = &mut this.deadline {
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(Err(too_late()));
                }
                Poll::Pending
            }
        }
    }
}

fn too_late() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client did not open the connection in time",
    )
}

impl AsyncWrite for OpeningDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for OpeningDeadline {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}
