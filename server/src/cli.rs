//! The command line: subcommands and flags, each flag with a `SESSIOND_*`
//! environment twin whose doc comment is its `--help` text. Values are
//! parsed into typed settings here, so a bad value fails before anything
//! is opened or bound, naming the flag; then they become the library's plain
//! configurations ([`ServerConfig`](crate::ServerConfig),
//! [`StoreConfig`]).

mod backup;
mod durations;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::ffi::OsStr;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{DEFAULT_LISTEN, DEFAULT_PURGE_BATCH_SIZE, DEFAULT_STORE};
use crate::error::ErrorChain;
use crate::healthcheck::{ClientCertificate, HealthcheckConfig};
use crate::store::{StoreConfig, StoreOptions, StoreUrl};
pub use backup::BackupArgs;
use durations::{parse_session_age, parse_store_timeout};
pub use serve::ServeArgs;

/// [`crate::config::DEFAULT_STORE_TIMEOUT`] as the flag's default.
const DEFAULT_STORE_TIMEOUT_TEXT: &str = "5s";
/// [`crate::config::DEFAULT_SESSION_AGE`] as the flag's default, in seconds
/// as Django's `SESSION_COOKIE_AGE` is written.
const DEFAULT_SESSION_AGE_TEXT: &str = "1209600";

/// How long `sessiond healthcheck` waits for the answer by default.
const DEFAULT_HEALTHCHECK_TIMEOUT_TEXT: &str = "3s";

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
    Serve(Box<ServeArgs>),
    /// Create or upgrade the session table, then exit: run it before
    /// deploying a new release (a pre-deploy job, an initContainer), so
    /// that no replica migrates while serving. Exits 1, with the reason, if
    /// the schema cannot be migrated or is newer than this sessiond can
    /// serve.
    ///
    /// Every migration keeps the previous release working (expand, then
    /// contract, one release later), so rolling the binary back needs no
    /// schema rollback; a migration that cannot declares itself not
    /// backward compatible, and an older sessiond then refuses the schema.
    Migrate(MigrateArgs),
    /// Remove expired sessions once and print how many (like Django's
    /// `manage.py clearsessions`), then exit.
    Clearsessions(ClearArgs),
    /// Copy an SQLite store to the file DEST while sessiond serves it, then
    /// exit.
    ///
    /// The copy is one consistent snapshot, taken with SQLite's online
    /// backup API: it holds every write acknowledged before the backup
    /// began, and writes go on meanwhile. It is written to DEST.partial-PID
    /// beside DEST, readable by its owner only (mode 0600), checked with
    /// SQLite's integrity check and only then renamed to DEST, so a backup
    /// cut short never looks complete. Long backups log their progress every
    /// second; the last line (on stdout) gives the sessions, bytes and
    /// seconds. A cache (--cache) is not copied: it fills again from the
    /// database.
    #[command(after_help = backup::RESTORE_HELP)]
    Backup(BackupArgs),
    /// Ask a running sessiond's gRPC health service whether it is serving
    /// (as a whole, or --service); exits 0 if so, 1 if not or if it cannot
    /// be asked, 2 on bad flags (for container health checks and probes).
    Healthcheck(HealthcheckArgs),
}

