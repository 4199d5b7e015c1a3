//! Calls that arrive together are worked on in two halves, so that the
//! first half's answers can go out while the second half is worked on.
//!
//! A client with dozens of calls in flight on one connection sends them in
//! one burst, and an HTTP/2 layer that takes its streams in turn, frame by
//! frame (h2's, which tonic and so the Rust client and the native
//! transports use), sends every request's headers, then every body, then
//! every stream's end, so that no request is complete before the burst's
//! last bytes. Left alone, a connection's thread then worked on every call
//! of the burst before it wrote any answer, and wrote them in the same
//! order, so the client, idle meanwhile, had every answer only at the end
//! and sent its next burst while the server waited in turn: the two
//! processes took turns instead of working at once. With 64 Loads in flight
//! from `memory://` each was busy about half the time.
//!
//! Here, once [`FIRST_CALLS`] calls have started since this thread last
//! wrote to a socket, further calls wait one turn of the runtime (a
//! deferred wake, as `tokio::task::yield_now`) until as many have waited
//! as have started, then every other one waits: half a burst starts at
//! once, half a turn later. The calls that went ahead are answered, and
//! their answers are usually written before the rest start; the client
//! works on them while the server works on the rest, and the split
//! repeats on whatever arrives next.
//!
//! It is a heuristic, with its limits:
//! - The count is per thread, not per connection: each serving thread runs
//!   a single-threaded runtime of its own (see `server::threads`), with
//!   every connection it accepted. Any write from the thread (answers, but
//!   also HTTP/2's own frames and TLS handshakes, on any of its
//!   connections) starts the count again.
//! - A call is counted when its task first runs, which the HTTP/2 server
//!   starts on the request's headers, before its body has arrived.
//! - The runtime wakes waiting tasks when its queue runs empty, but also
//!   after every 61 tasks it runs; in a burst of more than that, some of
//!   the second half may start before the first half's answers are out.
//! - A call whose answer waits on another thread or server (PostgreSQL,
//!   Redis, SQLite's writes) is not answered within the turn, so the second
//!   half only starts a turn later. Their Loads a second did not change
//!   measurably. SQLite's Loads on a connection thread are answered within
//!   the turn, from a transaction that ends when the thread next reads from
//!   a socket: both halves of a burst that arrived in one read share it,
//!   unless more bytes arrive in between.
//! - At 256 calls in flight on one connection the build before already
//!   overlapped the two processes, and this costs about a tenth of the
//!   Loads a second there; from 16 to 128 in flight it adds from a tenth
//!   to nearly double.
//!
//! A call waits at most once, on nothing but the runtime's own turn, so
//! no call waits for another; up to [`FIRST_CALLS`] calls at once on a
//! thread never wait.

use std::cell::Cell;

/// Calls that start at once before any waits: a handful of answers is
/// worth a write of its own, and below it splitting saves nothing.
pub const FIRST_CALLS: usize = 8;

/// The calls of this thread since it last wrote to a socket.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Since {
    /// Started without waiting, or after their wait.
    started: usize,
    /// Sent to wait a turn.
    waiting: usize,
}

thread_local! {
    static SINCE_WRITE: Cell<Since> = const { Cell::new(Since { started: 0, waiting: 0 }) };
}

impl Since {
    /// Whether the next call waits a turn: past the first calls, enough do
    /// that as many wait as started.
    fn next_waits(self) -> bool {
        self.started >= self.waiting.max(FIRST_CALLS)
    }
}

/// Waits a turn of the runtime if this call is in the second half of what
/// arrived together; returns at once otherwise.
pub async fn wait_for_turn() {
    let waits = SINCE_WRITE.with(|since| {
        let mut now = since.get();
        let waits = now.next_waits();
        if waits {
            now.waiting += 1;
            since.set(now);
        }
        waits
    });
    if waits {
        tokio::task::yield_now().await;
    }
    SINCE_WRITE.with(|since| {
        let mut now = since.get();
        now.started += 1;
        since.set(now);
    });
}

/// This thread wrote to a socket (answers, most often): what starts next
/// is counted as a new burst.
pub fn wrote_out() {
    SINCE_WRITE.with(|since| since.set(Since::default()));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Starts `calls` calls on a single-threaded runtime, as a serving
    /// thread does, and returns how many began in the first turn.
    fn started_in_first_turn(calls: usize) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            wrote_out();
            let turn = Arc::new(AtomicUsize::new(0));
            let first_turn = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..calls {
                let (turn, first_turn) = (turn.clone(), first_turn.clone());
                tasks.push(tokio::spawn(async move {
                    wait_for_turn().await;
                    if turn.load(Ordering::SeqCst) == 0 {
                        first_turn.fetch_add(1, Ordering::SeqCst);
                    }
                }));
            }
            // Queued behind every call, so it runs after those that did not
            // wait and before those that did.
            let marker = turn.clone();
            tasks.push(tokio::spawn(
                async move { marker.store(1, Ordering::SeqCst) },
            ));
            for task in tasks {
                task.await.unwrap();
            }
            first_turn.load(Ordering::SeqCst)
        })
    }

    #[test]
    fn a_few_calls_at_once_never_wait() {
        assert_eq!(started_in_first_turn(1), 1);
        assert_eq!(started_in_first_turn(FIRST_CALLS), FIRST_CALLS);
    }

    #[test]
    fn a_burst_is_split_in_halves() {
        assert_eq!(started_in_first_turn(2 * FIRST_CALLS), FIRST_CALLS);
        assert_eq!(started_in_first_turn(64), 32);
        assert_eq!(started_in_first_turn(65), 32);
    }

    /// Starts a call, polling it once; it must not wait.
    pub(crate) fn start_call_at_once() {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let call = std::pin::pin!(wait_for_turn());
        assert!(call.poll(&mut cx).is_ready(), "the call waited a turn");
    }

    /// Whether the next call on this thread would wait a turn.
    pub(crate) fn next_call_waits() -> bool {
        SINCE_WRITE.with(Cell::get).next_waits()
    }

    #[test]
    fn a_write_starts_a_new_burst() {
        wrote_out();
        for _ in 0..FIRST_CALLS {
            start_call_at_once();
        }
        assert!(next_call_waits());
        wrote_out();
        assert!(!next_call_waits());
        start_call_at_once();
    }
}
