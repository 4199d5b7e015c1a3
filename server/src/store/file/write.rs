//! Durable, atomic file writes: a complete temporary file, flushed to disk,
//! then moved into place in one step, then the directory flushed.
//!
//! A reader therefore sees the old file or the new one, never a partial one;
//! a crash leaves at most a stray temporary file, never a torn session; and a
//! write is acknowledged only once both the file and its name are on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Creation attempts before giving up on finding an unused temporary name.
/// With 64 random bits a second attempt is already astronomically rare.
const MAX_TEMP_ATTEMPTS: u32 = 8;

/// The mode of session files: readable by their owner only, as Django's
/// `tempfile.mkstemp` leaves them. Sessions hold logins.
const SESSION_FILE_MODE: u32 = 0o600;

/// Marks the engine's temporary files: `.<prefix><key>.tmp-<random hex>`.
/// The leading dot keeps them from ever matching a session file name (a
/// prefix never starts with a dot), so neither sessiond nor Django takes
/// them for sessions.
pub(super) const TEMP_MARKER: &str = ".tmp-";

/// Why a temporary file could not be written.
#[derive(Debug)]
pub(super) enum WriteFailure {
    Io(io::Error),
    /// The file system stored another modification time than the one asked
    /// for (out of its range, or coarser than a microsecond).
    TimeNotKept,
}

impl From<io::Error> for WriteFailure {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// A temporary file in the session directory, removed when dropped unless it
/// was renamed into place.
#[derive(Debug)]
pub(super) struct TempFile {
    path: PathBuf,
    moved: bool,
}

impl TempFile {
    /// Writes `content` with modification time `mtime` to a new temporary
    /// file beside `name` in `dir`, and flushes it to disk.
    pub(super) fn write(
        dir: &Path,
        name: &str,
        content: &[u8],
        mtime: SystemTime,
    ) -> Result<Self, WriteFailure> {
        let (mut file, temp) = create_temp(dir, name)?;
        file.write_all(content)?;
        // After the write, which would otherwise set the time to now.
        file.set_modified(mtime)?;
        file.sync_all()?;
        // Linux clamps a time outside the file system's range without an
        // error (ext4 keeps 1901 to 2446), so check what was kept.
        if file.metadata()?.modified()? != mtime {
            return Err(WriteFailure::TimeNotKept);
        }
        Ok(temp)
    }

    /// Makes the file `target`, which must not exist: exactly one of several
    /// concurrent creators (in any process) succeeds, the others get
    /// `AlreadyExists`. The complete file appears at once, with no empty
    /// placeholder in between.
    pub(super) fn create_as(self, target: &Path) -> io::Result<()> {
        fs::hard_link(&self.path, target)
        // Dropping `self` removes the temporary name.
    }

    /// Replaces `target` (or creates it) with this file in one step.
    pub(super) fn replace(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.moved = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.moved
            && let Err(err) = fs::remove_file(&self.path)
        {
            tracing::warn!(error = %err, "cannot remove a temporary session file");
        }
    }
}

fn create_temp(dir: &Path, name: &str) -> io::Result<(File, TempFile)> {
    let mut attempt = 0;
    loop {
        let path = dir.join(format!(
            ".{name}{TEMP_MARKER}{:016x}",
            rand::random::<u64>()
        ));
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(SESSION_FILE_MODE)
            .open(&path);
        match created {
            Ok(file) => return Ok((file, TempFile { path, moved: false })),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                attempt += 1;
                if attempt >= MAX_TEMP_ATTEMPTS {
                    return Err(err);
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Whether `file_name` is one of the engine's temporary files for sessions
/// named with `prefix`.
pub(super) fn is_temp_name(file_name: &str, prefix: &str) -> bool {
    file_name
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(prefix))
        .is_some_and(|rest| rest.contains(TEMP_MARKER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_written_file_keeps_its_content_time_and_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_767_225_600, 123_456_000);
        let temp = TempFile::write(dir.path(), "sessionidabcdefgh", b"data", mtime).unwrap();
        let [name] = names(dir.path()).try_into().unwrap();
        assert!(name.starts_with(".sessionidabcdefgh.tmp-"), "{name}");
        assert!(is_temp_name(&name, "sessionid"));
        assert!(!is_temp_name(&name, "other"));
        assert!(!is_temp_name("sessionidabcdefgh", "sessionid"));

        let target = dir.path().join("sessionidabcdefgh");
        temp.create_as(&target).unwrap();
        assert_eq!(names(dir.path()), ["sessionidabcdefgh"]);
        let meta = fs::metadata(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");
        assert_eq!(meta.modified().unwrap(), mtime);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn failed_moves_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sessionidabcdefgh");
        fs::write(&target, "old").unwrap();
        let now = SystemTime::now();
        let temp = TempFile::write(dir.path(), "sessionidabcdefgh", b"new", now).unwrap();
        let err = temp.create_as(&target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(names(dir.path()), ["sessionidabcdefgh"]);
        assert_eq!(fs::read(&target).unwrap(), b"old");

        let occupied = dir.path().join("sessionidoccupied");
        fs::create_dir(&occupied).unwrap();
        fs::write(occupied.join("x"), "x").unwrap();
        let temp = TempFile::write(dir.path(), "sessionidoccupied", b"new", now).unwrap();
        assert!(temp.replace(&occupied).is_err());
        assert_eq!(
            names(dir.path()),
            ["sessionidabcdefgh", "sessionidoccupied"]
        );
    }
}
