//! The engine's one multiplexed connection: opened at start-up, so that a
//! wrong address or password stops the server before it listens, and
//! re-established in the background after a failure.

use std::time::Duration;

use ::redis::Client;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::errors::explain_open_error;
use super::url::RedisUrl;
use crate::store::kit::OpenFailure;

/// Reconnection attempts after the first one fails, before the calls waiting
/// on the reconnection fail with `UNAVAILABLE`. Kept low: a refused
/// connection fails at once, so a down Redis is reported quickly, and the
/// next call starts a fresh reconnection anyway.
const DEFAULT_RECONNECT_RETRIES: usize = 2;

/// The first pause between reconnection attempts (it doubles, with jitter):
/// short, because a restarted Redis is usually back within milliseconds.
const DEFAULT_RECONNECT_MIN_DELAY: Duration = Duration::from_millis(20);

/// The longest pause between reconnection attempts, so that a call waiting
/// on a reconnection is never held long past the point Redis answers again.
const DEFAULT_RECONNECT_MAX_DELAY: Duration = Duration::from_millis(200);

/// Connects to the Redis `url` names within `timeout`.
pub(super) async fn connect(
    url: &RedisUrl,
    timeout: Duration,
) -> Result<ConnectionManager, OpenFailure> {
    if timeout.is_zero() {
        // SQLite can fail at once on a lock; a network round trip cannot
        // be answered in no time, so every call would fail.
        return Err(OpenFailure::unusable(
            "a --store-timeout of 0 gives Redis no time to answer; set it to how long a call may wait, e.g. 5s",
        ));
    }
    let info = url.connection_info().map_err(OpenFailure::driver)?;
    let client = Client::open(info).map_err(OpenFailure::driver)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(DEFAULT_RECONNECT_RETRIES)
        .set_min_delay(DEFAULT_RECONNECT_MIN_DELAY)
        .set_max_delay(DEFAULT_RECONNECT_MAX_DELAY);
    let connecting = ConnectionManager::new_with_config(client, config);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(explain_open_error(err, url)),
        Err(_) => Err(OpenFailure::unusable(format!(
            "Redis at {} did not answer within {timeout:?} (--store-timeout); check that it runs and is reachable",
            url.address()
        ))),
    }
}
