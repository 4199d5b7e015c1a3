//! What PostgreSQL's errors mean to callers: the one place they are sorted
//! into [`StoreError`]s, by SQLSTATE.

use tokio_postgres::error::SqlState;

use crate::store::kit::{SchemaError, StoreError};

/// Sorts a driver error into what the caller can do about it.
pub(super) fn classify(err: tokio_postgres::Error) -> StoreError {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or could not be made.
        return StoreError::Unavailable(err.into());
    };
    if *code == SqlState::UNIQUE_VIOLATION {
        StoreError::AlreadyExists
    } else if *code == SqlState::UNDEFINED_TABLE {
        StoreError::Schema(SchemaError::Missing)
    } else if code.code().starts_with("08") // connection exception
        || code.code().starts_with("53") // insufficient resources
        || code.code().starts_with("57") // operator intervention, query canceled
        || code.code().starts_with("40") // serialization failure, deadlock
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Internal(err.into())
    }
}
