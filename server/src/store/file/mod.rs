//! The `file://DIR` engine: Django's file session engine. Each session is
//! one file in `DIR`, named as Django names it, `<prefix><key>` (the prefix
//! is Django's `SESSION_COOKIE_NAME`, `sessionid` unless the URL says
//! `?prefix=...`), holding the `session_data` text exactly as the codec
//! produced it, which is what Django's `backends.file` writes.
//!
//! # Expiry, and what a Django app on the same directory sees
//!
//! A file has no room for an expiry beside its data, so the expiry lives in
//! the file's modification time. Django's file engine reads a session's
//! expiry as `_session_expiry` from the decoded data when that is set, and
//! otherwise as *mtime + `SESSION_COOKIE_AGE`*. This engine therefore writes
//! *mtime = expire_date − cookie_age* and reads *expire_date = mtime +
//! cookie_age*, where `cookie_age` comes from the URL (`?cookie_age=SECONDS`,
//! default Django's 1 209 600). With the same cookie age on both sides:
//!
//! - Django computes, for a file sessiond wrote, the expiry sessiond was
//!   given; sessiond computes, for a file Django wrote, the expiry Django
//!   meant (Django's mtime is the time of its save). Both agree on which
//!   sessions load, and Django's `clearsessions` and sessiond's
//!   `ClearExpired` remove the same files.
//! - A session whose data holds `_session_expiry` is read by Django from that
//!   value, by sessiond from the file time. For sessions saved through
//!   sessiond's client these are the same instant (the client derives
//!   `expire_date` from `_session_expiry` as Django does). For sessions Django
//!   saved after `set_expiry(...)` they differ: sessiond sees mtime + cookie
//!   age. An integer `_session_expiry` makes Django's file engine treat the
//!   session as never expiring (its `get_expiry_age` returns the integer
//!   unchanged); sessiond expires it at mtime + cookie age.
//! - The data is shared only if it is encoded as Django encodes it (a codec
//!   that signs with Django's `SECRET_KEY`). Django reads plain `json` data as
//!   a corrupted, empty session; the expiry rules above still hold.
//! - `?cookie_age=0` makes the modification time the expiry itself, for a
//!   directory no Django app reads (Django would then add its own cookie age).
//! - Django's `load()` deletes an expired file it reads; sessiond's Load never
//!   writes, as with every engine.
//!
//! Times are kept exactly: `open` refuses a file system that does not keep
//! file times to the microsecond (the precision of `expire_date`), so a
//! session expiring exactly `now` is neither loaded nor purged, as in the
//! database engines; and an expiry the file system cannot hold (ext4 keeps
//! 1901 to 2446, after the offset) is refused as an invalid `expire_date`
//! rather than silently clamped, which Linux would do.
//!
//! # Atomicity and durability
//!
//! Every write goes to a temporary file `.<prefix><key>.tmp-<random>` in
//! `DIR` (the dot keeps it from looking like a session to sessiond or
//! Django), which is flushed to disk and then moved into place, after which
//! the directory is flushed too: an acknowledged write survives a crash, and
//! a reader sees the old file or the new one, never a torn one. An insert
//! moves the file with `link(2)`, which fails if the name exists, so exactly
//! one of several concurrent inserts of a key wins, in any process (Django's
//! own `O_EXCL` create included), and the file never appears empty. An
//! update moves it with `rename(2)`, only after checking that the session
//! still exists.
//!
//! # Concurrency: one sessiond per directory
//!
//! Inside this process, writers of one key exclude each other with a per-key
//! lock (see `locks`), taken on a blocking thread and never held across an
//! `.await`: a patch or a cycle is an atomic read-modify-write, and an update
//! cannot bring back a file deleted meanwhile. Between processes there is no
//! lock, as in Django's file engine (ticket #8616): two sessiond processes,
//! or sessiond and Django, writing one key at the same moment may lose one of
//! two concurrent patches, and an update racing a delete in the other process
//! may bring the session back. Inserts stay exclusive across processes. An
//! `flock` would not close that gap: Django takes no lock, and a lock on the
//! session file guards an inode that the next rename replaces, so it would
//! need a second, long-lived lock file per session. Run one sessiond per
//! directory; several replicas need a shared database engine.
//! `--store-timeout` has nothing to bound here: the only locks are this
//! process's own, each held for the length of one file write.
//!
//! `ClearExpired` lists the directory, skipping anything that is not
//! `<prefix>` followed by a valid key (Django's `_out_` temporary files,
//! other apps' files), and removes expired files under their key's lock after
//! checking their time again. Each batch lists the directory until it has
//! found `limit` expired files, which suits the tens of thousands of files a
//! directory handles well. It also removes temporary files that a crash left
//! behind, once they are [`STALE_TEMP_AGE`] old.
//!
//! Session files get mode 0600; `DIR` should belong to sessiond's user with
//! mode 0700, since whoever can write there can plant sessions.

