//! The embedded default engine: one SQLite file holding Django's
//! `django_session` table, shareable with a Django app on the same file.
//!
//! Reads run on a pool of read-only connections; Loads that arrive together
//! share one read transaction (see `loads`). Writes go to a single writer
//! thread that commits whatever writes are waiting in one transaction (group
//! commit): SQLite allows one writer at a time anyway, and one commit then
//! covers many saves. A third thread copies the write-ahead log into the
//! database in the background, so that no commit waits for a checkpoint,
//! and keeps the log from growing without bound. The database runs in WAL
//! mode. Every acknowledged write survives a crash of the process. With
//! `synchronous=NORMAL` (the default) a commit is not synced: a power loss
//! or OS crash can cost the commits since the last checkpoint pass synced the
//! log. `sqlite://PATH?synchronous=full` syncs the log at every commit, one
//! fsync per group commit, and then an acknowledged write survives that too.
//!
//! Loads on the threads that serve connections answer from copies of rows
//! kept in memory when they can (see `row_cache`): the writer keeps the
//! copies of what it writes, and a count that SQLite keeps with triggers
//! tells when another process has written the table.
//!
//! `expire_date` is stored as Django stores it on SQLite, as the text
//! `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, and compared as text the same way,
//! so Django and sessiond agree on what has expired (see `dates`).

mod backup;
mod checkpoint;
mod connection;
mod dates;
mod errors;
mod loads;
mod row_cache;
mod schema;
mod url;
mod write_ops;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::kit::{
    Engine, Migration, Migrations, OpenFailure, PendingMigration, StoreError, StoreOptions,
};
use crate::store::{Patcher, PoolGauges, SessionStore, SqliteGauges, StoreGauges};
pub use backup::SqliteBackupError;
pub(crate) use backup::back_up;
use connection::{
    Readers, check_path, explain_open_error, keep_private, log_synchronous, open_read_write,
    read_pool,
};
use dates::{from_django_text, to_django_text};
use errors::{classify, is_busy};
use loads::Loads;
use row_cache::RowCache;
pub use url::{DEFAULT_ROW_CACHE_MIB, SqliteUrl, SqliteUrlError, Synchronous};
use write_ops::{WriteOp, WriteOutcome};
use writer::Writer;

/// Read connections kept open. Reads are short point lookups, so a few
/// connections keep both cores busy while others wait on I/O. Each thread
/// that serves connections holds one while it answers Loads (see
/// `loads`), but only while another stays idle for the drainer and other
/// reads; a thread that finds none to spare queues its Loads for the
/// drainer instead. Two threads may race past that check, and then wait
/// for each other's connection no longer than one turn.
const DEFAULT_READERS: u32 = 8;

/// The SQLite engine.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    timeout: Duration,
    synchronous: Synchronous,
    readers: Readers,
    loads: Arc<Loads>,
    writer: Writer,
    row_cache: Arc<RowCache>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file `url` names. Blocking.
    fn open(url: &SqliteUrl, options: &StoreOptions) -> Result<Self, OpenFailure> {
        let (path, synchronous) = (url.path.as_path(), url.synchronous);
        check_path(path)?;
        keep_private(path)?;
        let conn = open_read_write(path, options.timeout, synchronous)
            .map_err(|err| explain_open_error(err, options.timeout))?;
        log_synchronous(&conn);

        let timeout = options.timeout;
        let readers = read_pool(path, DEFAULT_READERS, timeout).map_err(OpenFailure::driver)?;
        let budget = usize::try_from(url.row_cache_mib)
            .map_or(usize::MAX, |mib| mib.saturating_mul(1024 * 1024));
        let cache = Arc::new(RowCache::new(budget));

        Ok(Self {
            path: path.to_owned(),
            timeout,
            synchronous,
            loads: Loads::new(readers.clone(), timeout, cache.clone()),
            readers,
            writer: Writer::spawn(conn, path, timeout, synchronous, cache.clone()),
            row_cache: cache,
        })
    }

    /// Runs `read` on a pooled read-only connection.
    ///
    /// A read is a point lookup of a few microseconds, far less than a hop
    /// to a blocking thread costs, so it first runs right here, on an idle
    /// connection that does not wait for locks. Only when that cannot be
    /// done (no idle connection, or the database is locked, as during
    /// another process's exclusive lock) does it go to a blocking thread and
    /// wait up to the store timeout.
    async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let timeout = self.timeout;
        let conn = match self.readers.try_get() {
            Some(conn) => match read(&conn) {
                Err(err) if is_busy(&err) => Some(conn),
                result => return result.map_err(|err| classify(err, timeout)),
            },
            None => None,
        };
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(conn) => conn,
                None => readers
                    .get()
                    .map_err(|err| StoreError::Unavailable(err.into()))?,
            };
            let waiting = conn.busy_timeout(timeout);
            let result = waiting.and_then(|()| read(&conn));
            let _ = conn.busy_timeout(Duration::ZERO);
            result.map_err(|err| classify(err, timeout))
        })
        .await
        .map_err(|err| StoreError::Internal(err.into()))?
    }
}

