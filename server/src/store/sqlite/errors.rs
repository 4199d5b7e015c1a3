//! What SQLite's errors mean to callers: the one place they are sorted
//! into [`StoreError`]s.

use std::time::Duration;

use rusqlite::ErrorCode;

use crate::store::kit::{SchemaError, StoreError};

/// Whether the database was locked by another connection.
pub(super) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
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
pub(super) fn classify(err: rusqlite::Error, timeout: Duration) -> StoreError {
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
        // SQLite reports a missing table with a generic SQLITE_ERROR and
        // nothing but its message to tell it apart: the one SQLite error
        // recognised by its text.
        _ if err.to_string().contains("no such table") => StoreError::Schema(SchemaError::Missing),
        _ => StoreError::Internal(err.into()),
    }
}
