//! The idle connections: each opened as an idle gRPC client opens one (TCP,
//! TLS with `--tls-ca`, the HTTP/2 connection preface and an empty SETTINGS
//! frame), sorted by what the server does with it, then held with nothing
//! sent but the acknowledgements HTTP/2 asks for (of the server's SETTINGS
//! and PINGs), so that the server's keepalive never closes one for want of
//! an answer.
//!
//! A TLS handshake that has not finished within [`SETTLE`] counts as
//! silent and is given up, not held: the server has not accepted it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::frames::Frames;
use crate::progress::Progress;
use crate::tls::TlsClient;

/// What an idle gRPC client sends first: the HTTP/2 connection preface,
/// then an empty SETTINGS frame (all defaults).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Connections being opened at once (connect, TLS handshake, preface):
/// enough that
/// 20 000 open in seconds on loopback, few enough to stay well inside the
/// server's listen backlog, where a SYN past it is dropped and retried a
/// second later.
pub const CONNECTS_IN_FLIGHT: usize = 256;

/// How long a connect may take before it counts as failed: long enough for
/// one SYN dropped by a full backlog to be retried (after 1 s), short
/// enough that a server that stopped accepting does not hold the run for
/// minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a connection gets to be answered after its preface before it
/// counts as silent (still in the listen backlog, not accepted): a server
/// that accepts answers within milliseconds.
pub const SETTLE: Duration = Duration::from_secs(3);

/// Bytes read from a connection at once: the server's SETTINGS, a window
/// update and the acknowledgement of ours fit.
const READ_CHUNK: usize = 256;

/// What became of a connection within [`SETTLE`] of its opening.
#[derive(Debug)]
enum Outcome {
    /// The server sent something (its SETTINGS) and keeps it open.
    Answered,
    /// The server closed or reset it.
    Closed,
    /// Open, and nothing from the server yet.
    Silent,
    /// It could not be made; why.
    Failed(String),
}

/// The connections sorted within [`SETTLE`] of their opening.
#[derive(Debug, Default)]
pub struct Opened {
    pub answered: u64,
    pub closed: u64,
    pub silent: u64,
    pub failed: u64,
    /// Why the first failed connection failed.
    pub first_failure: Option<String>,
}

/// What happened to the connections after they were sorted; shared by
/// their tasks.
#[derive(Debug, Default)]
struct Later {
    /// Answered and not closed (so far).
    held: AtomicU64,
    /// Closed by the server after they were sorted.
    closed: AtomicU64,
    /// Silent ones the server answered later.
    answered: AtomicU64,
}

/// [`Later`] at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Since {
    /// Answered and still open: what the server holds.
    pub held: u64,
    /// Closed by the server after they were sorted.
    pub closed: u64,
    /// Answered after they were counted as silent.
    pub answered: u64,
}

/// Open idle connections, each in a task of its own until [`Flood::close`].
#[derive(Debug)]
pub struct Flood {
    tasks: JoinSet<()>,
    stop: CancellationToken,
    later: Arc<Later>,
}

impl Flood {
    /// Opens `count` connections to `addr`, [`CONNECTS_IN_FLIGHT`] at a
    /// time, and returns once every one is sorted. Fails when `cancel` is.
    pub async fn open(
        addr: SocketAddr,
        count: u64,
        tls: Option<Arc<TlsClient>>,
        progress: &Progress,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(Self, Opened)> {
        let mut flood = Self {
            tasks: JoinSet::new(),
            stop: CancellationToken::new(),
            later: Arc::default(),
        };
        let permits = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
        let (outcomes, mut sorted) = mpsc::unbounded_channel();
        for _ in 0..count {
            let connection = connection(
                addr,
                tls.clone(),
                permits.clone(),
                outcomes.clone(),
                flood.later.clone(),
            );
            let stop = flood.stop.clone();
            flood.tasks.spawn(async move {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = connection => {}
                }
            });
        }
        drop(outcomes);
        let done = Arc::new(AtomicU64::new(0));
        let shown = done.clone();
        let ticker = progress.tick(move |elapsed| {
            format!(
                "idle connections: {} of {count} opened and sorted ({:.0} s)",
                shown.load(Ordering::Relaxed),
                elapsed.as_secs_f64()
            )
        });
        let mut opened = Opened::default();
        let mut received = 0;
        while received < count {
            let outcome = tokio::select! {
                () = cancel.cancelled() => break,
                outcome = sorted.recv() => outcome,
            };
            // Every task sends once before it ends; none left means none
            // will.
            let Some(outcome) = outcome else { break };
            received += 1;
            done.store(received, Ordering::Relaxed);
            match outcome {
                Outcome::Answered => opened.answered += 1,
                Outcome::Closed => opened.closed += 1,
                Outcome::Silent => opened.silent += 1,
                Outcome::Failed(why) => {
                    opened.failed += 1;
                    opened.first_failure.get_or_insert(why);
                }
            }
        }
        ticker.stop().await;
        if cancel.is_cancelled() {
            flood.close().await;
            bail!("interrupted while opening the idle connections");
        }
        Ok((flood, opened))
    }

