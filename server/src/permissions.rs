//! Files that hold sessions or secrets belong to their owner: sessiond
//! creates them readable by the owner only, whatever the umask, and warns
//! at start-up about existing ones that every user of the machine can read.
//!
//! Group permissions are left alone: a Django app that shares the SQLite
//! file runs as another user of the same group.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Readable and writable by the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` as an empty file readable by its owner only, unless it
/// exists; says whether it created it.
pub fn create_private(path: &Path) -> io::Result<bool> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path);
    match created {
        // The umask can only take bits away from the mode asked for; set it
        // again so that the owner keeps both even under an odd umask.
        Ok(file) => set_private(&file).map(|()| true),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

fn set_private(file: &File) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE_MODE))
}

/// Warns when `path` exists and every user of the machine may read it
/// (or, for a directory, list it). `what` names it for the operator.
pub fn warn_if_others_can_read(path: &Path, what: &str) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "{what} is readable by every user of this machine; chmod o-rwx it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_files_are_the_owners_alone_and_existing_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private");
        assert!(create_private(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, PRIVATE_FILE_MODE);
        std::fs::write(&path, "kept").unwrap();
        assert!(!create_private(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept");
    }
}
