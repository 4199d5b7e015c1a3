//! The store's gauges (its connection pool, its SQLite files), asked of
//! the engine at each scrape ([`SessionStore::gauges`]) rather than pushed
//! by the calls, which record nothing for them.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::encode_gauge as gauge;
use crate::store::SessionStore;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Asks the engine for its gauges at each scrape.
#[derive(Debug)]
pub(super) struct StoreCollector {
    pub(super) store: Arc<dyn SessionStore>,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = self.store.gauges();
        if let Some(pool) = gauges.pool {
            let mut family = encoder.encode_descriptor(
                "store_pool_connections",
                "Connections of the store's pool, by state: in_use (by a call), idle",
                None,
                MetricType::Gauge,
            )?;
            for (state, value) in [("in_use", pool.in_use), ("idle", pool.idle)] {
                ConstGauge::new(value).encode(family.encode_family(&StateLabels { state })?)?;
            }
            gauge(
                &mut encoder,
                "store_pool_max_connections",
                "Most connections the store's pool opens",
                None,
                pool.max,
            )?;
            if let Some(waiters) = pool.waiters {
                gauge(
                    &mut encoder,
                    "store_pool_waiters",
                    "Calls waiting for a connection of the store's pool",
                    None,
                    waiters,
                )?;
            }
        }
        if let Some(sqlite) = gauges.sqlite {
            gauge(
                &mut encoder,
                "sqlite_file",
                "Size of the SQLite database file",
                Some(&Unit::Bytes),
                sqlite.file_bytes,
            )?;
            gauge(
                &mut encoder,
                "sqlite_wal",
                "Size of the SQLite write-ahead log (-wal file)",
                Some(&Unit::Bytes),
                sqlite.wal_bytes,
            )?;
            let last_checkpoint = sqlite
                .last_checkpoint
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok());
            if let Some(since_epoch) = last_checkpoint {
                gauge(
                    &mut encoder,
                    "sqlite_last_checkpoint_timestamp",
                    "When a background checkpoint last copied the whole write-ahead log into \
                     the database, in seconds since the epoch (it stays put while nothing is \
                     written)",
                    Some(&Unit::Seconds),
                    since_epoch.as_secs_f64(),
                )?;
            }
            let copies = sqlite.row_cache;
            gauge(
                &mut encoder,
                "sqlite_row_cache_sessions",
                "Sessions whose rows the SQLite engine keeps copies of in memory, to answer Loads",
                None,
                copies.sessions,
            )?;
            gauge(
                &mut encoder,
                "sqlite_row_cache",
                "Memory those copies take, as row_cache_mib counts it",
                Some(&Unit::Bytes),
                copies.bytes,
            )?;
            for (name, help, total) in [
                (
                    "sqlite_row_cache_hits",
                    "Loads answered from a copy in memory",
                    copies.hits,
                ),
                (
                    "sqlite_row_cache_misses",
                    "Loads that looked for a copy in memory and read the file instead",
                    copies.misses,
                ),
            ] {
                let counter = ConstCounter::new(total);
                counter.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}
