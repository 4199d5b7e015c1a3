//! Opening the database file: checks that explain what is wrong with a
//! path before SQLite fails on it, and the settings of every read-write
//! connection.

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::Synchronous;
use crate::permissions::{create_private, warn_if_others_can_read};
use crate::store::kit::OpenFailure;

/// The files SQLite keeps beside the database in WAL mode.
const COMPANION_SUFFIXES: [&str; 2] = ["-wal", "-shm"];

/// Creates the database file readable by its owner only, if it is missing,
/// before SQLite opens it: SQLite gives its `-wal` and `-shm` files the
/// database file's mode, so none of the three is ever readable by others.
/// Warns about existing ones that are.
pub(super) fn keep_private(path: &Path) -> Result<(), OpenFailure> {
    create_private(path).map_err(|err| {
        OpenFailure::unusable_because(
            "the database file cannot be created; check that its directory is writable",
            err,
        )
    })?;
    warn_if_others_can_read(path, "the SQLite database file");
    for suffix in COMPANION_SUFFIXES {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        warn_if_others_can_read(Path::new(&companion), "an SQLite -wal or -shm file");
    }
    Ok(())
}

/// Refuses paths that SQLite would fail on with a vaguer message, or that it
/// would silently accept although the operator asked for a read-only file.
pub(super) fn check_path(path: &Path) -> Result<(), OpenFailure> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(OpenFailure::unusable(
            "the path is a directory; give the path of a database file, e.g. sqlite://sessiond.sqlite3",
        )),
        Ok(meta) if meta.permissions().readonly() => Err(OpenFailure::unusable(
            "the database file is read-only; sessiond writes to it, so make it writable (chmod u+w) or choose another file",
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
                Err(OpenFailure::unusable(format!(
                    "the directory {} does not exist; create it or choose another path",
                    parent.display()
                )))
            }
        }
        Err(err) => Err(OpenFailure::unusable_because(
            "the database file cannot be read; fix its permissions or choose another path",
            err,
        )),
    }
}

/// Opens a read-write connection in WAL mode with the busy timeout and the
/// `synchronous` setting.
pub(super) fn open_read_write(
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

/// Page cache of each read connection: 16 MiB (SQLite's default is 2 MiB).
/// Each serving thread takes an idle connection for each burst of Loads,
/// and the pool hands back the one returned last, so the same few serve
/// most Loads and a larger cache keeps a read-mostly store's hot pages in
/// memory; it is filled only as far as the database is large, and emptied
/// whenever a commit changes the database. Larger pays on a file that then fits: on
/// the benchmark's 29 MB file, 64 MiB served 6–8 % more Loads than 16, and
/// 2 MiB 9 % fewer (four interleaved rounds); but every read connection
/// may fill its own, so the default stays at a size any sidecar can spare.
const READ_CACHE_KIB: i64 = 16 * 1024;

/// The read-only connections of a store.
pub(super) type Readers = r2d2::Pool<SqliteConnectionManager>;

/// A pool of `size` read-only connections to `path`. They do not wait for
/// locks (see `loads`); a caller that may wait sets the timeout itself.
pub(super) fn read_pool(path: &Path, size: u32, timeout: Duration) -> Result<Readers, r2d2::Error> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(|conn| {
            // A negative size is in KiB. The pragma reads the schema, so it
            // runs while the connection still waits for locks as opened.
            conn.pragma_update(None, "cache_size", -READ_CACHE_KIB)?;
            conn.busy_timeout(Duration::ZERO)
        });
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(size))
        // A local file does not go stale: no statement per checkout to test
        // it, and no connection closed for its age, which would leave
        // moments with none open.
        .test_on_check_out(false)
        .max_lifetime(None)
        .idle_timeout(None)
        .connection_timeout(timeout)
        .build(manager)
}

/// Logs the `synchronous` setting the writer's connection reports: what
/// every acknowledged write gets, rather than what was asked for.
pub(super) fn log_synchronous(conn: &Connection) {
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

/// Says what to do about a failure to open the database, keeping SQLite's
/// error as the cause.
pub(super) fn explain_open_error(err: rusqlite::Error, timeout: Duration) -> OpenFailure {
    let advice = match err.sqlite_error_code() {
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
        _ => return OpenFailure::driver(err),
    };
    OpenFailure::unusable_because(advice, err)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
