//! The embedded default engine: one SQLite file holding Django's
//! `django_session` table, shareable with a Django app on the same file.
//!
//! Reads run on a pool of read-only connections. Writes go to a single writer
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
//! `expire_date` is stored as Django stores it on SQLite, as the text
//! `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC, and compared as text the same way,
//! so Django and sessiond agree on what has expired.

mod checkpoint;
mod schema;
mod url;
mod writer;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{Migration, OpenFailure, Patcher, SessionStore, StoreError, StoreOptions};
use crate::session::{ExpireDate, Record, SessionKey};
pub use url::{SqliteUrl, SqliteUrlError, Synchronous};
use writer::{WriteOp, WriteOutcome, Writer};

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Read connections kept open. Reads are short point lookups, so a few
/// connections keep both cores busy while others wait on I/O.
const DEFAULT_READERS: u32 = 8;

/// The SQLite engine.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    timeout: Duration,
    synchronous: Synchronous,
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file `url` names. Blocking.
    pub(super) fn open(url: &SqliteUrl, options: &StoreOptions) -> Result<Self, OpenFailure> {
        let (path, synchronous) = (url.path.as_path(), url.synchronous);
        check_path(path)?;
        let conn = open_read_write(path, options.timeout, synchronous)
            .map_err(|err| explain_open_error(err, options.timeout))?;
        log_synchronous(&conn);

        let timeout = options.timeout;
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            // Reads first try without waiting for locks; see `read`.
            .with_init(|conn| conn.busy_timeout(Duration::ZERO));
        let readers = r2d2::Pool::builder()
            .max_size(DEFAULT_READERS)
            .min_idle(Some(DEFAULT_READERS))
            // A local file does not go stale; checking every checkout would
            // run a statement per read.
            .test_on_check_out(false)
            .connection_timeout(timeout)
            .build(manager)
            .map_err(|err| OpenFailure::Driver(err.into()))?;

        Ok(Self {
            path: path.to_owned(),
            timeout,
            synchronous,
            readers,
            writer: Writer::spawn(conn, path, timeout, synchronous),
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

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let key = key.clone();
        let row = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT session_data, expire_date FROM django_session \
                     WHERE session_key = ?1 AND expire_date > ?2",
                )?
                .query_row((key.as_str(), to_django_text(now)), |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .optional()
            })
            .await?;
        let Some((session_data, expire_text)) = row else {
            return Ok(None);
        };
        let expire_date = from_django_text(&expire_text)?;
        Ok(Some(Record {
            session_data,
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
    ) -> Result<(), StoreError> {
        let op = WriteOp::Patch {
            key: key.clone(),
            patcher,
            expire_date,
            now,
        };
        self.writer.submit(op).await.map(|_| ())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        match self
            .writer
            .submit(WriteOp::Delete { key: key.clone() })
            .await?
        {
            WriteOutcome::Removed(count) => Ok(count > 0),
            WriteOutcome::Done => Ok(false),
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
            WriteOutcome::Done => Ok(0),
        }
    }

    async fn close(&self) {
        self.writer.stop().await;
    }
}

/// Refuses paths that SQLite would fail on with a vaguer message, or that it
/// would silently accept although the operator asked for a read-only file.
fn check_path(path: &Path) -> Result<(), OpenFailure> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(OpenFailure::Unusable(
            "the path is a directory; give the path of a database file, e.g. sqlite://sessiond.sqlite3".into(),
        )),
        Ok(meta) if meta.permissions().readonly() => Err(OpenFailure::Unusable(
            "the database file is read-only; sessiond writes to it, so make it writable (chmod u+w) or choose another file".into(),
        )),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if parent.is_dir() {
                Ok(())
            } else {
                Err(OpenFailure::Unusable(format!(
                    "the directory {} does not exist; create it or choose another path",
                    parent.display()
                )))
            }
        }
        Err(err) => Err(OpenFailure::Unusable(format!(
            "the database file cannot be read ({err}); fix its permissions or choose another path"
        ))),
    }
}

/// Opens a read-write connection in WAL mode with the busy timeout and the
/// `synchronous` setting.
fn open_read_write(
    path: &Path,
    timeout: Duration,
    synchronous: Synchronous,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(timeout)?;
    // journal_mode answers with the mode now in force; a database that cannot
    // switch (e.g. on a read-only medium) says so here instead of later.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some(format!(
                "cannot switch to WAL journal mode (still '{mode}')"
            )),
        ));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    Ok(conn)
}

/// Logs the `synchronous` setting the writer's connection reports: what
/// every acknowledged write gets, rather than what was asked for.
fn log_synchronous(conn: &Connection) {
    match conn.query_row("PRAGMA synchronous", [], |row| row.get::<_, i64>(0)) {
        Ok(number) => match Synchronous::from_pragma_number(number) {
            Some(mode) => tracing::debug!(synchronous = %mode, "sqlite writer connection open"),
            None => tracing::warn!(
                synchronous = number,
                "the sqlite writer connection runs with an unexpected synchronous setting"
            ),
        },
        Err(err) => tracing::warn!(
            error = %err,
            "cannot read the synchronous setting of the sqlite writer connection"
        ),
    }
}

