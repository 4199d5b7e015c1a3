//! A deadline for a new connection's opening: its HTTP/2 preface.
//!
//! The HTTP/2 server waits for a client's connection preface for as long as
//! the client likes, and keepalive pings only start once the preface is in.
//! A client that connects and sends nothing (or completes a TLS handshake
//! and then sends nothing) would hold its socket forever; enough of them use
//! up the server's file descriptors. So every accepted connection must send
//! the preface within a deadline, counted from its acceptance.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes a client must send before the deadline: the length of the HTTP/2
/// connection preface.
const OPENING_BYTES: usize = 24;

/// A connection (plain, or the inside of TLS) whose first [`OPENING_BYTES`]
/// must arrive by a deadline; reading past it without them fails with
/// `TimedOut`, which ends the connection.
#[derive(Debug)]
pub struct OpeningDeadline<S> {
    stream: S,
    /// Set until the opening bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    received: usize,
}

impl<S> OpeningDeadline<S> {
    pub fn new(stream: S, deadline: Instant) -> Self {
        Self {
            stream,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            received: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for OpeningDeadline<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for OpeningDeadline<S> {
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
