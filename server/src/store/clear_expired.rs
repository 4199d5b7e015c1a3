//! Removing expired rows in batches, and making room for the calls a
//! server takes meanwhile.
//!
//! A batch's cost to other calls is more than the time it takes: on SQLite
//! each commit also empties every read connection's page cache, and the
//! checkpoint then copies the batch's pages into the database. Removing a
//! million rows at full speed tripled the p99 of the Loads served at the
//! same time; waiting ten times a batch's duration after each batch kept it
//! within twice the p99 without a purge (README, "A purge under load").
//! A server with nothing else to do purges at full speed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{SessionStore, StoreError};

/// After a batch during which the server took other calls, the purge waits
/// this many times as long as the batch took before the next one: it then
/// keeps the store busy for at most a tenth of the time, and a purge under
/// steady load takes about eleven times as long as one on an idle server.
pub const YIELD_FACTOR: u32 = 10;

/// Removes every row whose expiry is before `now`, in batches of
/// `batch_size`, one after the other; returns how many.
pub async fn clear_expired(
    store: &dyn SessionStore,
    now: DateTime<Utc>,
    batch_size: u64,
) -> Result<u64, StoreError> {
    clear_expired_yielding(store, now, batch_size, || 0).await
}

/// [`clear_expired`] in a server that takes other calls meanwhile.
/// `calls_taken` counts the calls the server has taken so far; after a
/// batch during which it moved, the purge waits [`YIELD_FACTOR`] times the
/// batch's duration before the next one.
pub async fn clear_expired_yielding(
    store: &dyn SessionStore,
    now: DateTime<Utc>,
    batch_size: u64,
    calls_taken: impl Fn() -> u64,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let calls_before = calls_taken();
        let started = Instant::now();
        let batch = store.clear_expired_batch(now, batch_size).await?;
        removed += batch;
        if batch < batch_size {
            return Ok(removed);
        }
        let pause = pause_after(started.elapsed(), calls_taken() != calls_before);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// How long to wait after a batch that took `took`.
fn pause_after(took: Duration, others_were_served: bool) -> Duration {
    if others_were_served {
        took.saturating_mul(YIELD_FACTOR)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use chrono::TimeDelta;

    use std::sync::Arc;

    use super::*;
    use crate::session::{ExpireDate, Record, SessionKey};
    use crate::store::{StoreOptions, StoreUrl, open};

    #[test]
    fn a_batch_among_other_calls_is_followed_by_ten_times_its_duration() {
        let took = Duration::from_millis(3);
        assert_eq!(pause_after(took, true), Duration::from_millis(30));
        assert_eq!(pause_after(took, false), Duration::ZERO);
        assert_eq!(pause_after(Duration::MAX, true), Duration::MAX);
    }

    async fn store_with_expired(rows: usize) -> (Arc<dyn SessionStore>, DateTime<Utc>) {
        let url: StoreUrl = "memory://".parse().unwrap();
        let store = open(&url, &StoreOptions::default()).await.unwrap();
        let now = Utc::now();
        for index in 0..rows {
            let record = Record {
                session_data: "{}".into(),
                expire_date: ExpireDate::new(now - TimeDelta::hours(1)).unwrap(),
            };
            let key = SessionKey::parse(&format!("expired{index:08}")).unwrap();
            store.insert(&key, record).await.unwrap();
        }
        (store, now)
    }

    #[tokio::test]
    async fn every_expired_row_goes_whether_or_not_the_server_is_busy() {
        let (store, now) = store_with_expired(25).await;
        assert_eq!(clear_expired(store.as_ref(), now, 10).await.unwrap(), 25);

        let (store, now) = store_with_expired(25).await;
        let calls = AtomicU64::new(0);
        let busy = || calls.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            clear_expired_yielding(store.as_ref(), now, 10, busy)
                .await
                .unwrap(),
            25
        );
        // Asked before each of the three batches and after each full one.
        assert_eq!(calls.load(Ordering::Relaxed), 5);
    }
}
