//! The flags of `sessiond serve`, and the [`ServerConfig`] they stand for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use sessiond_signing::DEFAULT_SALT;

use super::StoreArgs;
use super::durations::{
    parse_handshake_timeout, parse_keepalive, parse_purge_interval, parse_readiness_interval,
    parse_request_timeout, parse_shutdown_wait,
};
use crate::codec::{CodecKind, DjangoConfig};
use crate::config::{
    AuthConfig, ConnectionSettings, DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_STREAMS,
    DEFAULT_MAX_DATA_BYTES, DEFAULT_MAX_IN_FLIGHT, DEFAULT_PURGE_BATCH_SIZE, Limits, MetricsConfig,
    PurgeSettings, ServerConfig, ShutdownSettings,
};
use crate::secret::Secret;
use crate::tls::TlsFiles;

/// [`crate::config::DEFAULT_KEEPALIVE`] as the flag's default.
const DEFAULT_KEEPALIVE_TEXT: &str = "60s";
/// [`crate::config::DEFAULT_REQUEST_TIMEOUT`] as the flag's default.
const DEFAULT_REQUEST_TIMEOUT_TEXT: &str = "10s";
/// [`crate::config::DEFAULT_HANDSHAKE_TIMEOUT`] as the flag's default.
const DEFAULT_HANDSHAKE_TIMEOUT_TEXT: &str = "10s";
/// [`crate::config::DEFAULT_PURGE_INTERVAL`] as the flag's default.
const DEFAULT_PURGE_INTERVAL_TEXT: &str = "1h";
/// [`crate::config::DEFAULT_DRAIN_TIMEOUT`] as the flag's default.
const DEFAULT_DRAIN_TIMEOUT_TEXT: &str = "10s";
/// [`crate::config::DEFAULT_READINESS_INTERVAL`] as the flag's default.
const DEFAULT_READINESS_INTERVAL_TEXT: &str = "2s";

