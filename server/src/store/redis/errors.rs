//! What Redis's errors mean to callers: the one place they are sorted into
//! [`StoreError`]s, and the advice for a Redis that cannot be reached at
//! start-up.

use std::time::Duration;

use ::redis::{ErrorKind, RedisError, ServerErrorKind};

use super::MAX_WRITE_ATTEMPTS;
use super::url::RedisUrl;
use crate::store::kit::{OpenFailure, StoreError};

/// Why a Redis operation failed, when Redis itself did not say.
#[derive(Debug, thiserror::Error)]
pub(super) enum Fault {
    #[error("the redis store is closed")]
    Closed,
    #[error("redis did not answer within {0:?} (--store-timeout)")]
    TimedOut(Duration),
    #[error(
        "the session changed under each of {MAX_WRITE_ATTEMPTS} attempts to write it; too many concurrent writes to one session"
    )]
    Contended,
}

/// Sorts a driver error into what the caller can do about it.
pub(super) fn classify(err: RedisError) -> StoreError {
    if err.code() == Some("OOM") {
        // Redis is at its maxmemory and evicts nothing (noeviction).
        return StoreError::Full(err.into());
    }
    let retryable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.code() == Some("BUSY")
        || matches!(
            err.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::ClusterDown
                )
        );
    if retryable {
        StoreError::Unavailable(err.into())
    } else {
        StoreError::Internal(err.into())
    }
}

/// Turns a failure to connect at start-up into words the operator can act
/// on.
pub(super) fn explain_open_error(err: RedisError, url: &RedisUrl) -> OpenFailure {
    let address = url.address();
    let reason = if err.is_connection_refusal() {
        format!(
            "nothing accepts connections at {address}; start Redis or correct the host and port"
        )
    } else if err.is_timeout() {
        format!(
            "Redis at {address} did not answer in time (--store-timeout); check that it runs and is reachable"
        )
    } else if err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH"))
    {
        format!(
            "Redis at {address} refused the credentials; check the user and password in the URL"
        )
    } else if err.to_string().contains("DB index is out of range") {
        // Redis answers SELECT of a missing database with a generic error
        // whose text is all that tells it apart.
        format!(
            "Redis at {address} has no database {}; choose one below its `databases` setting",
            url.db
        )
    } else if err.is_io_error() {
        format!("cannot reach Redis at {address}; check the host name and the network")
    } else {
        return OpenFailure::driver(err);
    };
    OpenFailure::unusable_because(reason, err)
}
