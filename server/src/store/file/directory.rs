//! What a session directory must be, checked once at open: an existing,
//! writable directory on a file system that keeps file times to the
//! microsecond. Each refusal says what to do about it.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::write::{TempFile, WriteFailure};
use crate::store::kit::OpenFailure;

/// Refuses what is not a writable directory, with what to do about it.
pub(super) fn check_dir(dir: &Path) -> Result<(), OpenFailure> {
    match fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(OpenFailure::unusable(
            "the path is not a directory; file:// takes the directory that holds one file per session, e.g. file:///var/lib/sessiond",
        )),
        // Checked on the mode bits as well as by the probe, because root may
        // write into a directory whose owner made it read-only.
        Ok(meta) if meta.permissions().readonly() => Err(OpenFailure::unusable(
            "the directory is read-only; sessiond writes one file per session there, so make it writable (chmod u+w) or choose another",
        )),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(OpenFailure::unusable(
            "the directory does not exist; create it (mkdir -m 700) or choose another",
        )),
        Err(err) => Err(OpenFailure::unusable_because(
            "the directory cannot be read; fix its permissions or choose another",
            err,
        )),
    }
}

/// Writes, times and removes a probe file, so that a read-only mount, a
/// missing permission or a file system with coarse file times is refused at
/// start-up instead of failing every write later.
pub(super) fn probe(dir: &Path) -> Result<(), OpenFailure> {
    // Microsecond digits, the precision of an expiry, so a file system with
    // coarser times shows it. The probe is named like a temporary file, with
    // a leading dot, so it never looks like a session.
    let mtime = SystemTime::UNIX_EPOCH + Duration::new(1_767_225_600, 123_456_000);
    let name = format!("sessiond-probe{}", std::process::id());
    match TempFile::write(dir, &name, b"", mtime) {
        Ok(temp) => {
            drop(temp);
            Ok(())
        }
        Err(WriteFailure::TimeNotKept) => Err(OpenFailure::unusable(
            "the file system does not keep file times to the microsecond, which the file store needs to keep expiry exactly; choose a directory on ext4, xfs, btrfs or tmpfs",
        )),
        Err(WriteFailure::Io(err))
            if matches!(
                err.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(OpenFailure::unusable_because(
                "the directory is not writable; sessiond writes one file per session there, so fix its permissions or mount, or choose another",
                err,
            ))
        }
        Err(WriteFailure::Io(err)) => Err(OpenFailure::driver(err)),
    }
}
