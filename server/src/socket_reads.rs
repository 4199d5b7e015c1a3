//! How many times this thread has read from its connections' sockets.
//!
//! A connection thread's calls all arrive through its sockets, so a call
//! being worked on was read before the count last moved. Whatever was
//! committed before the call was sent (a write the client saw
//! acknowledged) was committed before that read, and a snapshot of the
//! database taken since, with no read in between, already holds it: the
//! SQLite engine answers Loads from one read transaction for as long as
//! the count stays the same (see `store::sqlite::loads`).
//!
//! Counted only on threads that serve connections (`server::threads`); on
//! any other thread [`so_far`] is `None`, and nothing may be assumed about
//! when a call arrived.

use std::cell::Cell;

thread_local! {
    static READS: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Starts counting on this thread, which serves connections.
pub fn count_on_this_thread() {
    READS.with(|reads| reads.set(Some(reads.get().unwrap_or(0))));
}

/// A connection of this thread read bytes from its socket.
pub fn read_in() {
    READS.with(|reads| reads.set(reads.get().map(|count| count.wrapping_add(1))));
}

/// The count so far, on a thread that counts.
pub fn so_far() -> Option<u64> {
    READS.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_where_asked_to() {
        std::thread::spawn(|| {
            read_in();
            assert_eq!(so_far(), None);
            count_on_this_thread();
            assert_eq!(so_far(), Some(0));
            read_in();
            read_in();
            assert_eq!(so_far(), Some(2));
        })
        .join()
        .unwrap();
    }
}