#[async_trait]
impl Engine for SqliteUrl {
    fn is_database(&self) -> bool {
        true
    }

    fn storage_exists(&self) -> bool {
        self.path.exists()
    }

    fn migrations(&self) -> Option<&'static Migrations> {
        Some(&schema::MIGRATIONS)
    }

    async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure> {
        let (url, options) = (self.clone(), options.clone());
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&url, &options))
            .await
            .map_err(OpenFailure::driver)??;
        Ok(Arc::new(store))
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let path = self.path.clone();
        let (timeout, synchronous) = (self.timeout, self.synchronous);
        tokio::task::spawn_blocking(move || {
            let mut conn = open_read_write(&path, timeout, synchronous)
                .map_err(|err| classify(err, timeout))?;
            schema::migrate(&mut conn, timeout)
        })
        .await
        .map_err(|err| StoreError::Internal(err.into()))?
    }

    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, StoreError> {
        let path = self.path.clone();
        let (timeout, synchronous) = (self.timeout, self.synchronous);
        tokio::task::spawn_blocking(move || {
            let mut conn = open_read_write(&path, timeout, synchronous)
                .map_err(|err| classify(err, timeout))?;
            schema::pending(&mut conn, timeout)
        })
        .await
        .map_err(|err| StoreError::Internal(err.into()))?
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let row = self.loads.load(key.clone(), to_django_text(now)).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expire_date = from_django_text(&row.expire_date)?;
        Ok(Some(Record {
            session_data: row.session_data,
            expire_date,
        }))
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM django_session WHERE session_key = ?1")?
                .exists([key.as_str()])
        })
        .await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let op = WriteOp::Insert {
            key: key.clone(),
            record,
        };
        self.writer.submit(op).await.map(|_| ())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let op = WriteOp::Update {
            key: key.clone(),
            record,
        };
        self.writer.submit(op).await.map(|_| ())
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError> {
        let op = WriteOp::Patch {
            key: key.clone(),
            patcher,
            expire_date,
            now,
        };
        match self.writer.submit(op).await? {
            WriteOutcome::Patched(record) => Ok(record),
            outcome => Err(StoreError::Internal(
                format!("the sqlite writer answered a patch with {outcome:?}").into(),
            )),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        match self
            .writer
            .submit(WriteOp::Delete { key: key.clone() })
            .await?
        {
            WriteOutcome::Removed(count) => Ok(count > 0),
            WriteOutcome::Done | WriteOutcome::Patched(_) => Ok(false),
        }
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let op = WriteOp::CycleKey {
            old_key: old_key.clone(),
            new_key: new_key.clone(),
            session_data,
            expire_date,
            now,
        };
        self.writer.submit(op).await.map(|_| ())
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        match self
            .writer
            .submit(WriteOp::ClearExpiredBatch { now, limit })
            .await?
        {
            WriteOutcome::Removed(count) => Ok(count),
            WriteOutcome::Done | WriteOutcome::Patched(_) => Ok(0),
        }
    }

    /// A read of the table, as a Load does: it fails when the table is
    /// gone or the file is locked past the store timeout; and without the
    /// writer thread, which every write needs.
    async fn ping(&self) -> Result<(), StoreError> {
        if !self.writer.is_running() {
            return Err(StoreError::Unavailable(
                "the sqlite writer has stopped".into(),
            ));
        }
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM django_session LIMIT 1")?
                .exists([])
        })
        .await
        .map(|_| ())
    }

    /// The read pool (r2d2 does not count waiters) and the sizes of the
    /// database and its log: two `stat`s, no statement.
    fn gauges(&self) -> StoreGauges {
        let readers = self.readers.state();
        let size = |path: &std::path::Path| std::fs::metadata(path).map_or(0, |meta| meta.len());
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        StoreGauges {
            pool: Some(PoolGauges {
                in_use: u64::from(readers.connections.saturating_sub(readers.idle_connections)),
                idle: u64::from(readers.idle_connections),
                max: u64::from(self.readers.max_size()),
                waiters: None,
            }),
            sqlite: Some(SqliteGauges {
                file_bytes: size(&self.path),
                wal_bytes: size(std::path::Path::new(&wal)),
                last_checkpoint: self.writer.last_checkpoint(),
                row_cache: self.row_cache.gauges(),
            }),
        }
    }

    async fn close(&self) {
        self.writer.stop().await;
    }
}
