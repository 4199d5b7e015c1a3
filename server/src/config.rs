//! Command-line and environment configuration. Every flag has a `SESSIOND_*`
//! environment twin; values are parsed into typed settings at start-up, so a
//! bad value fails before anything is opened or bound, naming the flag.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::codec::{CodecKind, DjangoConfig};
use crate::store::{StoreOptions, StoreUrl};

/// The embedded default: an SQLite file in the working directory, so that a
/// first `sessiond serve` needs nothing installed or configured.
pub const DEFAULT_STORE: &str = "sqlite://sessiond.sqlite3";

/// Loopback only: a session store holds every user's login and must not be
/// reachable from the network unless the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Django's `SESSION_COOKIE_AGE`: two weeks, in seconds.
pub const DEFAULT_SESSION_AGE: &str = "1209600";

/// 1 MiB: far above what a session should hold (Django's cookie-based
/// sessions stop at 4 KiB), low enough that one client cannot fill memory.
pub const DEFAULT_MAX_DATA_BYTES: &str = "1048576";

/// Hourly: expired rows are invisible to loads anyway, so the purge only
/// bounds table growth and need not be frequent.
pub const DEFAULT_PURGE_INTERVAL: &str = "1h";

/// Rows deleted per transaction when clearing expired sessions: small enough
/// that a write lock is held for milliseconds, so loads and saves interleave.
pub const DEFAULT_PURGE_BATCH_SIZE: &str = "1000";

/// Long enough for any call to finish (calls wait at most --store-timeout
/// for a lock), short enough that a restart is not held up by a stuck client.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "10s";

/// The salt of every built-in Django session store (their classes are all
/// named SessionStore).
pub const DEFAULT_DJANGO_SALT: &str = "django.contrib.sessions.SessionStore";

/// Calls in flight past which new ones are refused with RESOURCE_EXHAUSTED
/// rather than queued: a call takes well under a millisecond, so a healthy
/// server is far below this; with sessions of a few KiB the calls it admits
/// fit in a few MiB (at most this times --max-message-bytes).
pub const DEFAULT_MAX_IN_FLIGHT: &str = "1024";

/// Streams one HTTP/2 connection may have open at once (its
/// SETTINGS_MAX_CONCURRENT_STREAMS): a client past it waits for one of its
/// own calls to finish, so that one connection cannot take every slot of
/// --max-in-flight.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: &str = "256";

/// Idle time after which a connection is pinged. An app's connection is
/// long-lived and mostly busy, so a ping a minute costs nothing, while a
/// peer that vanished (a crashed host, a dropped NAT entry) or a client that
/// stopped mid-frame gives its connection back within two minutes instead
/// of holding it for good.
pub const DEFAULT_KEEPALIVE: &str = "60s";

/// Time a new connection gets to send its first bytes (the HTTP/2 preface
/// or a TLS hello), which any client does at once; a socket that stays
/// silent is closed rather than held.
pub const DEFAULT_HANDSHAKE_TIMEOUT: &str = "10s";

/// How long one engine operation may wait for a lock held by another process
/// (SQLite's busy timeout) or for Redis to answer before it fails with
/// UNAVAILABLE: long enough for a busy disk or a Redis failover, short enough
/// that callers get an answer while the user is still waiting.
pub const DEFAULT_STORE_TIMEOUT: &str = "5s";

/// sessiond: a session store server. Serves Django's `django_session` table
/// over gRPC (sessiond.v1.SessionService) to web apps in any language.
#[derive(Debug, Parser)]
#[command(name = "sessiond", version, about, long_about = None)]
#[command(
    after_help = "Logging: RUST_LOG filters log lines (default \"info\"), e.g. RUST_LOG=sessiond=debug.\n\
Durations accept seconds (\"3600\") or units (\"90s\", \"15m\", \"1h\", \"2weeks\")."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format: human-readable text, or one JSON object per line for
    /// log collectors.
    #[arg(long, global = true, env = "SESSIOND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (applies pending migrations first).
    Serve(Box<ServeConfig>),
    /// Create or upgrade the session table, then exit.
    Migrate(StoreConfig),
    /// Remove expired sessions once and print how many (like Django's
    /// `manage.py clearsessions`), then exit.
    Clearsessions(ClearConfig),
    /// Ask a running sessiond's gRPC health service whether it is serving;
    /// exits 0 if so, 1 if not (for container health checks).
    Healthcheck(HealthcheckConfig),
}

