//! The threads that serve connections: each runs a single-threaded runtime
//! of its own and accepts on the one listening socket, so a connection, its
//! TLS handshake and every call on it stay on the thread that accepted it.
//!
//! On one multi-threaded runtime, the calls of one connection (a task each)
//! moved between the runtime's threads, which stole them from each other
//! and woke each other up to do so: that was a third to a half of the
//! server's CPU per Load, depending on the machine's state. A connection now costs one thread's time, and many connections
//! spread over the threads: a thread that has accepted one lets the others
//! take the next (see `connections`).
//!
//! The purge, the readiness probe and metrics run on the main runtime. A
//! task an engine starts from inside a call (a connection added to a
//! PostgreSQL pool, a Redis reconnection) runs on the runtime of the thread
//! that made the call, so every thread's runtime lives until the store is
//! closed ([`ConnectionThreads::release`]), not only until its own
//! connections are.

use std::net::TcpListener as StdListener;
use std::num::NonZeroUsize;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;

use super::ServeError;
use super::connections::{Accepting, Connections};
use crate::{before_sleep, socket_reads};

/// Once released, how long blocking work a thread's runtime started (an
/// SQLite read waiting for a lock) may keep it alive.
const BLOCKING_WORK_GRACE: Duration = Duration::from_millis(500);

/// How often [`ConnectionThreads::release`] looks whether the threads have
/// ended.
const JOIN_POLL: Duration = Duration::from_millis(10);

/// The running threads. Dropping this stops and releases them without
/// waiting, as a failed start or a dropped `serve` needs.
pub(super) struct ConnectionThreads {
    threads: Vec<JoinHandle<()>>,
    /// Each thread's result when it stops serving, or its failure to start.
    served: mpsc::UnboundedReceiver<Result<(), ServeError>>,
    /// Threads that have not reported yet.
    serving: usize,
    stop_now: CancellationToken,
    release: CancellationToken,
}

impl ConnectionThreads {
    /// Starts `count` threads serving `router` on `listener` until
    /// `stop_accepting` is cancelled; each then closes its copy of the
    /// listener and stops serving once its connections have closed (the
    /// HTTP/2 layer asks clients to go away, as tonic's graceful shutdown
    /// does).
    pub(super) fn start(
        count: NonZeroUsize,
        listener: TcpListener,
        router: &Router,
        accepting: &Accepting,
        stop_accepting: &CancellationToken,
    ) -> Result<Self, ServeError> {
        let listener = listener.into_std().map_err(ServeError::Threads)?;
        let (report, served) = mpsc::unbounded_channel();
        // Built first, so that a failure below stops the threads already
        // started (by dropping it).
        let mut threads = Self {
            threads: Vec::with_capacity(count.get()),
            served,
            serving: 0,
            stop_now: CancellationToken::new(),
            release: CancellationToken::new(),
        };
        for index in 0..count.get() {
            let copy = listener.try_clone().map_err(ServeError::Threads)?;
            let report = Report(Some(report.clone()));
            let serving = serve(
                copy,
                router.clone(),
                accepting.clone(),
                stop_accepting.clone(),
                threads.stop_now.clone(),
            );
            let release = threads.release.clone();
            let thread = std::thread::Builder::new()
                .name(format!("sessiond-conn-{index}"))
                .spawn(move || run(serving, report, release))
                .map_err(ServeError::Threads)?;
            threads.threads.push(thread);
            threads.serving += 1;
        }
        Ok(threads)
    }

    /// Completes when every thread has stopped serving, or at once with the
    /// first failure of any of them (a thread that could not start its
    /// runtime, a listener error, a panic).
    pub(super) async fn finished(&mut self) -> Result<(), ServeError> {
        while self.serving > 0 {
            match self.served.recv().await {
                Some(Ok(())) => self.serving -= 1,
                Some(Err(err)) => {
                    self.serving -= 1;
                    return Err(err);
                }
                // Every thread holds a sender until it reports.
                None => return Err(ServeError::ThreadPanicked),
            }
        }
        Ok(())
    }

    /// Stops serving on every thread without waiting for its connections:
    /// what is still open is closed. Their runtimes live on until
    /// [`Self::release`].
    pub(super) fn stop_now(&self) {
        self.stop_now.cancel();
    }

    /// Once the store is closed: stops every thread's runtime, and waits
    /// (a little longer than the runtimes give blocking work) for the
    /// threads to end.
    pub(super) async fn release(mut self) {
        self.stop_now();
        self.release.cancel();
        let deadline = tokio::time::Instant::now() + BLOCKING_WORK_GRACE + JOIN_POLL * 10;
        while !self.threads.iter().all(JoinHandle::is_finished) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("threads serving connections did not end in time; exiting anyway");
                return;
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
        for thread in self.threads.drain(..) {
            // A panic was reported by `finished` already.
            let _ = thread.join();
        }
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        self.stop_now.cancel();
        self.release.cancel();
    }
}

impl std::fmt::Debug for ConnectionThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionThreads")
            .field("threads", &self.threads.len())
            .field("serving", &self.serving)
            .finish_non_exhaustive()
    }
}

/// A thread's report of how its serving ended; a thread that unwinds
/// without reporting reports a panic.
struct Report(Option<mpsc::UnboundedSender<Result<(), ServeError>>>);

impl Report {
    fn send(mut self, served: Result<(), ServeError>) {
        if let Some(report) = self.0.take() {
            let _ = report.send(served);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(report) = self.0.take() {
            let _ = report.send(Err(ServeError::ThreadPanicked));
        }
    }
}

/// One thread's life: its runtime, serving, then waiting for the release.
fn run(
    serving: impl std::future::Future<Output = Result<(), ServeError>>,
    report: Report,
    release: CancellationToken,
) {
    socket_reads::hear_on_this_thread();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(before_sleep::run)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return report.send(Err(ServeError::Threads(err))),
    };
    runtime.block_on(async {
        report.send(serving.await);
        release.cancelled().await;
    });
    runtime.shutdown_timeout(BLOCKING_WORK_GRACE);
}

/// One thread's serving, on its own runtime.
async fn serve(
    listener: StdListener,
    router: Router,
    accepting: Accepting,
    stop_accepting: CancellationToken,
    stop_now: CancellationToken,
) -> Result<(), ServeError> {
    let listener = TcpListener::from_std(listener).map_err(ServeError::Threads)?;
    let connections = Connections::new(listener, accepting);
    tokio::select! {
        served = router.serve_with_incoming_shutdown(connections, stop_accepting.cancelled_owned()) => {
            Ok(served?)
        }
        () = stop_now.cancelled() => Ok(()),
    }
}

/// One thread per CPU core, as tokio's multi-threaded runtime would start.
pub(super) fn default_count() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}
