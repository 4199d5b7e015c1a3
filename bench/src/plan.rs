//! What a run measures, row by row: a running sessiond, one sessiond the
//! bench starts, or (`--compare`) every engine and a plain Redis. Each row
//! that needs a namespace of its own (a temporary SQLite file, a PostgreSQL
//! schema, a Redis key prefix) gets a fresh one, removed after the row.

use std::time::Duration;

use anyhow::Context;
use rand::RngExt;
use tempfile::TempDir;

use crate::cli::Cli;

/// How long a service may take to answer before `--compare` skips it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Room for every session of any run in a `memory://` store: its default
/// (100 000) would be full after the default pre-population.
const MEMORY_MAX_SESSIONS: u64 = 1_000_000_000;

/// SCAN rounds when deleting a key prefix: a bound, far above what a run
/// writes (1000 keys a round).
const MAX_SCAN_ROUNDS: usize = 1_000_000;

/// What one row measures.
#[derive(Debug)]
pub enum Subject {
    /// A sessiond that is already running, at these addresses.
    Target(Vec<String>),
    /// A sessiond the bench starts on a store (and cache).
    Sessiond {
        store: String,
        cache: Option<String>,
    },
    /// Plain Redis GET/SET under a key prefix: on a connection of each
    /// worker's own, one command in flight on each (as `redis-benchmark`
    /// without pipelining), or on the shared `--connections`, where
    /// commands in flight together are written together.
    RedisPlain {
        url: String,
        prefix: String,
        sharing: RedisSharing,
    },
    /// Nothing: the row is skipped for this reason.
    Skip(String),
}

/// How the workers of a plain Redis row share connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisSharing {
    /// A connection per worker: one command in flight on each.
    PerWorker,
    /// `--connections` multiplexed connections for all workers.
    Multiplexed,
}

/// A place a row writes to that is removed after it.
#[derive(Debug)]
pub enum Namespace {
    None,
    TempDir(TempDir),
    PgSchema { url: String, schema: String },
    RedisPrefix { url: String, prefix: String },
}

/// One row of the results.
#[derive(Debug)]
pub struct Plan {
    pub name: String,
    pub subject: Subject,
    pub namespace: Namespace,
}

impl Plan {
    /// The store or address as shown in the results, without passwords.
    pub fn shown(&self) -> String {
        match &self.subject {
            Subject::Target(urls) => urls
                .iter()
                .map(|u| redact(u))
                .collect::<Vec<_>>()
                .join(", "),
            Subject::Sessiond { store, cache: None } => redact(store),
            Subject::Sessiond {
                store,
                cache: Some(cache),
            } => format!("{} --cache {}", redact(store), redact(cache)),
            Subject::RedisPlain {
                url,
                prefix,
                sharing,
            } => {
                let connections = match sharing {
                    RedisSharing::PerWorker => "a connection per worker",
                    RedisSharing::Multiplexed => "shared connections",
                };
                format!(
                    "{} (GET/SET on {connections}, prefix {prefix})",
                    redact(url)
                )
            }
            Subject::Skip(_) => match &self.namespace {
                Namespace::PgSchema { url, .. } | Namespace::RedisPrefix { url, .. } => redact(url),
                _ => String::new(),
            },
        }
    }
}

/// The rows `cli` asks for.
pub async fn plans(cli: &Cli) -> anyhow::Result<Vec<Plan>> {
    if !cli.target.is_empty() {
        return Ok(vec![Plan {
            name: "target".to_owned(),
            subject: Subject::Target(cli.target.clone()),
            namespace: Namespace::None,
        }]);
    }
    if let Some(store) = &cli.store {
        let name = match (&cli.cache, store.split_once("://")) {
            (Some(_), _) => "cached_db".to_owned(),
            (None, Some((scheme, _))) => scheme.to_owned(),
            (None, None) => "store".to_owned(),
        };
        return Ok(vec![Plan {
            name,
            subject: Subject::Sessiond {
                store: with_room(store),
                cache: cli.cache.as_deref().map(with_room),
            },
            namespace: Namespace::None,
        }]);
    }
    let sqlite = sqlite_file()?;
    let cached_sqlite = sqlite_file()?;
    let postgres = probe_postgres(&cli.postgres_url).await;
    let redis = probe_redis(&cli.redis_url).await;
    let mut plans = vec![
        Plan {
            name: "memory".to_owned(),
            subject: Subject::Sessiond {
                store: with_room("memory://"),
                cache: None,
            },
            namespace: Namespace::None,
        },
        Plan {
            name: "sqlite".to_owned(),
            subject: Subject::Sessiond {
                store: sqlite.1,
                cache: None,
            },
            namespace: Namespace::TempDir(sqlite.0),
        },
    ];
    let schema = format!("sessiond_bench_{}", unique());
    plans.push(Plan {
        name: "postgres".to_owned(),
        subject: match postgres {
            Ok(()) => Subject::Sessiond {
                store: with_param(&cli.postgres_url, "schema", &schema),
                cache: None,
            },
            Err(reason) => Subject::Skip(reason),
        },
        namespace: Namespace::PgSchema {
            url: cli.postgres_url.clone(),
            schema,
        },
    });
    let prefix = format!("sessiond-bench:{}:", unique());
    let redis_store = match &redis {
        Ok(()) => Subject::Sessiond {
            store: with_param(&cli.redis_url, "prefix", &prefix),
            cache: None,
        },
        Err(reason) => Subject::Skip(reason.clone()),
    };
    plans.push(Plan {
        name: "redis".to_owned(),
        subject: redis_store,
        namespace: Namespace::RedisPrefix {
            url: cli.redis_url.clone(),
            prefix,
        },
    });
    plans.push(Plan {
        name: "cached_db".to_owned(),
        subject: Subject::Sessiond {
            store: cached_sqlite.1,
            cache: Some(with_room("memory://")),
        },
        namespace: Namespace::TempDir(cached_sqlite.0),
    });
    for (name, sharing) in [
        ("redis-plain", RedisSharing::PerWorker),
        ("redis-multiplexed", RedisSharing::Multiplexed),
    ] {
        let prefix = format!("sessiond-bench-plain:{}:", unique());
        plans.push(Plan {
            name: name.to_owned(),
            subject: match &redis {
                Ok(()) => Subject::RedisPlain {
                    url: cli.redis_url.clone(),
                    prefix: prefix.clone(),
                    sharing,
                },
                Err(reason) => Subject::Skip(reason.clone()),
            },
            namespace: Namespace::RedisPrefix {
                url: cli.redis_url.clone(),
                prefix,
            },
        });
    }
    Ok(plans)
}