/// The flags of `sessiond serve`.
#[derive(Debug, Clone, Parser)]
#[command(name = "sessiond serve")]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address to listen on for gRPC, IP:PORT. The default is loopback only;
    /// use `0.0.0.0:50051` (or `[::]:50051`) to accept other machines, which
    /// needs bearer tokens or TLS (or --insecure-allow-unauthenticated).
    #[arg(long, env = "SESSIOND_LISTEN", default_value_t = DEFAULT_LISTEN, value_name = "ADDR")]
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
    pub token: Option<Secret>,

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
    /// (IP:PORT, e.g. 127.0.0.1:9090); off by default. Beyond loopback it
    /// needs --metrics-token (or --metrics-public).
    #[arg(long, env = "SESSIOND_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// A bearer token that Prometheus must send to read the metrics
    /// (`authorization: Bearer TOKEN`, at least 16 characters). Prefer the
    /// environment variable: command lines are visible to other users.
    #[arg(
        long,
        env = "SESSIOND_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub metrics_token: Option<Secret>,

    /// Serve metrics on a non-loopback --metrics-listen without
    /// --metrics-token: anyone who reaches the port reads the counts. Only
    /// for a monitoring network nobody else can reach.
    #[arg(long, env = "SESSIOND_METRICS_PUBLIC")]
    pub metrics_public: bool,

    /// Calls in flight at once, over all connections; past it, new calls
    /// are refused at once with RESOURCE_EXHAUSTED (retry later) instead of
    /// queueing without bound.
    #[arg(long, env = "SESSIOND_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_in_flight: u32,

    /// Calls one HTTP/2 connection may have in flight at once; a client
    /// past it waits for its own earlier calls.
    #[arg(long, env = "SESSIOND_MAX_CONCURRENT_STREAMS", default_value_t = DEFAULT_MAX_CONCURRENT_STREAMS, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub max_concurrent_streams: u32,

    /// Idle time after which a connection is pinged (an HTTP/2 PING, and TCP
    /// keepalive probes); one that does not answer within as long again
    /// (at most 20 s) is closed. 0 turns pings off.
    #[arg(long, env = "SESSIOND_KEEPALIVE", default_value = DEFAULT_KEEPALIVE_TEXT, value_parser = parse_keepalive, value_name = "DURATION")]
    pub keepalive: Duration,

    /// Time a new connection gets to open: to complete its TLS handshake
    /// (with --tls-cert) and send the HTTP/2 preface. One that stays
    /// silent, or stalls in the handshake, or completes it and then sends
    /// nothing, is closed.
    #[arg(long, env = "SESSIOND_HANDSHAKE_TIMEOUT", default_value = DEFAULT_HANDSHAKE_TIMEOUT_TEXT, value_parser = parse_handshake_timeout, value_name = "DURATION")]
    pub handshake_timeout: Duration,

    /// Connections served at once. Past it a new connection is closed as
    /// soon as it is accepted, counted in sessiond_connections_refused_total
    /// and logged at most once a minute. Default: the open-file limit
    /// (`ulimit -n`, systemd's LimitNOFILE=; serve raises its soft limit
    /// to the hard one) less 128 files kept for the store, the metrics
    /// endpoint and logs, at most 16384; printed at startup.
    #[arg(long, env = "SESSIOND_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub max_connections: Option<u64>,

    /// Connections served at once from one IP address (IPv6: one /64
    /// network), so that one client, or one attacker, cannot take them
    /// all; 0 turns the limit off. For a shared service that many clients
    /// reach directly; behind a proxy every connection has its address.
    #[arg(
        long,
        env = "SESSIOND_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_connections_per_ip: u64,

    /// How long one session call may take to produce its answer, request
    /// body included; past it the call is answered DEADLINE_EXCEEDED and its
    /// slot of --max-in-flight is free again. Keep it above --store-timeout
    /// (with --cache, above three of them: a write calls both engines).
    #[arg(long, env = "SESSIOND_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT_TEXT, value_parser = parse_request_timeout, value_name = "DURATION")]
    pub request_timeout: Duration,

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
    pub secret_key: Option<Secret>,

    /// Django's SECRET_KEY_FALLBACKS, comma-separated: older keys whose
    /// session data is still accepted (new data is signed with --secret-key).
    #[arg(
        long,
        env = "SESSIOND_SECRET_KEY_FALLBACKS",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "KEYS"
    )]
    pub secret_key_fallbacks: Vec<Secret>,

    /// The salt Django's session store signs with: "django.contrib.sessions."
    /// followed by the store's class name. Change it only if your
    /// SESSION_ENGINE's class is not called SessionStore.
    #[arg(long, env = "SESSIOND_DJANGO_SALT", default_value = DEFAULT_SALT, value_name = "SALT")]
    pub django_salt: String,

    /// Largest session data accepted, in bytes of JSON text (default 1 MiB,
    /// at most 64 MiB). Larger data is refused with INVALID_ARGUMENT, never
    /// truncated.
    #[arg(long, env = "SESSIOND_MAX_DATA_BYTES", default_value_t = DEFAULT_MAX_DATA_BYTES, value_parser = clap::value_parser!(u64).range(2..=(64 << 20)), value_name = "BYTES")]
    pub max_data_bytes: u64,

    /// How often the server removes expired sessions by itself; 0 disables
    /// the background purge (then run `sessiond clearsessions` from cron).
    #[arg(long, env = "SESSIOND_PURGE_INTERVAL", default_value = DEFAULT_PURGE_INTERVAL_TEXT, value_parser = parse_purge_interval, value_name = "DURATION")]
    pub purge_interval: Duration,

    /// Expired rows deleted per transaction by the background purge and
    /// ClearExpired. After a batch during which the server admitted other
    /// calls, the purge pauses ten times as long as the batch took (one
    /// second at most), so that a large purge does not slow them; on an idle
    /// server the batches follow each other at once.
    #[arg(long, env = "SESSIOND_PURGE_BATCH_SIZE", default_value_t = DEFAULT_PURGE_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "ROWS")]
    pub purge_batch_size: u64,

    /// Threads that serve connections. Each runs a runtime of its own, and a
    /// connection, with every call on it, stays on the thread that accepted
    /// it; as many threads again run background work (the purge, metrics,
    /// the engines' own tasks), and SQLite's writer and blocking reads have
    /// threads of their own. Default: one per CPU core. On a machine shared
    /// with the app, as a sidecar, 1 or 2 leave the app its cores.
    #[arg(long, env = "SESSIOND_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024), value_name = "N")]
    pub threads: Option<u16>,

    /// On SIGTERM/SIGINT, how long to report NOT_SERVING on the health
    /// service while still answering, so load balancers stop sending traffic
    /// before the listener closes. In-flight calls are always drained.
    #[arg(long, env = "SESSIOND_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_shutdown_wait, value_name = "DURATION")]
    pub shutdown_delay: Duration,

    /// On shutdown, how long to wait for in-flight calls to finish before
    /// closing the remaining connections anyway.
    #[arg(long, env = "SESSIOND_DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT_TEXT, value_parser = parse_shutdown_wait, value_name = "DURATION")]
    pub drain_timeout: Duration,

    /// How often the store is pinged (SELECT 1, PING; within
    /// --store-timeout and this interval) to report readiness: the gRPC
    /// health service reports sessiond.v1.SessionService NOT_SERVING while
    /// the store does not answer and SERVING again once it does, while the
    /// overall status ("") stays SERVING until shutdown. With --cache, only
    /// the database counts (the cache is pinged and logged). 0 turns the
    /// probe off: the service then stays SERVING.
    #[arg(long, env = "SESSIOND_READINESS_INTERVAL", default_value = DEFAULT_READINESS_INTERVAL_TEXT, value_parser = parse_readiness_interval, value_name = "DURATION")]
    pub readiness_interval: Duration,
}

