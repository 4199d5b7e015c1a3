//! What can go wrong on disk, and what it means to callers.

use std::io;

use super::write::WriteFailure;
use crate::session::InvalidInput;
use crate::store::kit::StoreError;

/// What went wrong on disk. Messages never name the file: its name holds
/// the session key.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
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
    #[error("cannot reach the session directory")]
    Directory(#[source] io::Error),
    #[error("the session directory has been replaced by something other than a directory")]
    NotADirectory,
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
            FileError::NotAFile | FileError::NotADirectory => return Self::Internal(err.into()),
            FileError::TimeOutOfRange => return Self::Corrupt(err.into()),
            FileError::Read(io)
            | FileError::Write(io)
            | FileError::Move(io)
            | FileError::Remove(io)
            | FileError::SyncDir(io)
            | FileError::List(io)
            | FileError::Directory(io) => io.kind(),
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
