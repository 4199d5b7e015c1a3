//! How many connections are served at once, in all and from one IP
//! address (`--max-connections`, `--max-connections-per-ip`).
//!
//! Connections are accepted before any token is checked, and each one
//! holds a file descriptor and memory for as long as its peer likes. One
//! past a limit is closed as soon as it is accepted: that costs an accept
//! and a close, its peer learns at once to go elsewhere, and the listener's
//! backlog keeps moving. The default limit stays below the open-file limit,
//! so that accepts keep succeeding and the store can still open its files.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::log_throttle::LogThrottle;
use crate::metrics::{Metrics, Refusal};

/// Files kept for what is not a client connection when the limit is
/// derived from the open-file limit: the store (SQLite's database, WAL and
/// shared-memory files for each of its nine connections; PostgreSQL's pool
/// of 16; Redis), the listeners, metrics scrapes, TLS files, the runtime.
pub const RESERVED_FILES: u64 = 128;

/// The most connections the default allows, whatever the open-file limit:
/// a container's limit is commonly 1 048 576, which would let a flood take
/// 17 GiB at 17 KiB an idle connection. 16 384 take about 270 MiB (400 MiB
/// with TLS); more need `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;

/// The connection limit in force and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionCap {
    pub max: usize,
    /// The process's open-file limit, when it could be read.
    pub file_limit: Option<u64>,
}

impl ConnectionCap {
    /// `configured`, or what the open-file limit leaves after
    /// [`RESERVED_FILES`] (half of it, when the limit is that low), at most
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn resolve(configured: Option<usize>) -> Self {
        let file_limit = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
            Ok((soft, _hard)) => Some(soft),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the open-file limit (RLIMIT_NOFILE)");
                None
            }
        };
        let room = file_limit.map(connections_within);
        let max = match (configured, room) {
            (Some(max), Some(room)) => {
                if u64::try_from(max).unwrap_or(u64::MAX) > room {
                    tracing::warn!(
                        max_connections = max,
                        file_limit = file_limit,
                        "--max-connections is above what the open-file limit leaves for \
                         connections: past {room} of them, accepts fail until files are free. \
                         Raise the limit (`ulimit -n`, systemd's LimitNOFILE=) or lower \
                         --max-connections"
                    );
                }
                max
            }
            (Some(max), None) => max,
            (None, Some(room)) => default_within(room),
            (None, None) => default_within(connections_within(1024)),
        };
        Self { max, file_limit }
    }
}

fn default_within(room: u64) -> usize {
    usize::try_from(room.min(DEFAULT_MAX_CONNECTIONS)).unwrap_or(usize::MAX)
}

/// The connections an open-file limit leaves room for.
fn connections_within(file_limit: u64) -> u64 {
    let reserved = RESERVED_FILES.min(file_limit / 2);
    file_limit.saturating_sub(reserved).max(1)
}

