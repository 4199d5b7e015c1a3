//! The command line: what to measure (a running server, a store to start
//! sessiond on, or every engine side by side) and the shape of the load.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};

use crate::workload::Workload;

/// The size of a logged-in Django session with a little application state
/// (user id, backend, auth hash, a cart or a few flags): the usual case
/// rather than the smallest.
pub const DEFAULT_PAYLOAD_BYTES: &str = "1024";

/// Enough rows that the table outgrows CPU caches and indexes have depth,
/// as on a site with real traffic, while still created in seconds.
pub const DEFAULT_SESSIONS: &str = "100000";

/// Requests in flight at once: a handful of busy app servers, each with a
/// pool of workers. Enough to keep a server's cores busy on loopback.
pub const DEFAULT_CONCURRENCY: &str = "64";

/// One HTTP/2 connection, as one app process with one client has.
pub const DEFAULT_CONNECTIONS: &str = "1";

/// Long enough for SQLite checkpoints and the like to show up in the tail,
/// short enough to run often.
pub const DEFAULT_DURATION: &str = "10s";

/// Time for connections, caches and the server's allocator to settle
/// before anything is counted.
pub const DEFAULT_WARMUP: &str = "2s";

/// `mixed`: most requests of a web app only read the session.
pub const DEFAULT_LOAD_PERCENT: &str = "90";

/// The client's own default request timeout; a slower answer counts as a
/// `DEADLINE_EXCEEDED` error.
pub const DEFAULT_TIMEOUT: &str = "5s";

/// One thread, as redis-benchmark and wrk run by default: on the server's
/// machine it leaves the other cores to the server, and it spends no time
/// waking threads of its own. Raise it when one core cannot keep a server
/// on another machine busy.
pub const DEFAULT_THREADS: &str = "1";

/// The PostgreSQL every machine of this project runs (see `.ci/run`).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The Redis every machine of this project runs (see `.ci/run`).
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// The name `sessiond healthcheck --tls-name` checks by default: a
/// certificate for a server on this machine carries it.
pub const DEFAULT_TLS_NAME: &str = "localhost";

/// Longest measured run or warm-up accepted: a bound on every loop.
const MAX_PHASE: Duration = Duration::from_secs(3600);

/// sessiond-bench: load generator for sessiond.
///
/// Measures requests per second and latency (p50, p99, p99.9, max, from an
/// HDR histogram in microseconds) of one workload against a sessiond that is
/// already running (--target), against a sessiond it starts on a store
/// (--store), or against every engine in turn, with a plain Redis as a
/// reference (--compare). Sessions are created before measuring; every
/// session it writes expires one hour after the run.
///
/// With --idle-connections N it measures what idle connections cost
/// instead: it starts sessiond (--store), opens N connections that each send
/// the HTTP/2 preface (inside TLS with --tls-ca) and then nothing, holds
/// them for --duration and reports how many the server answered, closed or
/// left waiting, and its memory and CPU before, while holding them and
/// after they close.
#[derive(Debug, Parser)]
#[command(name = "sessiond-bench", version, about, long_about)]
#[command(group(ArgGroup::new("subject").required(true).args(["target", "store", "compare"])))]
#[command(after_help = "Examples:\n  \
sessiond-bench --store sqlite:///tmp/bench.sqlite3 --workload load\n  \
sessiond-bench --target http://127.0.0.1:50051 --concurrency 16 --duration 30s\n  \
sessiond-bench --compare --duration 5s --json > figures.json\n  \
sessiond-bench --store memory:// --idle-connections 10000 --duration 5s\n  \
sessiond-bench --store memory:// --idle-connections 5000 --server-arg=--max-connections=2000\n  \
sessiond-bench --store memory:// --idle-connections 1000 --tls-ca cert.pem \\\n      \
--server-arg=--tls-cert=cert.pem --server-arg=--tls-key=key.pem\n\n\
Durations take seconds (\"10\") or units (\"500ms\", \"10s\", \"1m\").")]
pub struct Cli {
    /// A running sessiond to measure, e.g. http://127.0.0.1:50051. Repeat it
    /// for several replicas: each connection then balances over all of them.
    #[arg(long, value_name = "URL")]
    pub target: Vec<String>,

