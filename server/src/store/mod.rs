//! The storage engine contract, and `open`, which picks an engine from a
//! store URL.
//!
//! Engines store [`Record`]s under [`SessionKey`]s with Django's database
//! semantics: loads see live rows only, inserts never overwrite, updates never
//! resurrect. They take `now` as an argument so that expiry is testable
//! without sleeping. One file per engine: `sqlite` (the embedded default),
//! `redis` (shared by several sessiond replicas; Redis expires sessions by
//! itself) and `memory` (in-process, for tests and development).

mod cached;
mod file;
mod memory;
mod postgres;
mod redis;
mod sqlite;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};

pub use self::cached::CachedStore;
pub use self::file::{DEFAULT_COOKIE_AGE, DEFAULT_PREFIX, FileStore, FileUrl, FileUrlError};
pub use self::memory::{MemoryStore, MemoryUrl, MemoryUrlError};
pub use self::postgres::{PostgresStore, PostgresUrl};
pub use self::redis::{RedisStore, RedisUrl, RedisUrlError};
pub use self::sqlite::{SqliteStore, SqliteUrl, SqliteUrlError, Synchronous};

/// A boxed error from an engine's driver, kept as the source of a
/// [`StoreError`].
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An insert met an existing row with the same key.
    #[error("a session with this key already exists")]
    AlreadyExists,
    /// An update (or a cycle without data) found no live session.
    #[error("the session does not exist")]
    NotFound,
    /// The engine is down or locked; the call may succeed later.
    #[error("the storage engine is unavailable")]
    Unavailable(#[source] DriverError),
    /// The engine holds as much as it may (the memory engine's
    /// `max_sessions`, Redis's `maxmemory`); nothing new fits until sessions
    /// expire or are deleted.
    #[error("the storage engine is full")]
    Full(#[source] DriverError),
    /// The engine's schema is missing or not one sessiond can use.
    #[error("{0}")]
    Schema(String),
    /// A patch refused the stored data it was given (the result is too large).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// Anything else: a bug, corruption, or an engine fault.
    #[error("the storage engine failed")]
    Internal(#[source] DriverError),
}

/// Computes the new `session_data` of a patched session from the stored one
/// (`None` when the stored session has expired). Runs inside the engine's
/// transaction, so it must be quick and must not block.
///
/// `Fn`, not `FnOnce`: an engine without transactions that can run Rust code
/// (Redis) applies a patch optimistically, and when another write came
/// between its read and its write it merges again on top of the newer data.
/// `Sync` because such an engine keeps it across `.await`.
pub type Patcher = Box<dyn Fn(Option<String>) -> Result<String, InvalidInput> + Send + Sync>;

/// A migration that `migrate` applied or adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub name: &'static str,
    /// The table already existed in the expected shape (created by Django's
    /// own migration) and was taken over as it is.
    pub adopted: bool,
}

/// A storage engine.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Creates or upgrades the schema; returns what was done (nothing when
    /// the schema is current). Safe to run concurrently and repeatedly.
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError>;

    /// The live session under `key`: its expiry is after `now`.
    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError>;

    /// Whether a row exists under `key`, expired or not.
    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// Inserts a new row; [`StoreError::AlreadyExists`] if the key is taken,
    /// even by an expired row.
    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError>;

    /// Replaces an existing row, expired or not; [`StoreError::NotFound`] if
    /// there is none. Never inserts.
    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError>;

    /// In one transaction: reads the row under `key`, computes its new data
    /// with `patcher` and writes it with `expire_date`.
    /// [`StoreError::NotFound`] if there is no row; an expired row is patched
    /// from no data (`None`).
    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Removes the row under `key`; true if there was one.
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// In one transaction: inserts `new_key` and removes `old_key`. With
    /// `session_data` absent, the new row takes the data of the old one,
    /// which must be live at `now` ([`StoreError::NotFound`] otherwise).
    /// [`StoreError::AlreadyExists`] if `new_key` is taken.
    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Removes up to `limit` rows whose expiry is before `now`, in one
    /// transaction; returns how many. Callers loop until fewer than `limit`
    /// come back, so other calls interleave between batches.
    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError>;

    /// Finishes pending writes and releases the engine's resources.
    async fn close(&self);
}

