//! The threads that serve connections: each runs a single-threaded runtime
//! of its own and accepts on the one listening socket, so a connection, its
//! TLS handshake and every call on it stay on the thread that accepted it.
//!
//! On one multi-threaded runtime, the calls of one connection (a task each)
//! moved between the runtime's threads, which stole them from each other
//! and woke each other up to do so: that was a third of the server's CPU
//! per Load. A connection now costs one thread's time, and many
//! connections spread over the threads: whichever thread is free when one
//! arrives accepts it. Everything else (the purge, the readiness probe,
//! metrics, the engines' own tasks) stays on the main runtime.

use std::net::TcpListener as StdListener;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Router;

use super::ServeError;
use super::connections::{Accepting, Connections};

/// Once a thread has stopped serving, how long blocking work it started
/// (an SQLite read waiting for a lock) may keep its runtime alive.
const BLOCKING_WORK_GRACE: Duration = Duration::from_millis(500);

/// The running threads. Dropping this stops them at once, as
/// [`ConnectionThreads::stop_now`] does.
pub(super) struct ConnectionThreads {
    finished: Vec<oneshot::Receiver<Result<(), ServeError>>>,
    stop_now: CancellationToken,
}

impl ConnectionThreads {
    /// Starts `count` threads serving `router` on `listener` until
    /// `stop_accepting` is cancelled; each then closes its copy of the
    /// listener and finishes once its connections have closed (the HTTP/2
    /// layer asks clients to go away, as tonic's graceful shutdown does).
    pub(super) fn start(
        count: NonZeroUsize,
        listener: TcpListener,
        router: &Router,
        accepting: &Accepting,
        stop_accepting: &CancellationToken,
    ) -> Result<Self, ServeError> {
        let listener = listener.into_std().map_err(ServeError::Threads)?;
        let stop_now = CancellationToken::new();
        let mut finished = Vec::with_capacity(count.get());
        for index in 0..count.get() {
            let (done, finish) = oneshot::channel();
            let copy = listener.try_clone().map_err(ServeError::Threads)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Threads)?;
            let serving = serve(
                copy,
                router.clone(),
                accepting.clone(),
                stop_accepting.clone(),
                stop_now.clone(),
            );
            std::thread::Builder::new()
                .name(format!("sessiond-conn-{index}"))
                .spawn(move || {
                    let served = runtime.block_on(serving);
                    runtime.shutdown_timeout(BLOCKING_WORK_GRACE);
                    let _ = done.send(served);
                })
                .map_err(ServeError::Threads)?;
            finished.push(finish);
        }
        Ok(Self { finished, stop_now })
    }

    /// Completes when every thread has finished serving, with the first
    /// error any of them met.
    pub(super) async fn finished(&mut self) -> Result<(), ServeError> {
        let mut result = Ok(());
        for finish in &mut self.finished {
            // A thread that is gone without a word panicked; the panic
            // message is already on stderr.
            let served = finish.await.unwrap_or(Err(ServeError::ThreadPanicked));
            if result.is_ok() {
                result = served;
            }
        }
        result
    }

    /// Stops every thread without waiting for its connections: what is
    /// still open is closed.
    pub(super) fn stop_now(&self) {
        self.stop_now.cancel();
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        self.stop_now();
    }
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

impl std::fmt::Debug for ConnectionThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionThreads")
            .field("threads", &self.finished.len())
            .finish_non_exhaustive()
    }
}
