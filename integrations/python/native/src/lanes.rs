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
//! it went back to Python, until another caller took over.
//!
//! Between calls a keeper thread drives the caller-driven lane for a moment
//! every [`KEEPER_TICK`], so that its connection still answers the server's
//! pings and sends its own while Python does other work. The shared lane's
//! worker does that for its own. Each lane connects on its first call, so an
//! app that never overlaps calls holds one connection.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};
use tonic::transport::{Channel, Endpoint};

/// How often the keeper thread drives the idle caller-driven lane. Far
/// below any keepalive interval or timeout (seconds), and rare enough that a
/// call seldom finds the keeper driving and waits for it to let go (a few
/// µs).
const KEEPER_TICK: Duration = Duration::from_millis(100);

/// Both lanes, and how many calls are in flight on them.
pub(crate) struct Lanes {
    caller_driven: Lane,
    shared: Lane,
    in_flight: AtomicUsize,
}

/// A runtime and a lazily connected channel on it.
struct Lane {
    runtime: Arc<Runtime>,
    channel: Channel,
    /// Dropping it stops the keeper thread (the caller-driven lane only).
    keeper: Option<mpsc::Sender<()>>,
}

impl Lanes {
    /// Both lanes to `endpoint`; the error says what could not start.
    pub(crate) fn open(endpoint: &Endpoint) -> Result<Self, String> {
        let caller_driven = Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the runtime: {err}"))?;
        let shared = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sessiond-channel")
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the runtime: {err}"))?;
        let mut caller_driven = Lane::open(caller_driven, endpoint);
        caller_driven.keeper = Some(start_keeper(caller_driven.runtime.clone())?);
        Ok(Self {
            caller_driven,
            shared: Lane::open(shared, endpoint),
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
        let lane = if alone {
            &self.caller_driven
        } else {
            &self.shared
        };
        lane.runtime.block_on(call(lane.channel.clone()))
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
            runtime: Arc::new(runtime),
            channel,
            keeper: None,
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

/// Starts the thread that drives `runtime` between calls, every
/// [`KEEPER_TICK`], until the returned sender is dropped.
fn start_keeper(runtime: Arc<Runtime>) -> Result<mpsc::Sender<()>, String> {
    let (keeper, stop) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sessiond-keeper".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(KEEPER_TICK) {
                // A few turns of the runtime: one polls the socket and the
                // timers, the next runs the connection's task on what came
                // in (a ping), the last writes what it queued (the answer).
                // While a call drives the runtime, these return at once.
                runtime.block_on(async {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                });
            }
        })
        .map_err(|err| format!("cannot start the keeper thread: {err}"))?;
    Ok(keeper)
}
