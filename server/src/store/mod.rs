//! The storage engines behind one trait, [`SessionStore`], and the store
//! URL that picks one ([`StoreUrl`]).
//!
//! Engines store [`Record`]s under [`SessionKey`]s with Django's database
//! semantics: loads see live rows only, inserts never overwrite, updates never
//! resurrect. They take `now` as an argument so that expiry is testable
//! without sleeping.
//!
//! Each engine is one folder on the shared [`kit`]: `sqlite` (the embedded
//! default), `postgres` (shared by stateless replicas), `redis` (Redis
//! expires sessions by itself), `file` (Django's file engine) and `memory`
//! (in-process, for tests and development); `cached` puts a cache engine in
//! front of a database engine (Django's `cached_db`). A new engine is a
//! folder whose URL type implements [`Engine`] and one line in the list of
//! `url.rs`.

mod backup;
mod cached;
mod clear_expired;
mod file;
mod gauges;
pub mod kit;
mod memory;
mod open;
mod postgres;
mod redis;
mod sqlite;
mod url;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};

pub use self::backup::{BackupError, BackupSummary};
pub use self::cached::CachedStore;
pub use self::clear_expired::clear_expired;
pub(crate) use self::clear_expired::clear_expired_among_calls;
pub use self::file::{FileStore, FileUrl, FileUrlError};
pub use self::gauges::{PoolGauges, RowCacheGauges, SqliteGauges, StoreGauges};
pub use self::kit::{
    DEFAULT_SESSION_AGE, DEFAULT_STORE_TIMEOUT, DriverError, Engine, Migration, OpenFailure,
    PendingMigration, SchemaError, StoreError, StoreOptions,
};
pub use self::memory::{DEFAULT_MAX_SESSIONS, MemoryStore, MemoryUrl, MemoryUrlError};
pub use self::open::{MaintenanceError, OpenError, StoreConfig, open};
pub use self::postgres::{DEFAULT_POOL_SIZE, PostgresStore, PostgresUrl, PostgresUrlError};
pub use self::redis::{RedisStore, RedisUrl, RedisUrlError};
pub use self::sqlite::{
    DEFAULT_ROW_CACHE_MIB, SqliteBackupError, SqliteStore, SqliteUrl, SqliteUrlError, Synchronous,
};
pub use self::url::{StoreUrl, StoreUrlError};

/// Computes the new `session_data` of a patched session from the stored one
/// (`None` when the stored session has expired). Runs inside the engine's
/// transaction, so it must be quick and must not block.
///
/// `Fn`, not `FnOnce`: an engine without transactions that can run Rust code
/// (Redis) applies a patch optimistically, and when another write came
/// between its read and its write it merges again on top of the newer data.
/// `Sync` because such an engine keeps it across `.await`.
pub type Patcher = Box<dyn Fn(Option<String>) -> Result<String, InvalidInput> + Send + Sync>;

/// A storage engine.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Creates or upgrades the schema; returns what was done (nothing when
    /// the schema is current). Safe to run concurrently and repeatedly.
    /// Engines without a schema (Redis, files, memory) keep the default,
    /// which has nothing to do.
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        Ok(Vec::new())
    }

    /// What [`migrate`](Self::migrate) would do, found without changing the
    /// schema (`sessiond migrate --dry-run`); fails where `migrate` would
    /// refuse the schema.
    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, StoreError> {
        Ok(Vec::new())
    }

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
    /// with `patcher` and writes it with `expire_date`; returns what it
    /// wrote. [`StoreError::NotFound`] if there is no row; an expired row
    /// is patched from no data (`None`).
    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError>;

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

    /// Answers `Ok` when the engine is reachable and can serve calls: the
    /// readiness probe asks every few seconds, so it is the cheapest round
    /// trip the engine has (a trivial read, `SELECT 1`, `PING`, a look at
    /// the directory). Bounded by the store timeout like any operation.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The engine's pool and files as they are now, for the metrics
    /// endpoint. Read at each scrape from what the engine keeps anyway:
    /// quick, and it never waits for a call or a connection. Engines with
    /// nothing to tell keep the default, which is empty.
    fn gauges(&self) -> StoreGauges {
        StoreGauges::default()
    }

    /// Finishes pending writes and releases the engine's resources.
    async fn close(&self);
}
