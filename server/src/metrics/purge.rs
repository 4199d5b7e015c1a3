//! When a purge of expired sessions last completed, and what it removed:
//! absent until the first one has, so that an alert on a stalled purge
//! does not take "never yet" for "at the epoch".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;

use super::encode_gauge as gauge;

/// The last completed purge; updated by each, read at each scrape.
#[derive(Debug, Default)]
pub(super) struct LastPurge {
    /// Milliseconds since the epoch; 0 until a purge completes.
    at_millis: AtomicU64,
    removed: AtomicU64,
}

impl LastPurge {
    /// A purge completed now, removing `removed` sessions.
    pub(super) fn completed(&self, removed: u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        self.removed.store(removed, Ordering::Relaxed);
        self.at_millis.store(now.max(1), Ordering::Relaxed);
    }
}

impl Collector for LastPurge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let at_millis = self.at_millis.load(Ordering::Relaxed);
        if at_millis == 0 {
            return Ok(());
        }
        gauge(
            &mut encoder,
            "purge_last_success_timestamp",
            "When a purge of expired sessions (background or ClearExpired) last completed, \
             in seconds since the epoch",
            Some(&Unit::Seconds),
            at_millis as f64 / 1000.0,
        )?;
        gauge(
            &mut encoder,
            "purge_last_removed_sessions",
            "Expired sessions the last completed purge removed",
            None,
            self.removed.load(Ordering::Relaxed),
        )
    }
}
