//! The background purge: removes expired sessions every `--purge-interval`,
//! so the table does not grow without bound even when nobody runs
//! `clearsessions`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::ErrorChain;
use crate::metrics::{Metrics, PurgeTrigger};
use crate::store::{self, SessionStore};

/// Starts the purge task, or nothing when `interval` is zero. The task ends
/// when `stop` is cancelled; a batch in progress then completes on its own.
pub(crate) fn spawn(
    store: Arc<dyn SessionStore>,
    interval: Duration,
    batch_size: u64,
    metrics: Metrics,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    metrics.purge_interval(interval);
    if interval.is_zero() {
        tracing::info!("background purge disabled");
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                result = store::clear_expired_among_calls(store.as_ref(), Utc::now(), batch_size, || metrics.calls_admitted()) => match result {
                    Ok(removed) => {
                        metrics.purged(PurgeTrigger::Background, removed);
                        tracing::info!(removed, "purged expired sessions");
                    }
                    Err(err) => tracing::warn!(error = %ErrorChain(&err), "purge of expired sessions failed; retrying at the next interval"),
                },
            }
        }
    }))
}
