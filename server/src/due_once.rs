//! A queue of tasks that run once at the next moment of some kind (a
//! thread's next sleep, its next socket read), each queued at most once
//! however often it is asked for meanwhile: a busy thread may go a long
//! time before that moment comes. Kept in a thread-local by its users.

use std::cell::RefCell;

#[derive(Debug, Default)]
pub struct DueOnce(RefCell<Vec<fn()>>);

impl DueOnce {
    pub const fn new() -> Self {
        Self(RefCell::new(Vec::new()))
    }

    /// Queues `task` unless it is queued already.
    pub fn add(&self, task: fn()) {
        let mut tasks = self.0.borrow_mut();
        if !tasks
            .iter()
            .any(|queued| std::ptr::fn_addr_eq(*queued, task))
        {
            tasks.push(task);
        }
    }

    /// Runs what is queued and empties the queue; a task may queue again.
    pub fn run(&self) {
        let due = std::mem::take(&mut *self.0.borrow_mut());
        for task in due {
            task();
        }
    }
}