fn explain_open_error(err: rusqlite::Error, timeout: Duration) -> OpenFailure {
    let reason = match err.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            "the file is not an SQLite database; choose a new path or an existing sessiond or Django database"
                .to_owned()
        }
        Some(ErrorCode::CannotOpen) => {
            "the database file cannot be opened or created; check that the path is a file in a writable directory"
                .to_owned()
        }
        Some(ErrorCode::ReadOnly) => {
            "the database is read-only (a read-only file or file system); sessiond needs to write to it"
                .to_owned()
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "the database is locked by another process (waited {timeout:?}, see --store-timeout); stop the other writer or try again"
        ),
        Some(ErrorCode::PermissionDenied) => {
            "permission denied; fix the file's permissions or choose another path".to_owned()
        }
        _ => return OpenFailure::Driver(err.into()),
    };
    OpenFailure::Unusable(format!("{reason} ({err})"))
}

/// The database was locked by another process for longer than the timeout.
#[derive(Debug, thiserror::Error)]
#[error("the database is locked by another process (waited {waited:?}, see --store-timeout)")]
struct Locked {
    waited: Duration,
    #[source]
    source: rusqlite::Error,
}

/// Sorts a driver error into what the caller can do about it.
fn classify(err: rusqlite::Error, timeout: Duration) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(Box::new(Locked {
                waited: timeout,
                source: err,
            }))
        }
        Some(
            ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::PermissionDenied,
        ) => StoreError::Unavailable(err.into()),
        _ if err.to_string().contains("no such table") => StoreError::Schema(
            "the django_session table does not exist; run `sessiond migrate` first".into(),
        ),
        _ => StoreError::Internal(err.into()),
    }
}

/// Django's text form of a UTC instant on SQLite: `str()` of a naive
/// datetime, with microseconds only when there are any.
///
/// Formatted field by field: every Load compares against this text of
/// `now`, and chrono's `format` parses its pattern anew on each call.
fn to_django_text(instant: DateTime<Utc>) -> String {
    let (date, time) = (instant.date_naive(), instant.time());
    let mut text = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second()
    );
    let micros = instant.timestamp_subsec_micros();
    if micros != 0 {
        // Past a leap second chrono counts up to 1_999_999 µs; Django never
        // writes one, so the fraction stays within six digits.
        let _ = write!(text, ".{:06}", micros.min(999_999));
    }
    text
}

/// Reads a stored `expire_date`: Django's form, or the ISO 8601 forms Django
/// also reads.
fn from_django_text(text: &str) -> Result<ExpireDate, StoreError> {
    let instant = match parse_django_form(text) {
        Some(instant) => instant,
        None => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .map(|naive| naive.and_utc())
            .or_else(|_| DateTime::parse_from_rfc3339(text).map(|date| date.with_timezone(&Utc)))
            .map_err(|err| StoreError::Internal(err.into()))?,
    };
    ExpireDate::new(instant).map_err(|err| StoreError::Internal(err.into()))
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]`, the form Django and sessiond write, read
/// without chrono's pattern interpreter (every Load reads one); `None` for
/// anything else, which the general parsers then try.
fn parse_django_form(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = bytes.get(range)?;
        digits.iter().try_fold(0u32, |value, &b| {
            b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if bytes.len() < 19 || separators.iter().any(|&(at, sep)| bytes[at] != sep) {
        return None;
    }
    let micros = match bytes.len() {
        19 => 0,
        21..=26 if bytes[19] == b'.' => {
            let fraction = number(20..bytes.len())?;
            fraction * 10u32.pow(26 - u32::try_from(bytes.len()).ok()?)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let time = chrono::NaiveTime::from_hms_micro_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        micros,
    )?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn expire_dates_are_written_as_django_writes_them() {
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00Z")),
            "2026-01-15 00:00:00"
        );
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00.123456Z")),
            "2026-01-15 00:00:00.123456"
        );
        assert_eq!(
            to_django_text(instant("2026-01-15T00:00:00.000001Z")),
            "2026-01-15 00:00:00.000001"
        );
        assert_eq!(
            to_django_text(instant("0005-03-04T05:06:07Z")),
            "0005-03-04 05:06:07"
        );
    }

    #[test]
    fn expire_dates_read_back_in_every_form_django_reads() {
        for (text, expected) in [
            ("2026-01-15 00:00:00", "2026-01-15T00:00:00Z"),
            ("2026-01-15 00:00:00.123456", "2026-01-15T00:00:00.123456Z"),
            ("2026-01-15T00:00:00Z", "2026-01-15T00:00:00Z"),
            ("2026-01-15T01:00:00+01:00", "2026-01-15T00:00:00Z"),
            ("2026-01-15 00:00:00.5", "2026-01-15T00:00:00.5Z"),
            ("2026-01-15 00:00:00.000001", "2026-01-15T00:00:00.000001Z"),
            ("0005-03-04 05:06:07", "0005-03-04T05:06:07Z"),
        ] {
            assert_eq!(
                from_django_text(text).unwrap().instant(),
                instant(expected),
                "{text}"
            );
        }
        for bad in [
            "yesterday",
            "2026-13-15 00:00:00",
            "2026-01-15 24:00:00",
            "2026-01-15 00:00:00.",
            "2026-01-15 0a:00:00",
            "2026-01-15 00:00:00 ",
            "",
        ] {
            assert!(from_django_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn read_write_connections_run_with_the_synchronous_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.sqlite3");
        for synchronous in [Synchronous::Normal, Synchronous::Full] {
            let conn = open_read_write(&path, Duration::from_secs(5), synchronous).unwrap();
            let number: i64 = conn
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap();
            assert_eq!(Synchronous::from_pragma_number(number), Some(synchronous));
        }
    }

    #[test]
    fn text_order_is_time_order() {
        let earlier = to_django_text(instant("2026-01-15T00:00:00Z"));
        let later = to_django_text(instant("2026-01-15T00:00:00.000001Z"));
        assert!(earlier < later);
    }
}