/// The address a connection is counted under: an IPv6 host commonly holds
/// a whole /64 network and may connect from any address in it, so IPv6
/// addresses count by their /64; IPv4 ones (mapped into IPv6 by a dual-stack
/// listener included) by themselves.
fn peer_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Counts open connections and refuses those past the limits; clones share
/// the counts.
#[derive(Debug, Clone)]
pub(super) struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    /// Zero: no limit per address.
    per_ip: usize,
    open: Mutex<Open>,
    metrics: Metrics,
    refused_at_max: LogThrottle,
    refused_per_ip: LogThrottle,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    /// Only kept with a limit per address.
    by_ip: HashMap<IpAddr, usize>,
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub(super) struct Admitted {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

impl Admission {
    pub(super) fn new(max: usize, per_ip: usize, metrics: Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                max,
                per_ip,
                open: Mutex::default(),
                metrics,
                refused_at_max: LogThrottle::default(),
                refused_per_ip: LogThrottle::default(),
            }),
        }
    }

    /// A place for a connection from `ip` (`None` when its address cannot
    /// be read: then only the overall limit applies), or `None` when it is
    /// to be closed.
    pub(super) fn admit(&self, ip: Option<IpAddr>) -> Option<Admitted> {
        let inner = &self.inner;
        let counted_ip = ip.filter(|_| inner.per_ip > 0).map(peer_of);
        let mut open = inner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= inner.max {
            drop(open);
            self.refuse(Refusal::MaxConnections, ip);
            return None;
        }
        if let Some(ip) = counted_ip {
            let from_ip = open.by_ip.entry(ip).or_default();
            if *from_ip >= inner.per_ip {
                drop(open);
                self.refuse(Refusal::MaxConnectionsPerIp, Some(ip));
                return None;
            }
            *from_ip += 1;
        }
        open.total += 1;
        drop(open);
        inner.metrics.connection_opened();
        Some(Admitted {
            inner: inner.clone(),
            ip: counted_ip,
        })
    }

    /// Counts a refusal, and logs it unless one was logged lately.
    fn refuse(&self, refusal: Refusal, ip: Option<IpAddr>) {
        let inner = &self.inner;
        inner.metrics.connection_refused(refusal);
        match refusal {
            Refusal::MaxConnections => {
                if let Some(held_back) = inner.refused_at_max.admit() {
                    tracing::warn!(
                        max_connections = inner.max,
                        refused_since_last_warning = held_back,
                        "refusing new connections: --max-connections are open (counted in \
                         sessiond_connections_refused_total; warned about once a minute)"
                    );
                }
            }
            Refusal::MaxConnectionsPerIp => {
                if let Some(held_back) = inner.refused_per_ip.admit() {
                    tracing::warn!(
                        peer = %ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                        max_connections_per_ip = inner.per_ip,
                        refused_since_last_warning = held_back,
                        "refusing new connections from an address (an IPv6 one stands for \
                         its /64) that has --max-connections-per-ip open (counted in \
                         sessiond_connections_refused_total; warned about once a minute)"
                    );
                }
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(from_ip) = open.by_ip.get_mut(&ip)
        {
            *from_ip -= 1;
            if *from_ip == 0 {
                open.by_ip.remove(&ip);
            }
        }
        drop(open);
        self.inner.metrics.connection_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn past_the_limit_a_connection_is_refused_until_one_closes() {
        let metrics = Metrics::new();
        let admission = Admission::new(2, 0, metrics.clone());
        let first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(2)).unwrap();
        assert!(admission.admit(ip(3)).is_none());
        drop(first);
        assert!(admission.admit(ip(3)).is_some());
        let text = metrics.render();
        assert!(
            text.contains("sessiond_connections_refused_total{reason=\"max_connections\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share() {
        let admission = Admission::new(10, 2, Metrics::new());
        let first = admission.admit(ip(1)).unwrap();
        let _second = admission.admit(ip(1)).unwrap();
        assert!(admission.admit(ip(1)).is_none());
        assert!(
            admission.admit(ip(2)).is_some(),
            "another address is served"
        );
        drop(first);
        assert!(
            admission.admit(ip(1)).is_some(),
            "a closed one frees a place"
        );
        assert_eq!(admission.inner.open.lock().unwrap().by_ip.len(), 1);
    }

    #[test]
    fn addresses_are_forgotten_once_their_connections_close() {
        let admission = Admission::new(10, 2, Metrics::new());
        let admitted: Vec<_> = (0..5).filter_map(|n| admission.admit(ip(n))).collect();
        assert_eq!(admission.inner.open.lock().unwrap().by_ip.len(), 5);
        drop(admitted);
        let open = admission.inner.open.lock().unwrap();
        assert_eq!((open.total, open.by_ip.len()), (0, 0));
    }

    #[test]
    fn ipv6_addresses_count_by_their_network() {
        let admission = Admission::new(10, 1, Metrics::new());
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_network: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_network: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _first = admission.admit(Some(one)).unwrap();
        assert!(admission.admit(Some(same_network)).is_none());
        assert!(admission.admit(Some(other_network)).is_some());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let _v4 = admission.admit(ip(1)).unwrap();
        assert!(
            admission.admit(Some(mapped)).is_none(),
            "the same IPv4 host"
        );
    }

    #[test]
    fn the_default_leaves_files_for_the_store() {
        assert_eq!(connections_within(65_536), 65_408);
        assert_eq!(connections_within(1_024), 896);
        assert_eq!(connections_within(100), 50);
        assert_eq!(connections_within(1), 1);
        assert_eq!(default_within(connections_within(1_024)), 896);
        assert_eq!(default_within(connections_within(1_048_576)), 16_384);
    }
}