    /// Start sessiond on this store and measure it: memory://,
    /// sqlite://PATH, postgres://…?schema=…, redis://…?prefix=…, file:///DIR.
    /// The server listens on a free port of 127.0.0.1 and is stopped with
    /// SIGTERM at the end; its memory and CPU time are reported. memory://
    /// without max_sessions gets room for any run.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// With --store: a cache in front of it (sessiond's --cache), e.g.
    /// memory:// or redis://….
    #[arg(long, value_name = "URL", requires = "store")]
    pub cache: Option<String>,

    /// Start and measure sessiond on memory:// (the ceiling), sqlite:// (a
    /// temporary file), postgres:// and redis:// (each in a fresh schema or
    /// key prefix, when reachable, removed afterwards) and cached_db (SQLite
    /// with --cache memory://), then plain Redis GET/SET as a reference (on a
    /// connection per worker, as redis-benchmark without pipelining, and
    /// multiplexed on the shared --connections); each row with its ratio to
    /// memory://.
    #[arg(long)]
    pub compare: bool,

    /// The sessiond binary to start. Default: the `sessiond` next to this
    /// program (same target directory), else the one on PATH.
    #[arg(long, value_name = "PATH")]
    pub sessiond: Option<PathBuf>,

    /// An extra flag for the sessiond it starts, e.g. --server-arg=--codec
    /// --server-arg=django. Repeatable.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// What every request does: `load` reads a random pre-created session,
    /// `save` updates one (Save without must_create), `create` stores a new
    /// one, `mixed` loads or saves (see --load-percent), `cycle` moves a
    /// session to a new key (CycleKey, as at login).
    #[arg(long, value_enum, default_value_t = Workload::Mixed)]
    pub workload: Workload,

    /// With --workload mixed: the share of loads, in percent; the rest are
    /// saves.
    #[arg(long, default_value = DEFAULT_LOAD_PERCENT, value_parser = clap::value_parser!(u8).range(0..=100), value_name = "PERCENT")]
    pub load_percent: u8,

    /// Size of the session data written: a JSON object shaped like a
    /// logged-in Django session, padded to this many bytes (below 10: `{}`).
    #[arg(long, default_value = DEFAULT_PAYLOAD_BYTES, value_parser = clap::value_parser!(u64).range(2..=(64 << 20)), value_name = "BYTES")]
    pub payload_bytes: u64,

    /// Sessions created (by many concurrent Creates) before measuring; loads,
    /// saves and key cycles pick among them.
    #[arg(long, default_value = DEFAULT_SESSIONS, value_parser = clap::value_parser!(u64).range(0..=100_000_000), value_name = "N")]
    pub sessions: u64,

    /// Also create this many sessions that have already expired, and call
    /// ClearExpired once as measuring starts: the figures then show the
    /// load during a purge, and the row reports how long the purge took.
    /// Give a --duration shorter than the purge, so that every measured
    /// request overlaps it. Needs a sessiond store with expiry by purge
    /// (not redis://).
    #[arg(long, default_value = "0", value_parser = clap::value_parser!(u64).range(0..=100_000_000), value_name = "N")]
    pub expired: u64,

    /// Requests in flight at once: this many workers, each sending its next
    /// request when the last one is answered.
    #[arg(long, default_value = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u64).range(1..=100_000), value_name = "N")]
    pub concurrency: u64,

    /// HTTP/2 connections (Redis: multiplexed connections); the workers are
    /// spread over them evenly.
    #[arg(long, default_value = DEFAULT_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..=1024), value_name = "N")]
    pub connections: u64,

    /// Threads the load generator itself runs on (its workers share them).
    #[arg(long, default_value = DEFAULT_THREADS, value_parser = clap::value_parser!(u16).range(1..=1024), value_name = "N")]
    pub threads: u16,

    /// How long to measure (after the warm-up).
    #[arg(long, default_value = DEFAULT_DURATION, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,

    /// How long to send load before measuring; not counted.
    #[arg(long, default_value = DEFAULT_WARMUP, value_parser = parse_duration, value_name = "DURATION")]
    pub warmup: Duration,

