//! `--expired`: a ClearExpired of many expired sessions while the load runs,
//! to show what a purge costs the calls around it and how fast it goes.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;

use crate::connection::{Connection, Written};
use crate::measure::Window;

/// How long the ClearExpired call may take: a purge of millions of rows
/// runs for minutes, far past the request timeout of the load.
pub const PURGE_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long before the run the expired sessions expired.
const EXPIRED_AGO: Duration = Duration::from_secs(24 * 3600);

/// What the ClearExpired call did.
#[derive(Debug, Clone, Serialize)]
pub struct Purge {
    /// Rows it removed (the expired sessions the bench created, and any
    /// others that had expired in the store).
    pub removed: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// It answered before the measured window ended, so the latencies also
    /// cover calls made after it.
    pub ended_inside_window: bool,
}

/// The data of the expired sessions, with an expiry a day ago.
pub fn expired(written: &Written) -> Written {
    Written {
        data: written.data.clone(),
        expire_at: SystemTime::now() - EXPIRED_AGO,
    }
}

/// Calls ClearExpired on `conn` as the measured window starts.
pub fn spawn(
    mut conn: Connection,
    window: Window,
) -> tokio::task::JoinHandle<anyhow::Result<Purge>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(window.measure_start.into()).await;
        let started = Instant::now();
        let removed = conn
            .clear_expired()
            .await
            .map_err(|failure| anyhow::anyhow!("ClearExpired answered {failure}"))?;
        let finished = Instant::now();
        let seconds = (finished - started).as_secs_f64();
        Ok(Purge {
            removed,
            seconds,
            rows_per_s: removed as f64 / seconds.max(f64::EPSILON),
            ended_inside_window: finished < window.end,
        })
    })
}

/// Waits for the purge of a row; fails the row if it failed.
pub async fn finish(
    purge: Option<tokio::task::JoinHandle<anyhow::Result<Purge>>>,
) -> anyhow::Result<Option<Purge>> {
    match purge {
        Some(task) => Ok(Some(task.await.context("the ClearExpired task panicked")??)),
        None => Ok(None),
    }
}