/// Removes every row whose expiry is before `now`, in batches of
/// `batch_size`; returns how many.
pub async fn clear_expired(
    store: &dyn SessionStore,
    now: DateTime<Utc>,
    batch_size: u64,
) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let batch = store.clear_expired_batch(now, batch_size).await?;
        removed += batch;
        if batch < batch_size {
            return Ok(removed);
        }
    }
}

/// Where sessions are stored, parsed from `--store`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH[?synchronous=normal|full]`: an SQLite database file
    /// (relative paths are relative to the working directory;
    /// `sqlite:///abs/path` for absolute ones).
    Sqlite(SqliteUrl),
    /// `postgres://user:password@host:port/database?schema=name`: Django's
    /// table on PostgreSQL, in `schema` if given.
    Postgres(PostgresUrl),
    /// `file://DIR[?prefix=NAME&cookie_age=SECONDS]`: one file per session in
    /// a directory, as Django's file engine keeps them.
    File(FileUrl),
    /// `redis://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX]`: a Redis
    /// server, one hash per session under the prefix.
    Redis(RedisUrl),
    /// `memory://[?max_sessions=N]`: a map inside the sessiond process.
    Memory(MemoryUrl),
}

/// The store URL forms sessiond understands, for error messages.
const SUPPORTED_STORES: &str = "expected sqlite://PATH[?synchronous=full], postgres://USER@HOST/DATABASE[?schema=NAME], redis://HOST[:PORT][/DB][?prefix=PREFIX], file:///DIR or memory://[?max_sessions=N]";