impl ServeArgs {
    /// The server configuration these flags stand for.
    pub fn into_config(self) -> ServerConfig {
        ServerConfig {
            store: self.store.into_config(),
            listen: self.listen,
            auth: AuthConfig {
                tokens_file: self.tokens_file,
                token: self.token,
            },
            tls: TlsFiles {
                cert: self.tls_cert,
                key: self.tls_key,
                client_ca: self.tls_client_ca,
            },
            insecure_allow_unauthenticated: self.insecure_allow_unauthenticated,
            metrics: MetricsConfig {
                listen: self.metrics_listen,
                token: self.metrics_token,
                public: self.metrics_public,
            },
            limits: Limits {
                max_in_flight: self.max_in_flight,
                max_concurrent_streams: self.max_concurrent_streams,
                max_message_bytes: self.max_message_bytes,
                max_data_bytes: self.max_data_bytes,
                request_timeout: self.request_timeout,
            },
            connections: ConnectionSettings {
                keepalive: self.keepalive,
                handshake_timeout: self.handshake_timeout,
                max_connections: self
                    .max_connections
                    .map(|max| usize::try_from(max).unwrap_or(usize::MAX)),
                max_connections_per_ip: usize::try_from(self.max_connections_per_ip)
                    .unwrap_or(usize::MAX),
            },
            codec: self.codec,
            django: DjangoConfig {
                secret_key: self.secret_key,
                fallback_keys: self.secret_key_fallbacks,
                salt: self.django_salt,
            },
            purge: PurgeSettings {
                interval: self.purge_interval,
                batch_size: self.purge_batch_size,
            },
            shutdown: ShutdownSettings {
                delay: self.shutdown_delay,
                drain_timeout: self.drain_timeout,
            },
            readiness_interval: self.readiness_interval,
            threads: self
                .threads
                .and_then(|threads| std::num::NonZeroUsize::new(usize::from(threads))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_mean_the_default_configuration() {
        let parsed = ServeArgs::try_parse_from(["serve"]).unwrap().into_config();
        // Every field, through Debug: the defaults are written twice, as
        // values and as the flags' default texts, and must agree.
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ServerConfig::default())
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let args = ServeArgs::try_parse_from([
            "serve",
            "--token",
            "token-token-token-1",
            "--secret-key",
            "django-secret-key",
            "--secret-key-fallbacks",
            "old-1,old-2",
        ])
        .unwrap();
        let shown = format!("{args:?}");
        for secret in ["token-token-token-1", "django-secret-key", "old-1", "old-2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let config = args.into_config();
        assert_eq!(config.django.fallback_keys.len(), 2);
        assert_eq!(config.auth.token.unwrap().expose(), "token-token-token-1");
    }
}