/// Settings of `sessiond healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckConfig {
    /// The address sessiond listens on, as given to `serve` (the same
    /// variable works for both); an unspecified address (`0.0.0.0`, `[::]`) is
    /// reached on loopback.
    #[arg(long, env = "SESSIOND_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// Connect with TLS, trusting this CA certificate (PEM), when the
    /// server runs with --tls-cert.
    #[arg(long, env = "SESSIOND_HEALTHCHECK_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// With --tls-ca: the name the server's certificate must carry.
    #[arg(
        long,
        env = "SESSIOND_HEALTHCHECK_TLS_NAME",
        default_value = "localhost",
        value_name = "NAME"
    )]
    pub tls_name: String,

    /// How long to wait for the answer.
    #[arg(long, env = "SESSIOND_HEALTHCHECK_TIMEOUT", default_value = "3s", value_parser = parse_store_timeout, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where sessions are stored.
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Storage engine URL. `sqlite://PATH` is an SQLite file, created if
    /// missing (relative to the working directory; `sqlite:///abs/path` for an
    /// absolute path). An acknowledged write survives a crash of sessiond;
    /// a power loss or OS crash can lose the writes of about the last 50 ms
    /// (never the database) unless `?synchronous=full` (default `normal`)
    /// syncs every commit, one fsync per batch of writes. `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (with an
    /// optional `?schema=NAME`) is a PostgreSQL database that many sessiond
    /// replicas may share.
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX]` is a Redis
    /// server that several sessiond replicas can share; sessions expire there
    /// by themselves (default prefix `sessiond:session:`). `file:///DIR`
    /// keeps one file per session in an existing directory, as Django's file
    /// engine does; `?prefix=NAME` is Django's SESSION_COOKIE_NAME (default
    /// sessionid) and `?cookie_age=SECONDS` its SESSION_COOKIE_AGE (default
    /// 1209600). `memory://[?max_sessions=N]` keeps sessions inside this
    /// process, lost on restart: for tests and development (default 100000
    /// sessions). A Django app may share the SQL table or the directory.
    #[arg(long, env = "SESSIOND_STORE", default_value = DEFAULT_STORE, value_name = "URL")]
    pub store: StoreUrl,

    /// A cache in front of the --store database (Django's cached_db):
    /// `redis://…` or `memory://`. Loads read it first; writes go to the
    /// database, then the cache; when the cache fails, the database answers.
    #[arg(long, env = "SESSIOND_CACHE", value_name = "URL")]
    pub cache: Option<StoreUrl>,

    /// How long one storage operation may wait for a lock held by another
    /// process (e.g. a Django app writing the same SQLite file), or for Redis
    /// to connect and answer, before it fails with UNAVAILABLE.
    #[arg(long, env = "SESSIOND_STORE_TIMEOUT", default_value = DEFAULT_STORE_TIMEOUT, value_parser = parse_store_timeout, value_name = "DURATION")]
    pub store_timeout: Duration,
}

impl ServeConfig {
    /// The TLS files from the flags.
    pub fn tls_files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            client_ca: self.tls_client_ca.clone(),
        }
    }

    /// Largest request accepted: --max-message-bytes, or room for the
    /// largest data plus the rest of a request.
    pub fn max_message_bytes(&self) -> u64 {
        self.max_message_bytes
            .unwrap_or_else(|| self.max_data_bytes.saturating_add(MESSAGE_OVERHEAD_BYTES))
    }

    /// Django's signing settings from the flags.
    pub fn django(&self) -> DjangoConfig {
        DjangoConfig {
            secret_key: self.secret_key.clone(),
            fallback_keys: self.secret_key_fallbacks.clone(),
            salt: self.django_salt.clone(),
        }
    }
}

impl StoreConfig {
    /// Opens the configured engine (and cache). Does not migrate.
    pub async fn open(
        &self,
    ) -> Result<std::sync::Arc<dyn crate::store::SessionStore>, crate::store::OpenError> {
        crate::store::open_cached(&self.store, self.cache.as_ref(), &self.options()).await
    }

    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            timeout: self.store_timeout,
        }
    }
}

/// Settings of `sessiond clearsessions`.
#[derive(Debug, Clone, Args)]
pub struct ClearConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    /// Expired rows deleted per transaction.
    #[arg(long, env = "SESSIOND_PURGE_BATCH_SIZE", default_value = DEFAULT_PURGE_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "ROWS")]
    pub purge_batch_size: u64,
}

