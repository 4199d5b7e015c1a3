//! The two runtimes a call can run on, each with its own connection to the
//! one address.
//!
//! A call alone (none other in flight on this channel) runs on the
//! *caller-driven* lane: a single-threaded runtime that the calling thread
//! drives itself, writing the request, waiting for the socket and reading
//! the answer. Handing the call to a runtime thread and the answer back
//! would cost two thread wake-ups, about a third of a Load's round trip on
//! a small machine, and one call at a time is what a single-threaded app
//! (a Django or Flask worker process) makes.
//!
//! Calls made while another is in flight (an app's threads sharing the
//! client) run on the *shared* lane: a runtime with one worker thread that
//! drives their common connection, as the calling threads wait. There a
//! caller-driven runtime would stall every call whenever the thread driving
//! it went back to Python, until another caller took over. The shared lane
//! starts with the first call that overlaps another, so an app that never
//! overlaps calls has one connection and no worker thread; if it cannot
//! start (no thread to be had), the call runs on the caller-driven lane, and
//! the next overlapping call tries again.
//!
//! Between calls a keeper thread drives the caller-driven lane for a moment
//! every [`KEEPER_TICK`], so that its connection answers the server's pings
//! and sends its own while Python does other work. A call on that lane
//! first lets the runtime look at the socket, so that a connection the
//! server closed since the keeper's last turn (a restart, an idle cut) is
//! seen closed and replaced before the request is sent, rather than failing
//! the call.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use tonic::transport::{Channel, Endpoint};

/// How often the keeper thread drives the idle caller-driven lane: well
/// inside the time a server gives a ping to be answered (sessiond's is as
/// long as its `--keepalive`, 60 s by default, at most 20 s), and seldom
/// enough that a call rarely finds the keeper driving and waits for it to
/// let go (a few µs).
const KEEPER_TICK: Duration = Duration::from_millis(250);

/// Both lanes, and how many calls are in flight on them.
pub(crate) struct Lanes {
    caller_driven: Lane,
    /// Started by the first call that overlaps another.
    shared: OnceLock<Lane>,
    /// Held while the shared lane starts, so that it starts once.
    starting_shared: Mutex<()>,
    endpoint: Endpoint,
    in_flight: AtomicUsize,
}

/// A lazily connected channel and the runtime it runs on, dropped in this
/// order: the channel, the keeper, then the runtime they both use (which
/// waits for its blocking work, a name lookup say).
struct Lane {
    channel: Channel,
    /// The caller-driven lane's keeper thread, held so that dropping the
    /// lane stops it.
    _keeper: Option<Keeper>,
    runtime: Arc<Runtime>,
}

/// The keeper thread; dropping this stops it and waits for it.
struct Keeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Lanes {
    /// The caller-driven lane to `endpoint`, with its keeper thread.
    pub(crate) fn open(endpoint: Endpoint) -> std::io::Result<Self> {
        let runtime = Builder::new_current_thread()
            .thread_name("sessiond-blocking")
            .enable_all()
            .build()?;
        let runtime = Arc::new(runtime);
        let keeper = Keeper::start(runtime.clone())?;
        Ok(Self {
            caller_driven: Lane::open(runtime, &endpoint, Some(keeper)),
            shared: OnceLock::new(),
            starting_shared: Mutex::new(()),
            endpoint,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Runs `call` on a clone of a lane's channel, blocking this thread
    /// until it ends: on the caller-driven lane when no other call is in
    /// flight, else on the shared one.
    pub(crate) fn run<F, T>(&self, call: impl FnOnce(Channel) -> F) -> T
    where
        F: Future<Output = T>,
    {
        let alone = self.in_flight.fetch_add(1, Ordering::SeqCst) == 0;
        let _in_flight = InFlight(&self.in_flight);
        if !alone && let Some(shared) = self.shared() {
            return shared.block_on(call);
        }
        self.caller_driven.block_on(|channel| async {
            // Two turns of the runtime: one polls the socket, the next runs
            // the connection's task on what came in (a close).
            for _ in 0..2 {
                tokio::task::yield_now().await;
            }
            call(channel).await
        })
    }

    /// The shared lane, started if need be; `None` if it cannot start.
    fn shared(&self) -> Option<&Lane> {
        if let Some(lane) = self.shared.get() {
            return Some(lane);
        }
        let _starting = self
            .starting_shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.shared.get().is_none() {
            let runtime = Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("sessiond-channel")
                .enable_all()
                .build()
                .ok()?;
            let _ = self
                .shared
                .set(Lane::open(Arc::new(runtime), &self.endpoint, None));
        }
        self.shared.get()
    }
}

impl Lane {
    /// Connects on the first call; a lost connection is reopened by the
    /// next call, at once (no back-off to wait out).
    fn open(runtime: Arc<Runtime>, endpoint: &Endpoint, keeper: Option<Keeper>) -> Self {
        let channel = {
            let _context = runtime.enter();
            endpoint.clone().connect_lazy()
        };
        Self {
            channel,
            _keeper: keeper,
            runtime,
        }
    }

    /// Runs the future `call` makes of a clone of the channel, blocking
    /// this thread until it ends.
    fn block_on<F: Future>(&self, call: impl FnOnce(Channel) -> F) -> F::Output {
        self.runtime.block_on(call(self.channel.clone()))
    }
}

/// Counts a call out of flight when it ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Keeper {
    /// Starts the thread that drives `runtime` every [`KEEPER_TICK`].
    fn start(runtime: Arc<Runtime>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sessiond-keeper".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(KEEPER_TICK) {
                    // A few turns of the runtime: one polls the socket and
                    // the timers, the next runs the connection's task on
                    // what came in (a ping), the last writes what it queued
                    // (the answer). While a call drives the runtime, these
                    // return at once.
                    runtime.block_on(async {
                        for _ in 0..4 {
                            tokio::task::yield_now().await;
                        }
                    });
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // A closed channel ends the thread's wait at once.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
