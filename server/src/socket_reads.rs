//! Work to do when a connection thread next reads from a socket.
//!
//! A connection thread's calls all arrive through its own sockets: every
//! call it runs was read by this thread, in a read that came before the
//! call ran. So a snapshot of the database taken after the thread's last
//! read already holds whatever was committed before any of its calls was
//! sent (a write the client saw acknowledged, by any process). The SQLite
//! engine answers Loads from one read transaction and ends it here, at the
//! thread's next read (see `store::sqlite::loads`). That holds on three
//! conditions:
//! - no task that did not come from this thread's sockets runs on a
//!   connection thread (`server::threads` spawns none);
//! - no call writes and then Loads, since no read comes between the two;
//! - every read goes through `BatchedWrites`, which tells this module.
//!
//! A snapshot so taken is never older than the thread's last read, which
//! came after every call the thread is working on arrived: a Load reads a
//! state no older than its own request. `store::cached`'s fill rule, which
//! reasons from when a Load starts, holds as long as a call starts within
//! a tombstone's life (30 s or more) of its arrival, well inside the
//! request timeout's default.
//!
//! Only threads that serve connections are marked as hearing of their
//! reads ([`hear_on_this_thread`]); elsewhere [`heard_here`] is false and
//! nothing may be assumed about when a call arrived. This module sits
//! below both `server` and `store`.

use std::cell::Cell;

use crate::due_once::DueOnce;

thread_local! {
    static HEARD: Cell<bool> = const { Cell::new(false) };
    static TASKS: DueOnce = const { DueOnce::new() };
}

/// Marks this thread as one that serves connections and hears of each of
/// their reads.
pub fn hear_on_this_thread() {
    HEARD.with(|heard| heard.set(true));
}

/// Whether this thread hears of its socket reads.
pub fn heard_here() -> bool {
    HEARD.with(Cell::get)
}

/// Runs `task` when this thread next reads from a socket, once however
/// often it is asked for meanwhile.
pub fn before_next(task: fn()) {
    TASKS.with(|tasks| tasks.add(task));
}

/// A connection of this thread read bytes from its socket: what was due at
/// the next read runs now, before anything read can be worked on.
pub fn read_in() {
    TASKS.with(DueOnce::run);
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static RAN: Cell<usize> = const { Cell::new(0) };
    }

    fn count() {
        RAN.with(|ran| ran.set(ran.get() + 1));
    }

    #[test]
    fn a_task_runs_once_at_the_next_read() {
        std::thread::spawn(|| {
            assert!(!heard_here());
            hear_on_this_thread();
            assert!(heard_here());
            before_next(count);
            before_next(count);
            read_in();
            read_in();
            assert_eq!(RAN.with(Cell::get), 1);
        })
        .join()
        .unwrap();
    }
}