/// The flags of `sessiond healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The address sessiond listens on, as given to `serve` (the same
    /// variable works for both); an unspecified address (`0.0.0.0`, `[::]`) is
    /// reached on loopback.
    #[arg(long, env = "SESSIOND_LISTEN", default_value_t = DEFAULT_LISTEN, value_name = "ADDR")]
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

    /// With --tls-ca: present this client certificate (PEM), when the
    /// server requires one (--tls-client-ca, mutual TLS). Needs --tls-key.
    #[arg(
        long,
        env = "SESSIOND_HEALTHCHECK_TLS_CERT",
        requires_all = ["tls_key", "tls_ca"],
        value_name = "PATH"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "SESSIOND_HEALTHCHECK_TLS_KEY",
        requires = "tls_cert",
        value_name = "PATH"
    )]
    pub tls_key: Option<PathBuf>,

    /// The service to ask about. "" (the default) is the server as a whole:
    /// SERVING from start until shutdown, for liveness.
    /// `sessiond.v1.SessionService` is SERVING only while the store answers
    /// sessiond's readiness probe (see `serve --readiness-interval`), for
    /// readiness.
    #[arg(
        long,
        env = "SESSIOND_HEALTHCHECK_SERVICE",
        default_value = "",
        hide_default_value = true,
        value_name = "NAME"
    )]
    pub service: String,

    /// How long to wait for the answer.
    #[arg(long, env = "SESSIOND_HEALTHCHECK_TIMEOUT", default_value = DEFAULT_HEALTHCHECK_TIMEOUT_TEXT, value_parser = parse_store_timeout, value_name = "DURATION")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where sessions are stored: the flags every subcommand that opens the
/// store takes.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Storage engine URL. `sqlite://PATH` is an SQLite file, created if
    /// missing (relative to the working directory; `sqlite:///abs/path` for an
    /// absolute path). An acknowledged write survives a crash of sessiond;
    /// a power loss or OS crash can lose the writes of about the last 50 ms
    /// (never the database) unless `?synchronous=full` (default `normal`)
    /// syncs every commit, one fsync per batch of writes; `row_cache_mib=N`
    /// (default 64, 0 for none) is the memory for copies of sessions that
    /// answer Loads without reading the file. `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (with an
    /// optional `?schema=NAME`) is a PostgreSQL database that many sessiond
    /// replicas may share; `pool_size=N` (1 to 1024, default 16) is the
    /// most connections each replica opens. TLS takes libpq's options: `sslmode=disable`,
    /// `prefer` (default: TLS if the server offers it), `require` (TLS, the
    /// certificate unchecked unless `sslrootcert` is given), `verify-ca`
    /// (signed by `sslrootcert`) or `verify-full` (and naming the host);
    /// `sslrootcert=FILE` or `system` (the OS trust store, verify-full
    /// only); `sslcert`/`sslkey` for a client certificate; PGSSLMODE,
    /// PGSSLROOTCERT, PGSSLCERT and PGSSLKEY apply where the URL says
    /// nothing.
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX]` is a Redis
    /// server that several sessiond replicas can share; sessions expire there
    /// by themselves (default prefix `sessiond:session:`). `rediss://` is
    /// Redis over TLS, checked against the system trust store or `?ca=FILE`,
    /// with `&cert=FILE&key=FILE` for a client certificate;
    /// `redis[s]+sentinel://[USER:PASSWORD@]HOST:PORT[,…]/MASTER[/DB]` (and
    /// `?sentinel_password=`) follows the master Sentinel names;
    /// `redis[s]+cluster://[USER:PASSWORD@]HOST:PORT[,…]/` is a Redis
    /// Cluster reached through any of these nodes. `file:///DIR`
    /// keeps one file per session in an existing directory, as Django's file
    /// engine does; `?prefix=NAME` is Django's SESSION_COOKIE_NAME (default
    /// sessionid), and a file's expiry is its modification time plus
    /// --session-age. `memory://[?max_sessions=N]` keeps sessions inside this
    /// process, lost on restart: for tests and development (default 100000
    /// sessions). A Django app may share the SQL table or the directory.
    // The variable's value is hidden from --help: a URL may hold a password.
    #[arg(long, env = "SESSIOND_STORE", hide_env_values = true, default_value = DEFAULT_STORE, value_parser = StoreUrlParser, value_name = "URL")]
    pub store: StoreUrl,

    /// A cache in front of the --store database (Django's cached_db):
    /// `redis://…` or `memory://`. Loads read it first; writes go to the
    /// database, then the cache; when the cache fails, the database answers.
    #[arg(long, env = "SESSIOND_CACHE", hide_env_values = true, value_parser = StoreUrlParser, value_name = "URL")]
    pub cache: Option<StoreUrl>,

    /// How long one storage operation may wait for a lock held by another
    /// process (e.g. a Django app writing the same SQLite file), or for Redis
    /// to connect and answer, before it fails with UNAVAILABLE.
    #[arg(long, env = "SESSIOND_STORE_TIMEOUT", default_value = DEFAULT_STORE_TIMEOUT_TEXT, value_parser = parse_store_timeout, value_name = "DURATION")]
    pub store_timeout: Duration,

    /// Session lifetime used when a request carries no expire_date (Django's
    /// SESSION_COOKIE_AGE; default two weeks). The file engine also reads a
    /// session file's expiry as its modification time plus this age, as
    /// Django's file engine does with its SESSION_COOKIE_AGE.
    #[arg(long, env = "SESSIOND_SESSION_AGE", default_value = DEFAULT_SESSION_AGE_TEXT, value_parser = parse_session_age, value_name = "DURATION")]
    pub session_age: Duration,
}

