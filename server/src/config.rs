//! [`ServerConfig`]: everything a server needs, as plain values with
//! sessiond's defaults. The command line (`cli`) fills one in; a program
//! that embeds sessiond builds one itself.

use std::net::SocketAddr;
use std::time::Duration;

use crate::codec::{CodecKind, DjangoConfig};
use crate::secret::Secret;
use crate::store::{DEFAULT_ROW_CACHE_MIB, SqliteUrl, StoreConfig, StoreUrl, Synchronous};
use crate::tls::TlsFiles;

pub use crate::store::{DEFAULT_SESSION_AGE, DEFAULT_STORE_TIMEOUT};

/// The embedded default: an SQLite file in the working directory, so that a
/// first `sessiond serve` needs nothing installed or configured.
pub const DEFAULT_STORE: &str = "sqlite://sessiond.sqlite3";

/// Loopback only: a session store holds every user's login and must not be
/// reachable from the network unless the operator says so.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    50051,
));

/// 1 MiB: far above what a session should hold (Django's cookie-based
/// sessions stop at 4 KiB), low enough that one client cannot fill memory.
pub const DEFAULT_MAX_DATA_BYTES: u64 = 1 << 20;

/// Hourly: expired rows are invisible to loads anyway, so the purge only
/// bounds table growth and need not be frequent.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Rows deleted per transaction when clearing expired sessions: small enough
/// that a write lock is held for milliseconds, so loads and saves interleave.
pub const DEFAULT_PURGE_BATCH_SIZE: u64 = 1000;

/// Long enough for any call to finish (calls wait at most --store-timeout
/// for a lock), short enough that a restart is not held up by a stuck client.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the store is pinged for readiness: a load balancer that polls
/// every few seconds sees an outage within one of its own periods, and a
/// ping every 2 s is nothing next to the calls a store serves.
pub const DEFAULT_READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Calls in flight past which new ones are refused with RESOURCE_EXHAUSTED
/// rather than queued: a call takes well under a millisecond, so a healthy
/// server is far below this; with sessions of a few KiB the calls it admits
/// fit in a few MiB (at most this times --max-message-bytes).
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;

/// Streams one HTTP/2 connection may have open at once (its
/// SETTINGS_MAX_CONCURRENT_STREAMS): a client past it waits for one of its
/// own calls to finish, so that one connection cannot take every slot of
/// --max-in-flight.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;

/// How long a session call may take to produce its answer: longer than
/// the store timeout, so that a call waiting on the store answers with the
/// store's own UNAVAILABLE first, yet short enough that a client that never
/// finishes sending its request gives its slot of --max-in-flight back.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time after which a connection is pinged. An app's connection is
/// long-lived and mostly busy, so a ping a minute costs nothing, while a
/// peer that vanished (a crashed host, a dropped NAT entry) or a client that
/// stopped mid-frame gives its connection back within two minutes instead
/// of holding it for good.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);

/// Time a new connection gets to open: complete its TLS handshake, if any,
/// and send the HTTP/2 preface, which any client does at once; one that
/// stays silent, or stalls, is closed rather than held.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Room above the data limit for the rest of a request (key, expiry,
/// framing), so that oversized data is refused with a message naming the
/// `data` field rather than a bare transport error.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 64 * 1024;

/// Everything a server needs. `Default` is what `sessiond serve` runs with
/// when given no flags; `Debug` shows no token or secret key.
///
/// Each field documents the flag it comes from; `sessiond serve --help`
/// says more.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `--store`, `--cache`, `--store-timeout`, `--session-age`.
    pub store: StoreConfig,
    /// `--listen`: checked against the authentication settings, since
    /// serving beyond loopback needs tokens or client certificates.
    pub listen: SocketAddr,
    /// `--tokens-file`, `--token`.
    pub auth: AuthConfig,
    /// `--tls-cert`, `--tls-key`, `--tls-client-ca`.
    pub tls: TlsFiles,
    /// `--insecure-allow-unauthenticated`.
    pub insecure_allow_unauthenticated: bool,
    /// `--metrics-listen`, `--metrics-token`, `--metrics-public`.
    pub metrics: MetricsConfig,
    /// `--max-in-flight`, `--max-concurrent-streams`, `--max-message-bytes`,
    /// `--max-data-bytes`, `--request-timeout`.
    pub limits: Limits,
    /// `--keepalive`, `--handshake-timeout`.
    pub connections: ConnectionSettings,
    /// `--codec`.
    pub codec: CodecKind,
    /// `--secret-key`, `--secret-key-fallbacks`, `--django-salt`.
    pub django: DjangoConfig,
    /// `--purge-interval` (zero turns the background purge off),
    /// `--purge-batch-size`.
    pub purge: PurgeSettings,
    /// `--shutdown-delay`, `--drain-timeout`.
    pub shutdown: ShutdownSettings,
    /// `--readiness-interval`: how often the store is pinged to report the
    /// session service's health; zero turns the probe off (the service
    /// then stays SERVING).
    pub readiness_interval: Duration,
    /// `--threads`: how many threads serve connections, each with a
    /// runtime of its own; `None`: one per CPU core.
    pub threads: Option<std::num::NonZeroUsize>,
}

