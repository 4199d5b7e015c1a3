//! One socket write for every answer that is ready, not one per answer.
//!
//! The HTTP/2 layer writes each response as its own `writev` and flushes
//! after it: a response's body is sent from its own buffer, and only one
//! such buffer can be queued at a time. With dozens of calls in flight on a
//! connection, a dozen responses then cost a dozen system calls, each of
//! which also wakes the client; in a profile of Loads from `memory://`
//! that was a third of the server's CPU.
//!
//! [`BatchedWrites`] keeps what is written in a buffer, and a flush right
//! after a write is deferred: it wakes the task, so that it takes another
//! turn, and returns. The buffer goes to the socket in one write at the
//! first of: a flush that follows no new write (the HTTP/2 layer has
//! nothing more to send for now), a read (what the peer waits for may be
//! in it; TLS handshakes too), shutdown, or [`BATCH_BYTES`] gathered. A
//! larger write bypasses it.
//!
//! Even a call made alone waits that one turn: its answer's trailers (the
//! gRPC status) are written a turn after its headers and data, and the
//! client waits for both. Sending at the first flush cost every such call
//! a second write and woke the client twice.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

use crate::{socket_reads, split_turns};

/// Bytes held before they go out whatever comes next: a few dozen 1 KiB
/// responses, small enough to keep per connection.
pub const BATCH_BYTES: usize = 32 * 1024;

/// A connection whose writes are gathered until the writer pauses.
#[derive(Debug)]
pub struct BatchedWrites<S> {
    inner: S,
    /// Written by the caller, not yet handed to the socket.
    pending: Vec<u8>,
    /// Of `pending`, the bytes the socket has already taken.
    sent: usize,
    /// Written to since the last flush.
    wrote_since_flush: bool,
}

impl<S> BatchedWrites<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            sent: 0,
            wrote_since_flush: false,
        }
    }
}

impl<S: AsyncWrite + Unpin> BatchedWrites<S> {
    /// Hands everything pending to the socket.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        if !self.pending.is_empty() {
            split_turns::wrote_out();
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Takes `len` bytes: into the buffer if they fit, else straight to the
    /// socket once the buffer is out. `write_through` does the latter.
    fn poll_take(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
        copy: impl FnOnce(&mut Vec<u8>),
        write_through: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() + len > BATCH_BYTES {
            ready!(self.poll_send_pending(cx))?;
            if len > BATCH_BYTES {
                let written = write_through(Pin::new(&mut self.inner), cx);
                if written.is_ready() {
                    split_turns::wrote_out();
                }
                return written;
            }
        }
        copy(&mut self.pending);
        self.wrote_since_flush = true;
        Poll::Ready(Ok(len))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for BatchedWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Whatever the reader waits for may be the answer to what is
        // pending, so it goes out first. A socket that is full wakes this
        // task when it drains; reading goes on meanwhile.
        if let Poll::Ready(Err(err)) = this.poll_send_pending(cx) {
            return Poll::Ready(Err(err));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        // Every connection of a serving thread reads through here (beneath
        // TLS too), so this is where the thread hears of its reads.
        if buf.filled().len() > before {
            socket_reads::read_in();
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_take(
            cx,
            buf.len(),
            |pending| pending.extend_from_slice(buf),
            |inner, cx| inner.poll_write(cx, buf),
        )
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|buf| buf.len()).sum();
        self.poll_take(
            cx,
            len,
            |pending| bufs.iter().for_each(|buf| pending.extend_from_slice(buf)),
            |inner, cx| inner.poll_write_vectored(cx, bufs),
        )
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            this.wrote_since_flush = false;
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if std::mem::take(&mut this.wrote_since_flush) {
            // More may follow in this turn; the wake-up makes sure there is
            // a next one, which reads or flushes.
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_send_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for BatchedWrites<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads what `far` has received within a short wait.
    async fn received(far: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut got = vec![0u8; 64];
        let wait = std::time::Duration::from_millis(20);
        match tokio::time::timeout(wait, far.read(&mut got)).await {
            Ok(read) => got.truncate(read.unwrap()),
            Err(_) => got.clear(),
        }
        got
    }

    /// Writes one answer and flushes it, as the HTTP/2 layer does.
    async fn answer(batched: &mut BatchedWrites<tokio::io::DuplexStream>, bytes: &[u8]) {
        batched.write_all(bytes).await.unwrap();
        batched.flush().await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_waits_for_a_flush_that_follows_no_write() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = BatchedWrites::new(near);
        answer(&mut batched, b"headers and data").await;
        assert_eq!(
            received(&mut far).await,
            b"",
            "sent before the trailers could follow"
        );
        answer(&mut batched, b", trailers").await;
        assert_eq!(received(&mut far).await, b"");

        batched.flush().await.unwrap();
        assert_eq!(received(&mut far).await, b"headers and data, trailers");
    }

    #[test]
    fn a_deferred_flush_wakes_the_task_for_another_turn() {
        struct CountWakes(AtomicUsize);
        impl Wake for CountWakes {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut batched = BatchedWrites::new(Vec::new());

        let wrote = Pin::new(&mut batched).poll_write(&mut cx, b"answer");
        assert!(matches!(wrote, Poll::Ready(Ok(6))));
        let flushed = Pin::new(&mut batched).poll_flush(&mut cx);
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "no next turn to send in");
        assert!(batched.inner.is_empty());

        let flushed = Pin::new(&mut batched).poll_flush(&mut cx);
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert_eq!(batched.inner, b"answer");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_sends_what_is_pending() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = BatchedWrites::new(near);
        answer(&mut batched, b"one ").await;
        answer(&mut batched, b"two").await;
        let reader = tokio::spawn(async move {
            let mut got = [0u8; 4];
            batched.read_exact(&mut got).await.unwrap();
            (batched, got)
        });
        assert_eq!(received(&mut far).await, b"one two");
        far.write_all(b"pong").await.unwrap();
        let (_, got) = reader.await.unwrap();
        assert_eq!(&got, b"pong");
    }

    /// Calls are split per burst: the answers going out end one.
    #[tokio::test]
    async fn sent_answers_start_a_new_burst_of_calls() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = BatchedWrites::new(near);
        for _ in 0..split_turns::FIRST_CALLS {
            split_turns::tests::start_call_at_once();
        }
        assert!(split_turns::tests::next_call_waits());
        answer(&mut batched, b"answers").await;
        assert!(
            split_turns::tests::next_call_waits(),
            "a burst ended before its answers went out"
        );
        batched.flush().await.unwrap();
        assert_eq!(received(&mut far).await, b"answers");
        assert!(!split_turns::tests::next_call_waits());

        for _ in 0..split_turns::FIRST_CALLS {
            split_turns::tests::start_call_at_once();
        }
        batched
            .write_all(&vec![0u8; BATCH_BYTES + 1])
            .await
            .unwrap();
        assert!(!split_turns::tests::next_call_waits(), "a large write too");
    }

    #[tokio::test]
    async fn a_full_batch_and_a_large_write_go_out_at_once() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = BatchedWrites::new(near);
        let small = vec![1u8; BATCH_BYTES - 10];
        let large = vec![2u8; BATCH_BYTES + 1];
        batched.write_all(&small).await.unwrap();
        batched.write_all(&large).await.unwrap();
        let mut got = vec![0u8; small.len() + large.len()];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..small.len()], &small[..]);
        assert_eq!(&got[small.len()..], &large[..]);
    }

    #[tokio::test]
    async fn shutdown_sends_what_is_pending() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = BatchedWrites::new(near);
        batched.write_all(b"last words").await.unwrap();
        batched.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }
}
