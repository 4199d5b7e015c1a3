//! Work a connection thread does once it has nothing left to run, before
//! its runtime sleeps until a socket or another thread wakes it.
//!
//! The SQLite engine ends the read transaction a thread holds here, so that
//! an idle thread keeps no snapshot open (an open snapshot keeps the
//! write-ahead log from starting over). This module sits below both
//! `server` and `store`.

use crate::due_once::DueOnce;

thread_local! {
    static TASKS: DueOnce = const { DueOnce::new() };
}

/// Runs `task` the next time this thread is about to sleep, once however
/// often it is asked for meanwhile: a busy thread may go a long time
/// without sleeping.
pub fn once(task: fn()) {
    TASKS.with(|tasks| tasks.add(task));
}

/// Runs what is due; the runtime of each connection thread calls this
/// before it sleeps.
pub fn run() {
    TASKS.with(DueOnce::run);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        static RAN: Cell<usize> = const { Cell::new(0) };
    }

    fn count() {
        RAN.with(|ran| ran.set(ran.get() + 1));
    }

    #[test]
    fn a_task_runs_once_before_the_next_sleep() {
        once(count);
        once(count);
        run();
        run();
        assert_eq!(RAN.with(Cell::get), 1);
    }
}
