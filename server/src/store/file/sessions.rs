//! The session directory and the blocking operations on it: reading,
//! writing and removing session files under their keys' locks, and the
//! conversion between a file's modification time and its session's expiry.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};

use super::directory;
use super::errors::FileError;
use super::locks::{self, KeyLocks};
use super::url::FileUrl;
use super::write::{self, TempFile};
use crate::permissions::warn_if_others_can_read;
use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};
use crate::store::kit::{OpenFailure, StoreError};

/// How old (since its last status change) a temporary file must be before
/// `ClearExpired` takes it for the leftover of a crashed write: a write
/// takes milliseconds, so an hour leaves no doubt even on a stalled disk.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// The directory and everything the blocking operations share.
#[derive(Debug)]
pub(super) struct Sessions {
    dir: PathBuf,
    /// Kept open to flush the directory after a file appears or goes.
    dir_handle: File,
    prefix: String,
    /// `--session-age`: a file's modification time is its session's expiry
    /// minus this age.
    session_age: TimeDelta,
    locks: KeyLocks,
    closed: AtomicBool,
}

impl Sessions {
    /// Opens the session directory `url` names, which must exist and be
    /// writable, on a file system that keeps file times to the microsecond.
    pub(super) fn open(url: &FileUrl, session_age: Duration) -> Result<Self, OpenFailure> {
        directory::check_dir(&url.dir)?;
        directory::probe(&url.dir)?;
        // Session files are the owner's alone (see `write`); their names
        // are session keys, so a listing is as sensitive as their content.
        warn_if_others_can_read(
            &url.dir,
            "the session directory (its file names are session keys)",
        );
        let dir_handle = File::open(&url.dir).map_err(|err| {
            OpenFailure::unusable_because(
                "the directory cannot be opened; fix its permissions or choose another",
                err,
            )
        })?;
        Ok(Self {
            dir: url.dir.clone(),
            dir_handle,
            prefix: url.prefix.clone(),
            session_age: TimeDelta::from_std(session_age).unwrap_or(TimeDelta::MAX),
            locks: KeyLocks::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// Refuses further writes, then waits for the writes under way.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.locks.wait_for_writers();
    }

    /// The path of `key`'s file: inside the directory, since a key is only
    /// ever `[a-z0-9]` (the rule [`SessionKey`] checked).
    pub(super) fn path(&self, key: &SessionKey) -> PathBuf {
        self.dir.join(self.file_name(key))
    }

    fn file_name(&self, key: &SessionKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// Takes `key`'s write lock, unless the store is closed.
    pub(super) fn lock(&self, key: &SessionKey) -> Result<locks::Held<'_>, StoreError> {
        let held = self.locks.lock(key);
        self.check_open()?;
        Ok(held)
    }

    pub(super) fn lock_pair(
        &self,
        a: &SessionKey,
        b: &SessionKey,
    ) -> Result<locks::Held<'_>, StoreError> {
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
    pub(super) fn read(&self, path: &Path) -> Result<Option<Record>, StoreError> {
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

    /// Whether the directory is still there and this store open.
    pub(super) fn check_dir(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(FileError::Closed.into());
        }
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(FileError::NotADirectory.into()),
            Err(err) => Err(FileError::Directory(err).into()),
        }
    }

    /// Whether `key` has a file, expired or not.
    pub(super) fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        match fs::symlink_metadata(self.path(key)) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(FileError::Read(err).into()),
        }
    }

    /// Writes `record` as the new file of `key`, which must not exist.
    pub(super) fn create(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let temp = self.write_temp(key, record)?;
        match temp.create_as(&self.path(key)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(StoreError::AlreadyExists)
            }
            Err(err) => Err(FileError::Move(err).into()),
        }
    }

    /// Writes `record` over the file of `key`.
    pub(super) fn replace(&self, key: &SessionKey, record: &Record) -> Result<(), StoreError> {
        let temp = self.write_temp(key, record)?;
        temp.replace(&self.path(key))
            .map_err(|err| FileError::Move(err).into())
    }

    fn write_temp(&self, key: &SessionKey, record: &Record) -> Result<TempFile, StoreError> {
        let mtime = self
            .mtime_for(record.expire_date)
            .ok_or(StoreError::Invalid(InvalidInput::ExpireDateNotStorable))?;
        let name = self.file_name(key);
        Ok(TempFile::write(
            &self.dir,
            &name,
            record.session_data.as_bytes(),
            mtime,
        )?)
    }

    /// Removes the file at `path`; false if there was none.
    pub(super) fn remove(&self, path: &Path) -> Result<bool, StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(FileError::Remove(err).into()),
        }
    }

    /// Makes the names created, replaced or removed so far durable.
    pub(super) fn sync_dir(&self) -> Result<(), StoreError> {
        self.dir_handle
            .sync_all()
            .map_err(|err| FileError::SyncDir(err).into())
    }

    /// The modification time that stands for `expire_date`.
    fn mtime_for(&self, expire_date: ExpireDate) -> Option<SystemTime> {
        let instant = expire_date.instant().checked_sub_signed(self.session_age)?;
        to_system_time(instant)
    }

    /// The expiry a file's modification time stands for.
    fn expire_date_of(&self, mtime: SystemTime) -> Result<ExpireDate, FileError> {
        from_system_time(mtime)
            .and_then(|instant| instant.checked_add_signed(self.session_age))
            .and_then(|instant| ExpireDate::new(instant).ok())
            .ok_or(FileError::TimeOutOfRange)
    }

    pub(super) fn clear_expired_batch(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<u64, StoreError> {
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
                let path = self.path(&key);
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
        let url = FileUrl::parse(&format!("file://{}", dir.display())).unwrap();
        Sessions::open(&url, crate::store::kit::DEFAULT_SESSION_AGE).unwrap()
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
            // Only a SessionKey becomes a path, and none of these is one.
            assert!(SessionKey::parse(bad).is_err(), "{bad:?}");
        }
        let key = SessionKey::parse("abcdefgh1234").unwrap();
        assert_eq!(
            sessions.path(&key),
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
