//! Warnings about something that can happen thousands of times a second
//! (refused connections, failed accepts) are logged at most once per
//! interval, with the count of those held back, so that a flood cannot turn
//! into a flood of log lines.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often such a warning is logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Lets one event of a kind through to the log per interval.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the next event may be logged; `None` before the first.
    next: Option<Instant>,
    /// Events since the last one logged.
    held_back: u64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::default(),
        }
    }

    /// One event: `Some(n)` when it is to be logged, `n` being the events
    /// held back since the last one logged; `None` when it is held back.
    pub fn admit(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.next.is_some_and(|next| now < next) {
            state.held_back += 1;
            return None;
        }
        state.next = Some(now + self.interval);
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_logged_then_one_per_interval_with_the_count() {
        let throttle = LogThrottle::new(Duration::from_millis(50));
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.admit(), Some(2));
        assert_eq!(throttle.admit(), None);
    }
}