    /// Measure every row this many times, the rows of one round one after
    /// the other (memory, sqlite, …, then memory again), each round on a
    /// fresh sessiond (and with --compare on fresh files, schemas and key
    /// prefixes; a --store or --target keeps its sessions from round to
    /// round). The report shows, per row, the round of median ratio to
    /// memory:// (median throughput for memory itself) and the spread
    /// (min–max) over all rounds: on a shared machine single runs vary by
    /// ±10 %.
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u64).range(1..=100), value_name = "N")]
    pub rounds: u64,

    /// How long one request may take before it counts as a
    /// DEADLINE_EXCEEDED error.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// Print the results as one JSON document on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Instead of a workload: open this many idle connections to the
    /// sessiond it starts (as an idle gRPC client opens one: the HTTP/2
    /// preface and an empty SETTINGS frame, then only the acknowledgements
    /// HTTP/2 asks for), hold them for --duration after --warmup, and report
    /// the server's memory per connection and CPU while they are held. Needs
    /// --store; takes --server-arg (e.g. --server-arg=--max-connections=1000).
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=1_000_000),
        requires = "store",
        conflicts_with_all = [
            "target", "compare", "workload", "load_percent", "payload_bytes",
            "sessions", "expired", "concurrency", "connections", "timeout",
        ],
    )]
    pub idle_connections: Option<u64>,

    /// With --idle-connections, for a sessiond started with TLS
    /// (--server-arg=--tls-cert=FILE --server-arg=--tls-key=FILE): open the
    /// connections and the start-up health check over TLS, trusting the CA
    /// certificates in this PEM file.
    #[arg(long, value_name = "PATH", requires = "idle_connections")]
    pub tls_ca: Option<PathBuf>,

    /// With --tls-ca: the name the server's certificate must carry.
    #[arg(long, default_value = DEFAULT_TLS_NAME, value_name = "NAME", requires = "tls_ca")]
    pub tls_name: String,

    /// With --compare: the PostgreSQL to measure; a fresh schema is created
    /// in it and dropped afterwards. Skipped when it does not answer.
    #[arg(long, default_value = DEFAULT_POSTGRES_URL, value_name = "URL")]
    pub postgres_url: String,

    /// With --compare: the Redis to measure, through sessiond and plainly;
    /// fresh key prefixes are used and deleted afterwards. Skipped when it
    /// does not answer.
    #[arg(long, default_value = DEFAULT_REDIS_URL, value_name = "URL")]
    pub redis_url: String,
}

/// Seconds (`10`) or a duration with units (`500ms`, `10s`, `1m`), more
/// than zero and at most an hour.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|err| format!("{err}; expected seconds or e.g. 500ms, 10s, 1m"))?,
    };
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    if duration > MAX_PHASE {
        return Err("at most 1h".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_seconds_or_units_within_bounds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn one_subject_is_required_and_they_exclude_each_other() {
        assert!(Cli::try_parse_from(["sessiond-bench"]).is_err());
        assert!(
            Cli::try_parse_from(["sessiond-bench", "--compare", "--store", "memory://"]).is_err()
        );
        assert!(Cli::try_parse_from(["sessiond-bench", "--cache", "memory://"]).is_err());
        let cli = Cli::try_parse_from([
            "sessiond-bench",
            "--target",
            "http://127.0.0.1:1",
            "--target",
            "http://127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(cli.target.len(), 2);
        assert_eq!(cli.workload, Workload::Mixed);
    }

    #[test]
    fn idle_connections_need_a_store_and_no_workload() {
        let idle = |extra: &[&str]| {
            let args = ["sessiond-bench", "--idle-connections", "10"];
            Cli::try_parse_from(args.iter().chain(extra))
        };
        assert!(idle(&["--store", "memory://"]).is_ok());
        assert!(idle(&["--compare"]).is_err());
        assert!(idle(&["--target", "http://127.0.0.1:1"]).is_err());
        assert!(idle(&["--store", "memory://", "--concurrency", "4"]).is_err());
        assert!(
            Cli::try_parse_from(["sessiond-bench", "--store", "m://", "--tls-ca", "ca.pem"])
                .is_err()
        );
    }
}