/// Settings of `sessiond serve`.
#[derive(Debug, Clone, Parser)]
#[command(name = "sessiond serve")]
pub struct ServeConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    /// Address to listen on for gRPC, IP:PORT. The default is loopback only;
    /// use `0.0.0.0:50051` (or `[::]:50051`) to accept other machines, which
    /// needs bearer tokens or TLS (or --insecure-allow-unauthenticated).
    #[arg(long, env = "SESSIOND_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,

    /// A file of bearer tokens that clients must send
    /// (`authorization: Bearer TOKEN`): one per line, optionally after a
    /// name and a space (`frontend 5c1e…`), at least 16 characters; blank
    /// lines and lines starting with # are skipped. Reread on SIGHUP. The
    /// health service stays open.
    #[arg(long, env = "SESSIOND_TOKENS_FILE", value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,

    /// A single bearer token that clients must send, besides those of
    /// --tokens-file. Prefer the environment variable: command lines are
    /// visible to other users.
    #[arg(
        long,
        env = "SESSIOND_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// The server's TLS certificate (PEM, with its chain); with --tls-key,
    /// the gRPC port speaks TLS only.
    #[arg(long, env = "SESSIOND_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SESSIOND_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    /// Needs --tls-cert and --tls-key.
    #[arg(long, env = "SESSIOND_TLS_CLIENT_CA", value_name = "PATH")]
    pub tls_client_ca: Option<PathBuf>,

    /// Listen on a non-loopback address without bearer tokens or TLS.
    /// Anyone who can reach the port can then create, read (given a key)
    /// and delete sessions: only for a network nobody else can reach.
    #[arg(long, env = "SESSIOND_INSECURE_ALLOW_UNAUTHENTICATED")]
    pub insecure_allow_unauthenticated: bool,

    /// Serve Prometheus metrics over HTTP at /metrics on this address
    /// (IP:PORT, e.g. 127.0.0.1:9090); off by default.
    #[arg(long, env = "SESSIOND_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Calls in flight at once, over all connections; past it, new calls
    /// are refused at once with RESOURCE_EXHAUSTED (retry later) instead of
    /// queueing without bound.
    #[arg(long, env = "SESSIOND_MAX_IN_FLIGHT", default_value = DEFAULT_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_in_flight: u32,

    /// Calls one HTTP/2 connection may have in flight at once; a client
    /// past it waits for its own earlier calls.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_STREAMS", default_value = DEFAULT_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_concurrent_streams: u32,

    /// Idle time after which a connection is pinged (an HTTP/2 PING, and TCP
    /// keepalive probes); one that does not answer within as long again
    /// (at most 20 s) is closed. 0 turns pings off.
    #[arg(long, env = "SESSIOND_KEEPALIVE", default_value = DEFAULT_KEEPALIVE, value_parser = parse_keepalive, value_name = "DURATION")]
    pub keepalive: Duration,

    /// Time a new connection gets to send its first bytes (the HTTP/2
    /// preface, or a TLS hello); one that stays silent is closed.
    #[arg(long, env = "SESSIOND_HANDSHAKE_TIMEOUT", default_value = DEFAULT_HANDSHAKE_TIMEOUT, value_parser = parse_handshake_timeout, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// Largest gRPC request accepted, in bytes (default: --max-data-bytes
    /// plus 64 KiB for the rest of the request). A larger one is refused
    /// with OUT_OF_RANGE without being read.
    #[arg(long, env = "SESSIOND_MAX_MESSAGE_BYTES", value_parser = clap::value_parser!(u64).range(64..=(128 << 20)), value_name = "BYTES")]
    pub max_message_bytes: Option<u64>,

    /// Encoding of the stored session_data column.
    #[arg(long, env = "SESSIOND_CODEC", value_enum, default_value_t = CodecKind::Json)]
    pub codec: CodecKind,

    /// Django's SECRET_KEY, for --codec django. Prefer the environment
    /// variable: command lines are visible to other users.
    #[arg(
        long,
        env = "SESSIOND_SECRET_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub secret_key: Option<String>,

    /// Django's SECRET_KEY_FALLBACKS, comma-separated: older keys whose
    /// session data is still accepted (new data is signed with --secret-key).
    #[arg(
        long,
        env = "SESSIOND_SECRET_KEY_FALLBACKS",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "KEYS"
    )]
    pub secret_key_fallbacks: Vec<String>,

    /// The salt Django's session store signs with: "django.contrib.sessions."
    /// followed by the store's class name. Change it only if your
    /// SESSION_ENGINE's class is not called SessionStore.
    #[arg(long, env = "SESSIOND_DJANGO_SALT", default_value = DEFAULT_DJANGO_SALT, value_name = "SALT")]
    pub django_salt: String,

    /// Session lifetime used when a request carries no expire_date (Django's
    /// SESSION_COOKIE_AGE; default two weeks).
    #[arg(long, env = "SESSIOND_SESSION_AGE", default_value = DEFAULT_SESSION_AGE, value_parser = parse_session_age, value_name = "DURATION")]
    pub session_age: Duration,

    /// Largest session data accepted, in bytes of JSON text (default 1 MiB,
    /// at most 64 MiB). Larger data is refused with INVALID_ARGUMENT, never
    /// truncated.
    #[arg(long, env = "SESSIOND_MAX_DATA_BYTES", default_value = DEFAULT_MAX_DATA_BYTES, value_parser = clap::value_parser!(u64).range(2..=(64 << 20)), value_name = "BYTES")]
    pub max_data_bytes: u64,

    /// How often the server removes expired sessions by itself; 0 disables
    /// the background purge (then run `sessiond clearsessions` from cron).
    #[arg(long, env = "SESSIOND_PURGE_INTERVAL", default_value = DEFAULT_PURGE_INTERVAL, value_parser = parse_purge_interval, value_name = "DURATION")]
    pub purge_interval: Duration,

    /// Expired rows deleted per transaction by the purge and ClearExpired.
    #[arg(long, env = "SESSIOND_PURGE_BATCH_SIZE", default_value = DEFAULT_PURGE_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "ROWS")]
    pub purge_batch_size: u64,

    /// Threads that serve calls (the async runtime's workers; SQLite's writer
    /// and blocking work have threads of their own). Default: one per CPU
    /// core. On a machine shared with the app, as a sidecar, 1 or 2 leave
    /// the app its cores and spend less time waking each other.
    #[arg(long, env = "SESSIOND_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024), value_name = "N")]
    pub threads: Option<u16>,

    /// On SIGTERM/SIGINT, how long to report NOT_SERVING on the health
    /// service while still answering, so load balancers stop sending traffic
    /// before the listener closes. In-flight calls are always drained.
    #[arg(long, env = "SESSIOND_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_shutdown_wait, value_name = "DURATION")]
    pub shutdown_delay: Duration,

    /// On shutdown, how long to wait for in-flight calls to finish before
    /// closing the remaining connections anyway.
    #[arg(long, env = "SESSIOND_DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_shutdown_wait, value_name = "DURATION")]
    pub drain_timeout: Duration,
}

