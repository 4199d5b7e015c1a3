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
//! overlaps calls has one connection and no worker thread.
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
use std::sync::{Arc, OnceLock, mpsc};
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
    /// Started by the first call that overlaps another; the error, if it
    /// could not start, is every overlapping call's.
    shared: OnceLock<std::io::Result<Lane>>,
    endpoint: Endpoint,
    in_flight: AtomicUsize,
}

/// A lazily connected channel and the runtime it runs on. The channel goes
/// first, then the keeper, then the runtime they both use.
struct Lane {
    channel: Channel,
    /// The caller-driven lane's keeper thread.
    keeper: Option<Keeper>,
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
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let mut caller_driven = Lane::open(runtime, &endpoint);
        caller_driven.keeper = Some(Keeper::start(caller_driven.runtime.clone())?);
        Ok(Self {
            caller_driven,
            shared: OnceLock::new(),
            endpoint,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Runs `call` on a clone of a lane's channel, blocking this thread
    /// until it ends: on the caller-driven lane when no other call is in
    /// flight, else on the shared one.
    pub(crate) fn run<F, T>(&self, call: impl FnOnce(Channel) -> F) -> std::io::Result<T>
    where
        F: Future<Output = T>,
    {
        let alone = self.in_flight.fetch_add(1, Ordering::SeqCst) == 0;
        let _in_flight = InFlight(&self.in_flight);
        if alone {
            let lane = &self.caller_driven;
            let call = call(lane.channel.clone());
            return Ok(lane.runtime.block_on(async {
                // Two turns of the runtime: one polls the socket, the next
                // runs the connection's task on what came in (a close).
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
                call.await
            }));
        }
        match self.shared.get_or_init(|| self.open_shared()) {
            Ok(lane) => Ok(lane.runtime.block_on(call(lane.channel.clone()))),
            Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
        }
    }

    fn open_shared(&self) -> std::io::Result<Lane> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sessiond-channel")
            .enable_all()
            .build()?;
        Ok(Lane::open(runtime, &self.endpoint))
    }
}

impl Lane {
    /// Connects on the first call; a lost connection is reopened by the
    /// next call, at once (no back-off to wait out).
    fn open(runtime: Runtime, endpoint: &Endpoint) -> Self {
        let channel = {
            let _context = runtime.enter();
            endpoint.clone().connect_lazy()
        };
        Self {
            channel,
            keeper: None,
            runtime: Arc::new(runtime),
        }
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
