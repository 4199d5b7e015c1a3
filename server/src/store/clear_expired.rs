//! Removing expired rows in batches, and pausing between batches for the
//! calls a server takes meanwhile.
//!
//! A batch's cost to other calls is more than the time it takes: on SQLite
//! each commit also empties every read connection's page cache, and the
//! checkpoint then copies the batch's pages into the database. Removing a
//! million rows at full speed tripled the p99 of the Loads served at the
//! same time; pausing ten times a batch's duration after each batch kept it
//! within twice the p99 without a purge (README, "A purge under load").
//! A server with nothing else to do purges at full speed.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{SessionStore, StoreError};

/// After a batch during which the server admitted other calls, the purge
/// pauses this many times as long as the batch took: under steady load it
/// then works about one part of the time in eleven.
const PAUSE_FACTOR: u32 = 10;

/// The longest pause: a batch slowed by a lock wait or a disk stall does
/// not hold up the rest of the purge for ten times as long.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Removes every row whose expiry is before `now`, in batches of
/// `batch_size`, one right after the other; returns how many.
pub async fn clear_expired(
    store: &dyn SessionStore,
    now: DateTime<Utc>,
    batch_size: u64,
) -> Result<u64, StoreError> {
    clear_expired_among_calls(store, now, batch_size, || 0).await
}

/// [`clear_expired`] in a server: `calls_admitted` counts the calls the
/// server has admitted so far, and after a batch during which it moved,
/// the purge pauses before the next one.
pub(crate) async fn clear_expired_among_calls(
    store: &dyn SessionStore,
    now: DateTime<Utc>,
    batch_size: u64,
    calls_admitted: impl Fn() -> u64,
) -> Result<u64, StoreError> {
    in_batches(
        || store.clear_expired_batch(now, batch_size),
        batch_size,
        calls_admitted,
    )
    .await
}

/// Runs `remove_batch` until it removes fewer than `batch_size` rows.
async fn in_batches<Batch>(
    mut remove_batch: impl FnMut() -> Batch,
    batch_size: u64,
    calls_admitted: impl Fn() -> u64,
) -> Result<u64, StoreError>
where
    Batch: Future<Output = Result<u64, StoreError>>,
{
    let mut removed = 0;
    loop {
        let calls_before = calls_admitted();
        let started = Instant::now();
        let batch = remove_batch().await?;
        removed += batch;
        if batch < batch_size {
            return Ok(removed);
        }
        if calls_admitted() != calls_before {
            tokio::time::sleep(pause_after(started.elapsed())).await;
        }
    }
}

/// The pause after a batch that took `took` while other calls came in.
fn pause_after(took: Duration) -> Duration {
    took.saturating_mul(PAUSE_FACTOR).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const BATCH_TAKES: Duration = Duration::from_millis(2);

    /// Removes `rows` in batches of 10 that take [`BATCH_TAKES`] each; says
    /// how many rows went and how long that took on tokio's paused clock.
    async fn purge(rows: u64, calls_admitted: impl Fn() -> u64) -> (u64, Duration) {
        let left = Cell::new(rows);
        let started = Instant::now();
        let removed = in_batches(
            || async {
                tokio::time::sleep(BATCH_TAKES).await;
                let batch = left.get().min(10);
                left.set(left.get() - batch);
                Ok(batch)
            },
            10,
            calls_admitted,
        )
        .await
        .unwrap();
        (removed, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_server_purges_without_pausing() {
        let (removed, took) = purge(35, || 0).await;
        assert_eq!(removed, 35);
        // Four batches, the last one short.
        assert_eq!(took, BATCH_TAKES * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_during_a_batch_make_the_purge_pause_ten_times_its_duration() {
        let calls = Cell::new(0);
        let (removed, took) = purge(35, || {
            calls.set(calls.get() + 1);
            calls.get()
        })
        .await;
        assert_eq!(removed, 35);
        // A pause after each of the three full batches, none after the last.
        assert_eq!(took, BATCH_TAKES * 4 + BATCH_TAKES * 10 * 3);
    }

    #[test]
    fn a_slow_batch_is_followed_by_a_second_at_most() {
        assert_eq!(
            pause_after(Duration::from_millis(3)),
            Duration::from_millis(30)
        );
        assert_eq!(pause_after(Duration::from_secs(5)), MAX_PAUSE);
        assert_eq!(pause_after(Duration::MAX), MAX_PAUSE);
    }
}