mod directory;
mod locks;
mod url;
mod write;

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{Migration, OpenFailure, Patcher, SessionStore, StoreError};
use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};
use locks::KeyLocks;
use write::{TempFile, WriteFailure};

pub use url::{DEFAULT_COOKIE_AGE, DEFAULT_PREFIX, FileUrl, FileUrlError};

/// How old (since its last status change) a temporary file must be before
/// `ClearExpired` takes it for the leftover of a crashed write: a write
/// takes milliseconds, so an hour leaves no doubt even on a stalled disk.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// What went wrong on disk. Messages never name the file: its name holds
/// the session key.
#[derive(Debug, thiserror::Error)]
enum FileError {
    #[error("the file store is closed")]
    Closed,
    #[error("cannot read a session file")]
    Read(#[source] io::Error),
    #[error("cannot write a session file")]
    Write(#[source] io::Error),
    #[error("cannot move a session file into place")]
    Move(#[source] io::Error),
    #[error("cannot remove a session file")]
    Remove(#[source] io::Error),
    #[error("cannot flush the session directory to disk")]
    SyncDir(#[source] io::Error),
    #[error("cannot list the session directory")]
    List(#[source] io::Error),
    #[error("a session's file name is taken by something other than a regular file")]
    NotAFile,
    #[error("a session file's modification time is outside the range of expiry dates")]
    TimeOutOfRange,
}

impl From<FileError> for StoreError {
    /// Full disks, read-only mounts, lost permissions and vanished
    /// directories may be fixed while sessiond runs: UNAVAILABLE. Things
    /// that are not files where sessions should be are faults: INTERNAL.
    fn from(err: FileError) -> Self {
        let io_kind = match &err {
            FileError::Closed => return Self::Unavailable(err.into()),
            FileError::NotAFile | FileError::TimeOutOfRange => return Self::Internal(err.into()),
            FileError::Read(io)
            | FileError::Write(io)
            | FileError::Move(io)
            | FileError::Remove(io)
            | FileError::SyncDir(io)
            | FileError::List(io) => io.kind(),
        };
        match io_kind {
            io::ErrorKind::IsADirectory
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidFilename
            | io::ErrorKind::Unsupported => Self::Internal(err.into()),
            _ => Self::Unavailable(err.into()),
        }
    }
}

impl From<WriteFailure> for StoreError {
    fn from(failure: WriteFailure) -> Self {
        match failure {
            WriteFailure::Io(err) => FileError::Write(err).into(),
            WriteFailure::TimeNotKept => Self::Invalid(InvalidInput::ExpireDateNotStorable),
        }
    }
}

/// The file engine.
#[derive(Debug)]
pub struct FileStore {
    sessions: Arc<Sessions>,
}

/// The directory and everything the blocking operations share.
#[derive(Debug)]
struct Sessions {
    dir: PathBuf,
    /// Kept open to flush the directory after a file appears or goes.
    dir_handle: File,
    prefix: String,
    cookie_age: TimeDelta,
    locks: KeyLocks,
    closed: AtomicBool,
}

impl FileStore {
    /// Opens the session directory `url` names, which must exist and be
    /// writable, on a file system that keeps file times to the microsecond.
    /// Blocking.
    pub(super) fn open(url: &FileUrl) -> Result<Self, OpenFailure> {
        directory::check_dir(&url.dir)?;
        directory::probe(&url.dir)?;
        let dir_handle = File::open(&url.dir).map_err(|err| {
            OpenFailure::Unusable(format!(
                "the directory cannot be opened ({err}); fix its permissions or choose another"
            ))
        })?;
        Ok(Self {
            sessions: Arc::new(Sessions {
                dir: url.dir.clone(),
                dir_handle,
                prefix: url.prefix.clone(),
                cookie_age: TimeDelta::seconds(url.cookie_age.into()),
                locks: KeyLocks::new(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Runs `op` on a blocking thread: file I/O must not stall the runtime.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Sessions) -> Result<T, StoreError> + Send + 'static,
    {
        let sessions = self.sessions.clone();
        tokio::task::spawn_blocking(move || op(&sessions))
            .await
            .map_err(|err| StoreError::Internal(err.into()))?
    }
}

#[async_trait]
impl SessionStore for FileStore {
    /// A directory of files has no schema.
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        Ok(Vec::new())
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let stored = sessions.read(&sessions.path(key.as_str())?)?;
            Ok(stored.filter(|record| record.expire_date.instant() > now))
        })
        .await
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(
            move |sessions| match fs::symlink_metadata(sessions.path(key.as_str())?) {
                Ok(_) => Ok(true),
                Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(err) => Err(FileError::Read(err).into()),
            },
        )
        .await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            sessions.create(&key, &record)?;
            sessions.sync_dir()
        })
        .await
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            let path = sessions.path(key.as_str())?;
            match fs::symlink_metadata(&path) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::NotFound);
                }
                Err(err) => return Err(FileError::Read(err).into()),
            }
            sessions.replace(&key, &record)?;
            sessions.sync_dir()
        })
        .await
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            let stored = sessions
                .read(&sessions.path(key.as_str())?)?
                .ok_or(StoreError::NotFound)?;
            let live = stored.expire_date.instant() > now;
            let session_data = patcher(live.then_some(stored.session_data))?;
            let record = Record {
                session_data,
                expire_date,
            };
            sessions.replace(&key, &record)?;
            sessions.sync_dir()
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.run(move |sessions| {
            let _held = sessions.lock(&key)?;
            let removed = sessions.remove(&sessions.path(key.as_str())?)?;
            if removed {
                sessions.sync_dir()?;
            }
            Ok(removed)
        })
        .await
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (old_key, new_key) = (old_key.clone(), new_key.clone());
        self.run(move |sessions| {
            let _held = sessions.lock_pair(&old_key, &new_key)?;
            let old_path = sessions.path(old_key.as_str())?;
            let session_data = match session_data {
                Some(data) => data,
                None => {
                    sessions
                        .read(&old_path)?
                        .filter(|record| record.expire_date.instant() > now)
                        .ok_or(StoreError::NotFound)?
                        .session_data
                }
            };
            let record = Record {
                session_data,
                expire_date,
            };
            sessions.create(&new_key, &record)?;
            if let Err(err) = sessions.remove(&old_path) {
                // Undo the new file so that a failed cycle changes nothing.
                let new_path = sessions.path(new_key.as_str())?;
                if let Err(undo) = fs::remove_file(new_path) {
                    tracing::error!(error = %undo, "a failed cycle_key left both the old and the new session file");
                }
                return Err(err);
            }
            sessions.sync_dir()
        })
        .await
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.run(move |sessions| sessions.clear_expired_batch(now, limit))
            .await
    }

    /// Refuses further writes, then waits for the writes under way.
    async fn close(&self) {
        self.sessions.closed.store(true, Ordering::SeqCst);
        let sessions = self.sessions.clone();
        let _ = tokio::task::spawn_blocking(move || sessions.locks.wait_for_writers()).await;
    }
}

impl Sessions {
    /// The path of `key`'s file. Keys are validated at the edge already; the
    /// alphabet is checked again here because a key becomes a path, and a
    /// path must never leave the directory.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(StoreError::Invalid(InvalidInput::KeyCharacters));
        }
        Ok(self.dir.join(self.file_name(key)))
    }

    fn file_name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Takes `key`'s write lock, unless the store is closed.
    fn lock(&self, key: &SessionKey) -> Result<locks::Held<'_>, StoreError> {
        let held = self.locks.lock(key);
        self.check_open()?;
        Ok(held)
    }

    fn lock_pair(&self, a: &SessionKey, b: &SessionKey) -> Result<locks::Held<'_>, StoreError> {
        let held = self.locks.lock_pair(a, b);
        self.check_open()?;
        Ok(held)
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(FileError::Closed.into());
        }
        Ok(())
    }

    /// The stored session at `path`, expired or not. The data and the time
    /// come from one open file, so a concurrent rename cannot mix two
    /// versions.
    fn read(&self, path: &Path) -> Result<Option<Record>, StoreError> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(FileError::Read(err).into()),
        };
        let meta = file.metadata().map_err(FileError::Read)?;
        if !meta.is_file() {
            return Err(FileError::NotAFile.into());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.read_to_end(&mut bytes).map_err(FileError::Read)?;
        // Django writes ASCII; anything else is corrupt, and the codec then
        // reads it as an empty session, as Django does.
        let session_data = String::from_utf8(bytes)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
        let mtime = meta.modified().map_err(FileError::Read)?;
        Ok(Some(Record {
            session_data,
            expire_date: self.expire_date_of(mtime)?,
        }))
    }

    /// Writes `record` as the new file of `key`, which must not exist.
    fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let temp = self.write_temp(key, record)?;
        match temp.create_as(&self.path(key.as_str())?) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists)
            }
            Err(err) => Err(FileError::Move(err).into()),
        }
    }

    /// Writes `record` over the file of `key`.
    fn replace(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let temp = self.write_temp(key, record)?;
        temp.replace(&self.path(key.as_str())?)
            .map_err(|err| FileError::Move(err).into())
    }

    fn write_temp(&self, key: &SessionKey, record: &Record) -> Result<TempFile, StoreError> {
        let mtime = self
            .mtime_for(record.expire_date)
            .ok_or(StoreError::Invalid(InvalidInput::ExpireDateNotStorable))?;
        let name = self.file_name(key.as_str());
        Ok(TempFile::write(
            &self.dir,
            &name,
            record.session_data.as_bytes(),
            mtime,
        )?)
    }

    /// Removes the file at `path`; false if there was none.
    fn remove(&self, path: &Path) -> Result<bool, StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(FileError::Remove(err).into()),
        }
    }

    /// Makes the names created, replaced or removed so far durable.
    fn sync_dir(&self) -> Result<(), StoreError> {
        self.dir_handle
            .sync_all()
            .map_err(|err| FileError::SyncDir(err).into())
    }

    /// The modification time that stands for `expire_date`.
    fn mtime_for(&self, expire_date: ExpireDate) -> Option<SystemTime> {
        let instant = expire_date.instant().checked_sub_signed(self.cookie_age)?;
        to_system_time(instant)
    }

    /// The expiry a file's modification time stands for.
    fn expire_date_of(&self, mtime: SystemTime) -> Result<ExpireDate, FileError> {
        from_system_time(mtime)
            .and_then(|instant| instant.checked_add_signed(self.cookie_age))
            .and_then(|instant| ExpireDate::new(instant).ok())
            .ok_or(FileError::TimeOutOfRange)
    }

    fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.check_open()?;
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(FileError::List)? {
            if removed >= limit {
                break;
            }
            let entry = entry.map_err(FileError::List)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if write::is_temp_name(&name, &self.prefix) {
                self.remove_if_stale(&entry.path());
                continue;
            }
            let Some(key) = name
                .strip_prefix(self.prefix.as_str())
                .and_then(|key| SessionKey::parse(key).ok())
            else {
                continue;
            };
            if self.is_expired(&entry.path(), now)? {
                let _held = self.lock(&key)?;
                // Checked again under the lock: an update may have renewed
                // the session since the listing.
                let path = self.path(key.as_str())?;
                if self.is_expired(&path, now)? && self.remove(&path)? {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    /// Whether `path` is a session file whose expiry is before `now`.
    fn is_expired(&self, path: &Path, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(FileError::Read(err).into()),
        };
        if !meta.is_file() {
            return Ok(false);
        }
        let mtime = meta.modified().map_err(FileError::Read)?;
        Ok(self.expire_date_of(mtime)?.instant() < now)
    }

    /// Removes a temporary file left by a crashed write. Its last status
    /// change (which no one can set) says how old it is; its modification
    /// time was set to the session's.
    fn remove_if_stale(&self, path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        let changed = DateTime::from_timestamp(meta.ctime(), 0).and_then(to_system_time);
        let stale = changed.is_some_and(|changed| {
            SystemTime::now()
                .duration_since(changed)
                .is_ok_and(|age| age >= STALE_TEMP_AGE)
        });
        if stale && let Err(err) = fs::remove_file(path) {
            tracing::warn!(error = %err, "cannot remove a stale temporary session file");
        }
    }
}

fn to_system_time(instant: DateTime<Utc>) -> Option<SystemTime> {
    let since_epoch = instant.signed_duration_since(DateTime::UNIX_EPOCH);
    match since_epoch.to_std() {
        Ok(after) => SystemTime::UNIX_EPOCH.checked_add(after),
        Err(_) => SystemTime::UNIX_EPOCH.checked_sub(since_epoch.abs().to_std().ok()?),
    }
}

fn from_system_time(time: SystemTime) -> Option<DateTime<Utc>> {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => DateTime::UNIX_EPOCH.checked_add_signed(TimeDelta::from_std(after).ok()?),
        Err(before) => {
            DateTime::UNIX_EPOCH.checked_sub_signed(TimeDelta::from_std(before.duration()).ok()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(dir: &Path) -> Sessions {
        Sessions {
            dir: dir.to_owned(),
            dir_handle: File::open(dir).unwrap(),
            prefix: DEFAULT_PREFIX.to_owned(),
            cookie_age: TimeDelta::seconds(DEFAULT_COOKIE_AGE.into()),
            locks: KeyLocks::new(),
            closed: AtomicBool::new(false),
        }
    }

    #[test]
    fn keys_that_could_leave_the_directory_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = sessions(dir.path());
        for bad in [
            "",
            "../../etc/passwd",
            "..",
            "abc/defgh",
            "/etc/passwd",
            "ABCDEFGHI",
            "abcdefgh\0",
            "abcd\\efgh",
            "abcdéfghi",
            "abcd.efgh",
        ] {
            let err = sessions.path(bad).unwrap_err();
            assert!(
                matches!(err, StoreError::Invalid(InvalidInput::KeyCharacters)),
                "{bad:?}: {err:?}"
            );
        }
        assert_eq!(
            sessions.path("abcdefgh1234").unwrap(),
            dir.path().join("sessionidabcdefgh1234")
        );
    }

    #[test]
    fn file_times_and_expiry_dates_convert_exactly_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = sessions(dir.path());
        for text in [
            "2026-01-01T12:00:00.250000Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1950-06-01T00:00:00.000001Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            let instant = DateTime::parse_from_rfc3339(text).unwrap().to_utc();
            let expire = ExpireDate::new(instant).unwrap();
            let mtime = sessions.mtime_for(expire).unwrap();
            assert_eq!(sessions.expire_date_of(mtime).unwrap(), expire, "{text}");
            assert_eq!(
                from_system_time(to_system_time(instant).unwrap()),
                Some(instant)
            );
        }
        let expire = ExpireDate::new(
            DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z")
                .unwrap()
                .to_utc(),
        )
        .unwrap();
        assert_eq!(
            sessions.mtime_for(expire).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            "the file time is the expiry minus Django's cookie age"
        );
    }
}
