//! The progress line on stderr: rewritten in place once a second on a
//! terminal, one line a second otherwise (a log file has no use for `\r`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the line is rewritten.
const TICK: Duration = Duration::from_secs(1);

/// Where progress goes.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    overwrite: bool,
}

impl Progress {
    pub fn stderr() -> Self {
        Self {
            overwrite: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `line` as the current progress.
    pub fn show(&self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        let _ = if self.overwrite {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }

    /// Prints a line that stays, after clearing the progress line.
    pub fn note(&self, line: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.overwrite {
            let _ = write!(stderr, "\r\x1b[K");
        }
        let _ = writeln!(stderr, "{line}");
    }

    /// Clears the progress line.
    pub fn clear(&self) {
        if self.overwrite {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }

    /// Shows `line(elapsed)` once a second until [`Ticker::stop`].
    pub fn tick<F>(&self, line: F) -> Ticker
    where
        F: Fn(Duration) -> String + Send + 'static,
    {
        let progress = *self;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut interval = tokio::time::interval_at(start + TICK, TICK);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => break,
                    now = interval.tick() => progress.show(&line(now - start)),
                }
            }
            progress.clear();
        });
        Ticker { stop, task }
    }
}

/// A running progress line; owned by whoever started it.
#[derive(Debug)]
pub struct Ticker {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Ticker {
    /// Stops the line and clears it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