/// A `--store` value that is not a store URL sessiond understands.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    #[error("'{0}' is not a store URL; {SUPPORTED_STORES}")]
    NoScheme(String),
    #[error("unsupported store '{0}://'; {SUPPORTED_STORES}")]
    UnsupportedScheme(String),
    #[error(transparent)]
    Postgres(#[from] postgres::UrlError),
    #[error(transparent)]
    Sqlite(#[from] SqliteUrlError),
    #[error(transparent)]
    File(#[from] FileUrlError),
    #[error(transparent)]
    Redis(#[from] RedisUrlError),
    #[error(transparent)]
    Memory(#[from] MemoryUrlError),
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(StoreUrlError::NoScheme(text.to_owned()));
        };
        match scheme {
            "sqlite" => Ok(Self::Sqlite(SqliteUrl::parse(rest)?)),
            "postgres" | "postgresql" => Ok(Self::Postgres(PostgresUrl::parse(text)?)),
            "file" => Ok(Self::File(rest.parse()?)),
            "redis" | "rediss" => Ok(Self::Redis(RedisUrl::parse(text)?)),
            "memory" => Ok(Self::Memory(MemoryUrl::parse(rest)?)),
            other => Err(StoreUrlError::UnsupportedScheme(other.to_owned())),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(url) => fmt::Display::fmt(url, f),
            Self::Postgres(url) => write!(f, "{url}"),
            Self::File(url) => fmt::Display::fmt(url, f),
            Self::Redis(url) => fmt::Display::fmt(url, f),
            Self::Memory(url) => fmt::Display::fmt(url, f),
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Engine settings that do not belong in the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long one operation may wait for a lock held elsewhere (SQLite) or
    /// for the engine to answer (Redis: connecting included) before it fails
    /// with [`StoreError::Unavailable`].
    pub timeout: Duration,
}

/// Why an engine could not be opened, before it is tied to its URL.
#[derive(Debug)]
enum OpenFailure {
    /// A problem the operator can fix, explained in words.
    Unusable(String),
    /// An unexpected driver error.
    Driver(DriverError),
}

impl OpenFailure {
    fn at(self, url: &StoreUrl) -> OpenError {
        match self {
            Self::Unusable(reason) => OpenError::Unusable {
                url: url.clone(),
                reason,
            },
            Self::Driver(source) => OpenError::Driver {
                url: url.clone(),
                source,
            },
        }
    }
}

/// Why a store could not be opened. Each message names the store and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use store {url} (--store, SESSIOND_STORE): {reason}")]
    Unusable { url: StoreUrl, reason: String },
    #[error("cannot open store {url} (--store, SESSIOND_STORE)")]
    Driver {
        url: StoreUrl,
        #[source]
        source: DriverError,
    },
    #[error("cannot use cache {url} (--cache, SESSIOND_CACHE): {reason}")]
    Cache { url: StoreUrl, reason: String },
}

impl StoreUrl {
    /// Whether sessions live in the engine's own storage, which a cache may
    /// front; Redis and memory are caches themselves.
    fn is_database(&self) -> bool {
        matches!(self, Self::Sqlite(_) | Self::Postgres(_) | Self::File(_))
    }
}

/// Opens the engine `url` names, with the cache `cache` names in front of it
/// if given (Django's `cached_db`). Does not migrate.
pub async fn open_cached(
    url: &StoreUrl,
    cache: Option<&StoreUrl>,
    options: &StoreOptions,
) -> Result<Arc<dyn SessionStore>, OpenError> {
    let Some(cache_url) = cache else {
        return open(url, options).await;
    };
    let refuse = |reason: String| OpenError::Cache {
        url: cache_url.clone(),
        reason,
    };
    if cache_url.is_database() {
        return Err(refuse(
            "a cache must be redis://… or memory://; the database goes in --store".into(),
        ));
    }
    if !url.is_database() {
        return Err(refuse(format!(
            "{url} is a cache itself; put a cache in front of sqlite://, postgres:// or file:// only"
        )));
    }
    let database = open(url, options).await?;
    let cache = open(cache_url, options).await.map_err(|err| {
        let reason = match err {
            OpenError::Unusable { reason, .. } | OpenError::Cache { reason, .. } => reason,
            OpenError::Driver { source, .. } => source.to_string(),
        };
        refuse(reason)
    })?;
    Ok(Arc::new(CachedStore::new(database, cache)))
}

/// Opens the engine a store URL names. Does not migrate.
pub async fn open(
    url: &StoreUrl,
    options: &StoreOptions,
) -> Result<Arc<dyn SessionStore>, OpenError> {
    match url {
        StoreUrl::Sqlite(sqlite_url) => {
            let sqlite_url = sqlite_url.clone();
            let options = options.clone();
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open(&sqlite_url, &options))
                    .await
                    .map_err(|err| OpenError::Driver {
                        url: url.clone(),
                        source: err.into(),
                    })?;
            match store {
                Ok(store) => Ok(Arc::new(store)),
                Err(failure) => Err(failure.at(url)),
            }
        }
        StoreUrl::Postgres(postgres_url) => {
            match PostgresStore::open(postgres_url, options).await {
                Ok(store) => Ok(Arc::new(store)),
                Err(failure) => Err(failure.at(url)),
            }
        }
        StoreUrl::File(file_url) => {
            let file_url = file_url.clone();
            let store = tokio::task::spawn_blocking(move || FileStore::open(&file_url))
                .await
                .map_err(|err| OpenError::Driver {
                    url: url.clone(),
                    source: err.into(),
                })?;
            match store {
                Ok(store) => Ok(Arc::new(store)),
                Err(failure) => Err(failure.at(url)),
            }
        }
        StoreUrl::Redis(redis_url) => match RedisStore::open(redis_url, options).await {
            Ok(store) => Ok(Arc::new(store)),
            Err(failure) => Err(failure.at(url)),
        },
        StoreUrl::Memory(memory_url) => Ok(Arc::new(MemoryStore::open(memory_url))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_say_what_is_expected() {
        assert_eq!(
            "sqlite://sessiond.sqlite3".parse::<StoreUrl>().unwrap(),
            StoreUrl::Sqlite(SqliteUrl {
                path: "sessiond.sqlite3".into(),
                synchronous: Synchronous::Normal,
            })
        );
        assert_eq!(
            "sqlite:///var/lib/sessiond/db.sqlite3?synchronous=full"
                .parse::<StoreUrl>()
                .unwrap(),
            StoreUrl::Sqlite(SqliteUrl {
                path: "/var/lib/sessiond/db.sqlite3".into(),
                synchronous: Synchronous::Full,
            })
        );
        let err = "mysql://x".parse::<StoreUrl>().unwrap_err().to_string();
        assert!(err.contains("mysql://"), "{err}");
        let err = "sessiond.sqlite3"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("sqlite://PATH"), "{err}");
        assert!("sqlite://".parse::<StoreUrl>().is_err());
        for (text, expected) in [
            ("sqlite://s.sqlite3?synchronous=off", "normal (the default"),
            ("sqlite://s.sqlite3?synchronous=off", "or full"),
            (
                "sqlite://s.sqlite3?journal_mode=wal",
                "unknown option 'journal_mode'",
            ),
        ] {
            let err = text.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        for text in ["mysql://x", "sessiond.sqlite3"] {
            let err = text.parse::<StoreUrl>().unwrap_err().to_string();
            for form in ["postgres://", "redis://HOST", "file:///DIR", "memory://"] {
                assert!(err.contains(form), "{err}");
            }
        }
    }

    #[test]
    fn file_urls_parse_and_display_as_written() {
        for text in [
            "file:///var/lib/sessiond",
            "file:///var/lib/sessiond?prefix=myapp_sid",
            "file:///var/lib/sessiond?prefix=myapp_sid&cookie_age=3600",
            "file://relative/dir",
        ] {
            let url: StoreUrl = text.parse().unwrap();
            assert_eq!(url.to_string(), text);
        }
        let StoreUrl::File(url) = "file:///srv/s?prefix=sid".parse().unwrap() else {
            panic!("not a file URL");
        };
        assert_eq!(url.dir, std::path::Path::new("/srv/s"));
        assert_eq!(url.prefix, "sid");
        assert_eq!(url.cookie_age, DEFAULT_COOKIE_AGE);
        let err = "file://".parse::<StoreUrl>().unwrap_err().to_string();
        assert!(err.contains("file:///var/lib/sessiond"), "{err}");
        let err = "file:///d?prefix=../x"
            .parse::<StoreUrl>()
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("prefix:"), "{err}");
    }

    #[test]
    fn redis_memory_and_sqlite_urls_parse_and_show_back() {
        for text in [
            "sqlite://sessiond.sqlite3",
            "sqlite:///var/lib/sessiond/db.sqlite3?synchronous=full",
            "redis://127.0.0.1:6379/0?prefix=sessiond:session:",
            "memory://?max_sessions=100000",
            "memory://?max_sessions=5",
        ] {
            let url: StoreUrl = text.parse().unwrap();
            assert_eq!(url.to_string(), text);
        }
        assert_eq!(
            "memory://".parse::<StoreUrl>().unwrap(),
            StoreUrl::Memory(MemoryUrl::default())
        );
        assert!(matches!(
            "redis://localhost".parse::<StoreUrl>().unwrap(),
            StoreUrl::Redis(_)
        ));
        for (text, expected) in [
            ("memory://x", "takes no path"),
            ("memory://?max_sessions=0", "at least 1"),
            ("memory://?max_sessions=many", "at least 1"),
            ("memory://?size=3", "unknown option 'size'"),
            ("redis://h/x", "database must be a number"),
            ("rediss://h", "TLS"),
        ] {
            let err = text.parse::<StoreUrl>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