/// Parses `--store` and `--cache`. A URL that does not parse is not
/// repeated in the error, which clap would do, since it may hold a password;
/// the error says what is wrong with it, causes included.
#[derive(Debug, Clone, Copy)]
struct StoreUrlParser;

impl TypedValueParser for StoreUrlParser {
    type Value = StoreUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<StoreUrl, clap::Error> {
        let flag = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(|| "the store URL".to_owned(), |long| format!("--{long}"));
        let refuse = |reason: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {flag}: {reason}"),
            )
            .format(&mut cmd.clone())
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("the URL is not valid UTF-8".to_owned()))?;
        text.parse::<StoreUrl>()
            .map_err(|err| refuse(ErrorChain(&err).to_string()))
    }
}

impl StoreArgs {
    /// The store configuration these flags stand for.
    pub fn into_config(self) -> StoreConfig {
        StoreConfig {
            url: self.store,
            cache: self.cache,
            options: StoreOptions {
                timeout: self.store_timeout,
                session_age: self.session_age,
            },
        }
    }
}

/// The flags of `sessiond migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print the migrations that would run (version, name, whether the
    /// previous release can serve the result, and their SQL) and change
    /// nothing. Still exits 1 when the schema could not be migrated.
    #[arg(long, env = "SESSIOND_MIGRATE_DRY_RUN")]
    pub dry_run: bool,
}

/// The flags of `sessiond clearsessions`.
#[derive(Debug, Clone, Args)]
pub struct ClearArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Expired rows deleted per transaction; the batches follow each other
    /// without a pause.
    #[arg(long, env = "SESSIOND_PURGE_BATCH_SIZE", default_value_t = DEFAULT_PURGE_BATCH_SIZE, value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "ROWS")]
    pub purge_batch_size: u64,
}

impl HealthcheckArgs {
    /// The health check these flags ask for.
    pub fn into_config(self) -> HealthcheckConfig {
        HealthcheckConfig {
            listen: self.listen,
            tls_ca: self.tls_ca,
            tls_name: self.tls_name,
            tls_client: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| ClientCertificate { cert, key }),
            service: self.service,
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_store_url_is_explained_without_being_repeated() {
        for (url, expected) in [
            (
                "redis://:hunter2secret@h/x",
                "redis://: the database must be a number",
            ),
            (
                "postgres://u:hunter2secret@h:notaport/db",
                "not a PostgreSQL URL: invalid",
            ),
            ("mysql://u:hunter2secret@h", "unsupported store 'mysql://'"),
        ] {
            for flag in ["--store", "--cache"] {
                let err = Cli::try_parse_from(["sessiond", "migrate", flag, url]).unwrap_err();
                let text = err.to_string();
                assert_eq!(err.exit_code(), 2, "{text}");
                assert!(!text.contains("hunter2secret"), "{text}");
                assert!(text.contains(flag), "{text}");
                assert!(text.contains(expected), "{text}");
            }
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