/// Who may call: bearer tokens from a file and one more from the
/// environment. None configured means calls are not checked.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub tokens_file: Option<std::path::PathBuf>,
    pub token: Option<Secret>,
}

/// Where Prometheus metrics are served, and to whom. They hold counts,
/// never keys or data, but tell an outsider how busy the service is.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `None`: not served.
    pub listen: Option<SocketAddr>,
    /// Scrapers must send `authorization: Bearer TOKEN`.
    pub token: Option<Secret>,
    /// Serve a non-loopback address without a token.
    pub public: bool,
}

/// How much one call, one connection and the whole server take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: u32,
    pub max_concurrent_streams: u32,
    /// `None`: `max_data_bytes` plus [`MESSAGE_OVERHEAD_BYTES`].
    pub max_message_bytes: Option<u64>,
    pub max_data_bytes: u64,
    /// How long one session call may take to produce its answer.
    pub request_timeout: Duration,
}

/// How connections are watched, and how many are served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    /// Zero turns pings off.
    pub keepalive: Duration,
    pub handshake_timeout: Duration,
    /// Connections open at once; past it a new one is closed as soon as it
    /// is accepted. `None`: what the open-file limit leaves after the
    /// files the server and its store need, at most 16 384 (see
    /// `ConnectionCap::resolve` in `server/admission.rs`).
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP address; zero: no such limit.
    pub max_connections_per_ip: usize,
}

/// The background purge of expired sessions.
#[derive(Debug, Clone, Copy)]
pub struct PurgeSettings {
    /// Zero turns it off.
    pub interval: Duration,
    pub batch_size: u64,
}

/// How the server stops.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownSettings {
    /// How long NOT_SERVING is reported before the listener closes.
    pub delay: Duration,
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            listen: DEFAULT_LISTEN,
            auth: AuthConfig::default(),
            tls: TlsFiles::default(),
            insecure_allow_unauthenticated: false,
            metrics: MetricsConfig::default(),
            limits: Limits::default(),
            connections: ConnectionSettings::default(),
            codec: CodecKind::default(),
            django: DjangoConfig::default(),
            purge: PurgeSettings::default(),
            shutdown: ShutdownSettings::default(),
            readiness_interval: DEFAULT_READINESS_INTERVAL,
            threads: None,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self::new(default_store())
    }
}

/// [`DEFAULT_STORE`], parsed.
fn default_store() -> StoreUrl {
    StoreUrl::Sqlite(SqliteUrl {
        path: "sessiond.sqlite3".into(),
        synchronous: Synchronous::default(),
        row_cache_mib: DEFAULT_ROW_CACHE_MIB,
    })
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_message_bytes: None,
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl Limits {
    /// Largest request accepted: `max_message_bytes`, or room for the
    /// largest data plus the rest of a request.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
            .unwrap_or_else(|| self.max_data_bytes.saturating_add(MESSAGE_OVERHEAD_BYTES))
    }
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            keepalive: DEFAULT_KEEPALIVE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: None,
            max_connections_per_ip: 0,
        }
    }
}

impl Default for PurgeSettings {
    fn default() -> Self {
        Self {
            interval: DEFAULT_PURGE_INTERVAL,
            batch_size: DEFAULT_PURGE_BATCH_SIZE,
        }
    }
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_parses() {
        assert_eq!(default_store().to_string(), DEFAULT_STORE);
    }

    #[test]
    fn debug_shows_no_secret() {
        let config = ServerConfig {
            auth: AuthConfig {
                tokens_file: None,
                token: Some("token-token-token-1".into()),
            },
            django: DjangoConfig {
                secret_key: Some("django-secret-key".into()),
                fallback_keys: vec!["old-django-secret".into()],
                ..DjangoConfig::default()
            },
            ..ServerConfig::default()
        };
        let shown = format!("{config:?}");
        for secret in [
            "token-token-token-1",
            "django-secret-key",
            "old-django-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
