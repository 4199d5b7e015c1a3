//! `sessiond backup` on SQLite: a copy of the database as of one moment,
//! taken with SQLite's online backup API while sessiond goes on serving.
//!
//! The copy reads one snapshot: a read transaction is held from the first
//! page to the last. In WAL mode, which sessiond uses, a reader never blocks
//! the writer, so writes go on meanwhile. Without that transaction SQLite
//! would start the copy over after every write of another process, and under
//! steady writes it would never finish. The price is the log: no checkpoint
//! can move pages past the snapshot, so the `-wal` file grows while the
//! backup runs and is reset after it (the server may warn that it cannot
//! checkpoint meanwhile).
//!
//! The copy goes to a temporary file beside the destination, created
//! readable by its owner only. It is switched out of WAL mode (a backup is
//! one self-contained file), checked with `PRAGMA integrity_check`, synced,
//! and only then moved to the destination: a backup cut short never looks
//! complete.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::permissions::create_private;

/// Pages copied per step: 4 MiB of 4 KiB pages, a few milliseconds of
/// disk reads, so that progress is seen often and a step is short.
const PAGES_PER_STEP: i32 = 1024;

/// Pause between steps. Writers are not blocked by the copy (WAL mode); the
/// pause leaves the disk to the server now and then, at the cost of a
/// snapshot held a little longer (1 GiB costs about half a second more).
const STEP_PAUSE: Duration = Duration::from_millis(2);

/// How often a long backup logs its progress.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Lines of `PRAGMA integrity_check` quoted when the copy fails it.
const INTEGRITY_LINES_QUOTED: usize = 5;

/// What a finished backup holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copied {
    /// Rows of `django_session` in the copy.
    pub(crate) sessions: u64,
    /// The size of the backup file.
    pub(crate) bytes: u64,
}