/// Room above `--max-data-bytes` for the rest of a request (key, expiry,
/// framing), so that oversized data is refused with a message naming the
/// `data` field rather than a bare transport error.
pub const MESSAGE_OVERHEAD_BYTES: u64 = 64 * 1024;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Parses `3600` (seconds) or a duration with units, refusing values past
/// `max` (which would overflow timers or make no sense for the flag).
fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > max {
        return Err(format!("at most {}", humantime::format_duration(max)));
    }
    Ok(duration)
}

fn parse_keepalive(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(DAY))
}

fn parse_handshake_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_bounded(text, Duration::from_secs(HOUR))?;
    if timeout.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(timeout)
}

fn parse_store_timeout(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(HOUR))
}

/// A session lifetime; up to 100 years, so that now plus it stays a date
/// every engine can store.
fn parse_session_age(text: &str) -> Result<Duration, String> {
    let age = parse_bounded(text, Duration::from_secs(36_500 * DAY))?;
    if age.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(age)
}

fn parse_purge_interval(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(30 * DAY))
}

fn parse_shutdown_wait(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(HOUR))
}

/// Parses `3600` (seconds) or a duration with units (`90s`, `1h 30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("{err}; expected seconds (e.g. 3600) or a duration such as 90s, 15m, 1h")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_session_age("0").is_err());
        assert!(parse_session_age("20000years").is_err());
        assert!(parse_store_timeout("3000000s").is_err());
        assert!(parse_shutdown_wait("18446744073709551615").is_err());
        assert!(parse_purge_interval("18446744073709551615").is_err());
        assert_eq!(parse_keepalive("0").unwrap(), Duration::ZERO);
        assert!(parse_keepalive("2days").is_err());
        assert!(parse_handshake_timeout("0").is_err());
        assert!(parse_handshake_timeout("2h").is_err());
        assert_eq!(
            parse_store_timeout("1h").unwrap(),
            Duration::from_secs(3600)
        );
        assert!(parse_duration("-5").is_err());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let config = ServeConfig::try_parse_from(["serve"]).unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.store.store, DEFAULT_STORE.parse().unwrap());
        assert_eq!(config.session_age, Duration::from_secs(1_209_600));
        assert_eq!(config.max_data_bytes, 1 << 20);
        assert_eq!(config.purge_interval, Duration::from_secs(3600));
        assert_eq!(config.keepalive, Duration::from_secs(60));
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