    /// What happened since the connections were sorted.
    pub fn since(&self) -> Since {
        Since {
            held: self.later.held.load(Ordering::Relaxed),
            closed: self.later.closed.load(Ordering::Relaxed),
            answered: self.later.answered.load(Ordering::Relaxed),
        }
    }

    /// Closes every connection and waits until their tasks have ended.
    pub async fn close(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// One connection: opened within a permit, sorted, then held.
async fn connection(
    addr: SocketAddr,
    tls: Option<Arc<TlsClient>>,
    permits: Arc<Semaphore>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    later: Arc<Later>,
) {
    let opened = {
        // The semaphore is never closed; without a permit it opens anyway.
        let _permit = permits.acquire().await.ok();
        open(addr, tls.as_deref()).await
    };
    match opened {
        Ok(Stream::Plain(stream)) => hold(stream, &outcomes, &later).await,
        Ok(Stream::Tls(stream)) => hold(stream, &outcomes, &later).await,
        Err(outcome) => {
            let _ = outcomes.send(outcome);
        }
    }
}

/// An opened connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connects (and with `tls`, completes the handshake) and sends the
/// preface; the outcome if that already settled it.
async fn open(addr: SocketAddr, tls: Option<&TlsClient>) -> Result<Stream, Outcome> {
    let mut tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(err)) => return Err(Outcome::Failed(format!("connect: {err}"))),
        Err(_) => {
            return Err(Outcome::Failed(format!(
                "connect: no answer within {CONNECT_TIMEOUT:?}"
            )));
        }
    };
    let Some(tls) = tls else {
        // Only a server that has already reset the connection refuses bytes
        // that fit in an empty socket buffer.
        if tcp.write_all(PREFACE).await.is_err() {
            return Err(Outcome::Closed);
        }
        return Ok(Stream::Plain(tcp));
    };
    let mut stream = match tokio::time::timeout(SETTLE, tls.connect(tcp)).await {
        Ok(Ok(stream)) => Box::new(stream),
        // rustls reports a certificate it does not trust, or a protocol it
        // cannot speak, as invalid data: the bench's doing, not the server's.
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Outcome::Failed(format!("TLS handshake: {err}")));
        }
        Ok(Err(_)) => return Err(Outcome::Closed),
        Err(_) => return Err(Outcome::Silent),
    };
    if stream.write_all(PREFACE).await.is_err() || stream.flush().await.is_err() {
        return Err(Outcome::Closed);
    }
    Ok(Stream::Tls(stream))
}

/// Sorts the connection by the server's first answer within [`SETTLE`],
/// then answers what HTTP/2 asks to be answered until the server closes
/// it (or the task is stopped, which drops and so closes it).
async fn hold<S>(mut stream: S, outcomes: &mpsc::UnboundedSender<Outcome>, later: &Later)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let settle_at = Instant::now() + SETTLE;
    let mut sorted = false;
    let mut answered = false;
    let mut frames = Frames::default();
    let mut replies = Vec::new();
    let mut chunk = [0; READ_CHUNK];
    loop {
        let read = if sorted {
            stream.read(&mut chunk).await
        } else {
            match tokio::time::timeout_at(settle_at, stream.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_) => {
                    sorted = true;
                    let _ = outcomes.send(Outcome::Silent);
                    continue;
                }
            }
        };
        let received = match read {
            Ok(0) | Err(_) => 0,
            Ok(received) => received,
        };
        if received == 0 {
            if !sorted {
                let _ = outcomes.send(Outcome::Closed);
            } else {
                later.closed.fetch_add(1, Ordering::Relaxed);
            }
            if answered {
                later.held.fetch_sub(1, Ordering::Relaxed);
            }
            return;
        }
        if !answered {
            answered = true;
            later.held.fetch_add(1, Ordering::Relaxed);
            if sorted {
                later.answered.fetch_add(1, Ordering::Relaxed);
            } else {
                sorted = true;
                let _ = outcomes.send(Outcome::Answered);
            }
        }
        frames.feed(&chunk[..received], &mut replies);
        if !replies.is_empty() {
            // A failed write shows as a closed connection at the next read.
            let _ = stream.write_all(&replies).await;
            let _ = stream.flush().await;
            replies.clear();
        }
    }
}