/// Why an SQLite backup failed. The caller names the store and the
/// destination.
#[derive(Debug, thiserror::Error)]
pub enum SqliteBackupError {
    #[error("the file exists; pass --force to replace it")]
    DestinationExists,
    #[error("the destination is a directory; give the path of the backup file to write")]
    DestinationIsDirectory,
    #[error("the directory {0} does not exist; create it or choose another destination")]
    MissingDirectory(PathBuf),
    #[error("the destination is the database itself; choose another file")]
    DestinationIsSource,
    #[error("cannot inspect {path}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the database file {0} does not exist, so there is nothing to back up; check --store (SESSIOND_STORE)"
    )]
    MissingSource(PathBuf),
    #[error("cannot read the database; check that this user may read it")]
    Open(#[source] rusqlite::Error),
    #[error("the database has no django_session table; is --store the database sessiond serves?")]
    NotSessiond(#[source] rusqlite::Error),
    #[error("cannot create the temporary file {path}; check that its directory is writable")]
    CreateTemporary {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy the database")]
    Copy(#[source] rusqlite::Error),
    #[error("the copy fails SQLite's integrity check ({0}); the database itself may be damaged")]
    Damaged(String),
    #[error("cannot move the finished copy into place")]
    Finish(#[source] io::Error),
}

/// Copies the SQLite database at `source` to the new file `dest` (replacing
/// it only with `force`), waiting up to `timeout` for locks. Blocking.
pub(crate) fn back_up(
    source: &Path,
    dest: &Path,
    force: bool,
    timeout: Duration,
) -> Result<Copied, SqliteBackupError> {
    check_destination(source, dest, force)?;
    if !source.exists() {
        return Err(SqliteBackupError::MissingSource(source.to_owned()));
    }
    // Never created. Read-write only so that, as the last connection to
    // close, it removes the -wal and -shm files it opened; SQLite falls back
    // to reading for a user that may only read the file.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(SqliteBackupError::Open)?;
    src.busy_timeout(timeout).map_err(SqliteBackupError::Open)?;
    warn_unless_wal(&src);
    let snapshot = src
        .unchecked_transaction()
        .map_err(SqliteBackupError::Open)?;
    // The first read begins the snapshot the copy is taken from.
    snapshot
        .query_row("SELECT EXISTS (SELECT 1 FROM django_session)", [], |_| {
            Ok(())
        })
        .map_err(|err| match &err {
            rusqlite::Error::SqliteFailure(_, Some(message))
                if message.contains("no such table") =>
            {
                SqliteBackupError::NotSessiond(err)
            }
            _ => SqliteBackupError::Open(err),
        })?;

    let partial = Partial::create(dest)?;
    let mut copy = Connection::open_with_flags(
        &partial.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(SqliteBackupError::Copy)?;
    let long = copy_pages(&snapshot, &mut copy, timeout)?;
    drop(snapshot);
    drop(src);

    if long {
        // The check reads the whole copy too: on a long run, say so.
        tracing::info!("backup copied; checking its integrity");
    }
    check_copy(&copy)?;
    let sessions = copy
        .query_row("SELECT count(*) FROM django_session", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(SqliteBackupError::Copy)?;
    copy.close()
        .map_err(|(_, err)| SqliteBackupError::Copy(err))?;
    let bytes = partial.sync()?;
    partial.move_to(dest, force)?;
    Ok(Copied {
        sessions: u64::try_from(sessions).unwrap_or_default(),
        bytes,
    })
}

/// Refuses a destination that is a directory, the database itself, in a
/// missing directory, or (without `force`) an existing file.
fn check_destination(source: &Path, dest: &Path, force: bool) -> Result<(), SqliteBackupError> {
    if dest.file_name().is_none() {
        return Err(SqliteBackupError::DestinationIsDirectory);
    }
    match std::fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => Err(SqliteBackupError::DestinationIsDirectory),
        Ok(_) if !force => Err(SqliteBackupError::DestinationExists),
        Ok(meta) => match std::fs::metadata(source) {
            Ok(src) if src.dev() == meta.dev() && src.ino() == meta.ino() => {
                Err(SqliteBackupError::DestinationIsSource)
            }
            _ => Ok(()),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let directory = directory_of(dest);
            if directory.is_dir() {
                Ok(())
            } else {
                Err(SqliteBackupError::MissingDirectory(directory.to_owned()))
            }
        }
        Err(source) => Err(SqliteBackupError::Inspect {
            path: dest.to_owned(),
            source,
        }),
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A database that is not in WAL mode (one a Django app created and sessiond
/// never served) keeps its writers waiting while it is read.
fn warn_unless_wal(conn: &Connection) {
    if let Ok(mode) = conn.query_row("PRAGMA journal_mode", [], |row| row.get::<_, String>(0))
        && !mode.eq_ignore_ascii_case("wal")
    {
        tracing::warn!(
            journal_mode = %mode,
            "the database is not in WAL mode: other processes cannot write to it until the backup ends"
        );
    }
}

/// Copies every page of `from`'s snapshot into `to`, a step at a time,
/// logging progress now and then; says whether it did (a long copy).
fn copy_pages(
    from: &Connection,
    to: &mut Connection,
    timeout: Duration,
) -> Result<bool, SqliteBackupError> {
    let backup = Backup::new(from, to).map_err(SqliteBackupError::Copy)?;
    let mut last_report = Instant::now();
    let mut reported = false;
    let mut busy_since: Option<Instant> = None;
    loop {
        match backup
            .step(PAGES_PER_STEP)
            .map_err(SqliteBackupError::Copy)?
        {
            StepResult::Done => return Ok(reported),
            StepResult::More => busy_since = None,
            // The destination is this process's own file and the snapshot
            // is held, so a lock is a passing event; past the store timeout
            // it is not.
            _ => {
                let since = *busy_since.get_or_insert_with(Instant::now);
                if since.elapsed() > timeout {
                    return Err(SqliteBackupError::Copy(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!(
                            "the database stayed locked for {timeout:?} (see --store-timeout)"
                        )),
                    )));
                }
            }
        }
        if last_report.elapsed() >= PROGRESS_INTERVAL {
            last_report = Instant::now();
            reported = true;
            let progress = backup.progress();
            let total = i64::from(progress.pagecount);
            let copied = total - i64::from(progress.remaining);
            tracing::info!(
                pages_copied = copied,
                pages_total = total,
                percent = copied * 100 / total.max(1),
                "backup in progress"
            );
        }
        std::thread::sleep(STEP_PAUSE);
    }
}

/// Makes the copy one self-contained file and checks it.
fn check_copy(copy: &Connection) -> Result<(), SqliteBackupError> {
    // The pages carry the source's WAL mode; a backup is easier to read
    // (read-only media, another machine) as one file, and sessiond switches
    // a restored file back to WAL when it opens it.
    copy.query_row("PRAGMA journal_mode = DELETE", [], |row| {
        row.get::<_, String>(0)
    })
    .map_err(SqliteBackupError::Copy)?;
    let mut statement = copy
        .prepare("PRAGMA integrity_check")
        .map_err(SqliteBackupError::Copy)?;
    let lines = statement
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(SqliteBackupError::Copy)?
        .take(INTEGRITY_LINES_QUOTED)
        .collect::<Result<Vec<_>, _>>()
        .map_err(SqliteBackupError::Copy)?;
    if lines == ["ok"] {
        Ok(())
    } else {
        Err(SqliteBackupError::Damaged(lines.join("; ")))
    }
}

/// The temporary file a backup is written to, beside its destination;
/// removed, with its rollback journal, unless it was moved into place.
struct Partial {
    path: PathBuf,
    moved: bool,
}

impl Partial {
    /// Creates `DEST.partial-PID`, readable by its owner only.
    fn create(dest: &Path) -> Result<Self, SqliteBackupError> {
        let mut name = dest.file_name().map(OsString::from).unwrap_or_default();
        name.push(format!(".partial-{}", std::process::id()));
        let path = dest.with_file_name(name);
        let refuse = |source| SqliteBackupError::CreateTemporary {
            path: path.clone(),
            source,
        };
        // Left by an earlier backup of a process with the same id, cut short.
        remove_if_present(&path).map_err(refuse)?;
        create_private(&path).map_err(refuse)?;
        Ok(Self { path, moved: false })
    }

    /// Puts the file's content on disk; returns its size.
    fn sync(&self) -> Result<u64, SqliteBackupError> {
        let file = File::open(&self.path).map_err(SqliteBackupError::Finish)?;
        file.sync_all().map_err(SqliteBackupError::Finish)?;
        let meta = file.metadata().map_err(SqliteBackupError::Finish)?;
        Ok(meta.len())
    }

    /// Moves the file to `dest`, replacing what is there only with
    /// `force`, and syncs the directory so that the new name lasts.
    fn move_to(mut self, dest: &Path, force: bool) -> Result<(), SqliteBackupError> {
        if force {
            std::fs::rename(&self.path, dest).map_err(SqliteBackupError::Finish)?;
        } else {
            // A link never replaces a file that appeared meanwhile.
            match std::fs::hard_link(&self.path, dest) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(SqliteBackupError::DestinationExists);
                }
                // A file system without hard links: check, then rename.
                Err(_) if dest.exists() => return Err(SqliteBackupError::DestinationExists),
                Err(_) => std::fs::rename(&self.path, dest).map_err(SqliteBackupError::Finish)?,
            }
        }
        self.moved = true;
        let _ = std::fs::remove_file(&self.path);
        File::open(directory_of(dest))
            .and_then(|directory| directory.sync_all())
            .map_err(SqliteBackupError::Finish)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.moved {
            return;
        }
        let mut journal = self.path.as_os_str().to_owned();
        journal.push("-journal");
        for path in [self.path.as_path(), Path::new(&journal)] {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(path: &Path, rows: usize) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY, session_data text NOT NULL, expire_date datetime NOT NULL);",
        )
        .unwrap();
        for at in 0..rows {
            conn.execute(
                "INSERT INTO django_session VALUES (?1, ?2, '2999-01-01 00:00:00')",
                (format!("key{at:08}"), "x".repeat(2000)),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_copy_of_several_steps_holds_every_row_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("db"), dir.path().join("copy"));
        // About 2 KiB a row: several steps of PAGES_PER_STEP.
        database(&source, 5000);
        let copied = back_up(&source, &dest, false, Duration::from_secs(5)).unwrap();
        assert_eq!(copied.sessions, 5000);
        assert_eq!(copied.bytes, std::fs::metadata(&dest).unwrap().len());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert!(
            names
                .iter()
                .all(|name| !name.to_string_lossy().contains("partial")),
            "{names:?}"
        );
        let conn = Connection::open(&dest).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
    }

    #[test]
    fn a_database_without_the_session_table_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("other"), dir.path().join("copy"));
        Connection::open(&source)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let err = back_up(&source, &dest, false, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, SqliteBackupError::NotSessiond(_)), "{err:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_database_itself_is_never_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("db");
        database(&source, 1);
        let err = back_up(&source, &source, true, Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(err, SqliteBackupError::DestinationIsSource),
            "{err:?}"
        );
    }
}