impl Namespace {
    /// Removes what the row wrote: drops the schema, deletes the prefix's
    /// keys, removes the temporary directory.
    pub async fn remove(self) -> anyhow::Result<()> {
        match self {
            Self::None => Ok(()),
            Self::TempDir(dir) => dir
                .close()
                .context("cannot remove the temporary SQLite file"),
            Self::PgSchema { url, schema } => {
                let drop = async {
                    let (client, connection) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    let connection = tokio::spawn(connection);
                    let dropped = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                    drop(client);
                    let _ = connection.await;
                    dropped
                };
                tokio::time::timeout(Duration::from_secs(30), drop)
                    .await
                    .context("timed out")
                    .and_then(|dropped| Ok(dropped?))
                    .with_context(|| format!("cannot drop PostgreSQL schema {schema}"))
            }
            Self::RedisPrefix { url, prefix } => {
                tokio::time::timeout(Duration::from_secs(60), delete_prefix(&url, &prefix))
                    .await
                    .context("timed out")
                    .and_then(|deleted| deleted)
                    .with_context(|| format!("cannot delete the Redis keys under {prefix}"))
            }
        }
    }
}

async fn delete_prefix(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor = 0_u64;
    for _ in 0..MAX_SCAN_ROUNDS {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<i64>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
    anyhow::bail!("still keys left after {MAX_SCAN_ROUNDS} SCAN rounds")
}

/// `memory://` without `max_sessions` gets [`MEMORY_MAX_SESSIONS`].
pub fn with_room(store: &str) -> String {
    match store.strip_prefix("memory://") {
        Some(rest) if !rest.contains("max_sessions") => {
            let separator = if rest.contains('?') { "&" } else { "?" };
            format!("{store}{separator}max_sessions={MEMORY_MAX_SESSIONS}")
        }
        _ => store.to_owned(),
    }
}

/// `url` with one more query parameter.
fn with_param(url: &str, name: &str, value: &str) -> String {
    let separator = if url.contains('?') { "&" } else { "?" };
    format!("{url}{separator}{name}={value}")
}

/// A name part no other run uses: the process id and a random number.
fn unique() -> String {
    let random: u32 = rand::rng().random();
    format!("{}_{random:08x}", std::process::id())
}

/// A temporary directory and the sqlite:// URL of a file inside it.
fn sqlite_file() -> anyhow::Result<(TempDir, String)> {
    let dir = tempfile::Builder::new()
        .prefix("sessiond-bench-")
        .tempdir()
        .context("cannot create a temporary directory for SQLite")?;
    let path = dir.path().join("bench.sqlite3");
    let url = format!("sqlite://{}", path.display());
    Ok((dir, url))
}

/// `url` with its password, if any, shown as `***`.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// Whether PostgreSQL answers at `url`; the reason to skip it if not.
async fn probe_postgres(url: &str) -> Result<(), String> {
    let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!(
            "PostgreSQL not reachable at {}: {}",
            redact(url),
            causes(&err)
        )),
        Err(_) => Err(format!(
            "PostgreSQL at {} did not answer within {PROBE_TIMEOUT:?}",
            redact(url)
        )),
    }
}

/// Whether Redis answers PING at `url`; the reason to skip it if not.
async fn probe_redis(url: &str) -> Result<(), String> {
    let ping = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(format!(
            "Redis not reachable at {}: {}",
            redact(url),
            causes(&err)
        )),
        Err(_) => Err(format!(
            "Redis at {} did not answer within {PROBE_TIMEOUT:?}",
            redact(url)
        )),
    }
}

/// An error and its sources, each once: some errors repeat their source
/// in their own message.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_stores_get_room_unless_they_say_how_much() {
        assert_eq!(
            with_room("memory://"),
            format!("memory://?max_sessions={MEMORY_MAX_SESSIONS}")
        );
        assert_eq!(
            with_room("memory://?max_sessions=5"),
            "memory://?max_sessions=5"
        );
        assert_eq!(with_room("sqlite://x.sqlite3"), "sqlite://x.sqlite3");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://app:hunter2@127.0.0.1:5432/db"),
            "postgres://app:***@127.0.0.1:5432/db"
        );
        assert_eq!(redact("memory://"), "memory://");
        assert_eq!(
            with_param("redis://127.0.0.1:6379/0", "prefix", "a:b:"),
            "redis://127.0.0.1:6379/0?prefix=a:b:"
        );
    }
}
