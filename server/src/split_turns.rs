//! Calls that arrive together are worked on in two halves, and the first
//! half's answers are written out while the second half is worked on.
//!
//! A client with dozens of calls in flight on one connection sends them in
//! one burst, and HTTP/2 interleaves their frames (every request's headers,
//! then every body), so that none is complete before the burst's last
//! bytes. Left alone, a connection's thread then works on every call of
//! the burst before it writes any answer, and the client, idle meanwhile,
//! gets them all at once and sends its next burst while the server waits
//! in turn: the two processes take turns instead of working at once. With
//! 64 Loads in flight from `memory://` each was busy about half the time.
//!
//! Here, once [`FIRST_CALLS`] calls have started since this thread last
//! wrote answers out, every other call waits one turn of the runtime (a
//! deferred wake, as `tokio::task::yield_now`). The calls that went ahead
//! are answered, their answers are written (the connection's task runs
//! before the runtime's next turn), and then the rest start: the client
//! works on the first answers while the server works on the rest. The
//! split repeats on whatever arrives next, so the two stay busy together.
//! A call waits at most once, so nothing waits on anything but the
//! runtime's own turn, and fewer than [`FIRST_CALLS`] calls at once (an app
//! making one call at a time) never wait.
//!
//! The count is per thread: each serving thread runs a single-threaded
//! runtime of its own (see `server::threads`), and a connection with all
//! its calls stays on the thread that accepted it.

use std::cell::Cell;

/// Calls that start at once before any waits: a handful of answers is
/// worth a write of its own, and below it splitting saves nothing.
pub const FIRST_CALLS: usize = 8;

/// The calls of this thread since it last wrote answers out.
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
    /// Whether the next call waits a turn: past the first calls, one in
    /// two does, so that as many wait as went ahead.
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

/// Answers went out from this thread: what starts next is a new burst.
pub fn answers_written() {
    SINCE_WRITE.with(|since| since.set(Since::default()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Starts `calls` calls on a single-threaded runtime, as a serving
    /// thread does, and returns how many began in the first turn.
    fn started_in_first_turn(calls: usize) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            answers_written();
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

    #[test]
    fn a_write_starts_a_new_burst() {
        answers_written();
        for _ in 0..FIRST_CALLS {
            assert!(!SINCE_WRITE.with(Cell::get).next_waits());
            SINCE_WRITE.with(|since| {
                since.set(Since {
                    started: since.get().started + 1,
                    ..since.get()
                })
            });
        }
        assert!(SINCE_WRITE.with(Cell::get).next_waits());
        answers_written();
        assert!(!SINCE_WRITE.with(Cell::get).next_waits());
    }
}
