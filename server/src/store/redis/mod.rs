//! The `redis://` engine: Django's cache session engine on Redis, with
//! Django's database semantics where Redis allows them.
//!
//! # Layout
//!
//! One Redis hash per session, under the key `PREFIX + session_key` (the
//! prefix defaults to [`DEFAULT_PREFIX`]; `redis://HOST/DB?prefix=myapp:`
//! changes it). The hash has two fields, named after Django's columns:
//!
//! - `session_data`: the encoded session data, as the codec wrote it;
//! - `expire_date`: the expiry as RFC 3339 text in UTC with six fractional
//!   digits, e.g. `2026-01-15T09:30:00.250000Z` (fixed width, so it reads the
//!   same in `redis-cli` and compares as text).
//!
//! The key's own expiry is set with `PEXPIREAT` to the `expire_date`,
//! rounded up to the millisecond, so Redis drops a session by itself once it
//! has expired: there is nothing to purge and `clear_expired_batch` returns
//! 0. A hash leaves room for fields that a later `Touch` changes without
//! rewriting the data.
//!
//! # Semantics that differ from the SQL engines
//!
//! - `exists` of an expired session is false: Redis has dropped it, whereas
//!   the SQL engines keep the row until a purge.
//! - A session written with an `expire_date` already in the past (by Redis's
//!   clock) is not stored: `PEXPIREAT` in the past deletes the key. An insert
//!   then succeeds and stores nothing (no `ALREADY_EXISTS` on a free key,
//!   still `ALREADY_EXISTS` on a taken one); an update of an existing session
//!   succeeds and removes it; an update of a missing one is `NOT_FOUND`, as
//!   always. So a later update of such a session is `NOT_FOUND` here, where
//!   SQL would find the expired row.
//! - A session is live when Redis still has its key *and* its `expire_date`
//!   is after the `now` the server passes in, so loads agree with the SQL
//!   engines to the microsecond even though Redis counts milliseconds.
//!
//! Django's own cache engine (`django.contrib.sessions.backends.cache`)
//! pickles its values under `:1:django.contrib.sessions.cache<key>`, so it
//! cannot share keys with sessiond; a Django app shares sessions with
//! sessiond through the gRPC API instead.
//!
//! # Atomicity
//!
//! Every write that checks before it writes is one Lua script, which Redis
//! runs without interleaving: insert only if the key is absent, update only
//! if it exists (a deleted session is never resurrected), cycle-key inserts
//! the new key only if absent and deletes the old one in the same script.
//!
//! `patch` runs a Rust closure, which a script cannot, so it is an
//! optimistic read-modify-write: read the session, merge in Rust, then a
//! compare-and-set script writes the result only if the stored value is
//! still the one that was read; otherwise it answers with the current value
//! and the merge runs again on top of it, up to [`MAX_WRITE_ATTEMPTS`]
//! times. This is what `WATCH`/`MULTI`/`EXEC` does, without the per-connection
//! `WATCH` state that a shared, multiplexed connection cannot keep apart
//! between concurrent calls. `cycle_key` without data checks liveness in Rust
//! the same way (Lua cannot compare our timestamps reliably: string order
//! there depends on the server's locale).
//!
//! # Connections and failures
//!
//! One multiplexed connection, re-established in the background after a
//! failure (the `redis` crate's connection manager), so sessiond recovers by
//! itself when Redis comes back. Connect and response timeouts come from
//! `--store-timeout`, and every operation as a whole is bounded by it too:
//! an unreachable or stalled Redis answers `UNAVAILABLE` within the timeout.
//!
//! Out of scope for now: TLS (`rediss://`), Unix sockets, Sentinel and
//! Cluster (cycle-key touches two keys in one script, which Cluster allows
//! only within one hash slot).

use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

mod url;

pub use self::url::{RedisUrl, RedisUrlError};

use super::{DriverError, Migration, OpenFailure, Patcher, SessionStore, StoreError, StoreOptions};
use crate::session::{ExpireDate, Record, SessionKey};

/// Where sessiond's keys start unless the URL says otherwise: namespaced so
/// that one Redis database can hold other applications' keys too, and
/// distinct from Django's cache keys, whose pickled values sessiond cannot
/// read.
pub const DEFAULT_PREFIX: &str = "sessiond:session:";

/// Redis's own default port.
pub const DEFAULT_PORT: u16 = 6379;

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

/// Optimistic write attempts (patch, cycle-key without data) before giving up
/// with `UNAVAILABLE`. An attempt fails only when another write to the same
/// session succeeded in between, so N concurrent writers to one session need
/// at most N attempts; 64 covers any burst one user's tabs produce, while a
/// session hammered without pause fails instead of spinning.
pub const MAX_WRITE_ATTEMPTS: u32 = 64;

/// The hash fields, named after Django's columns.
const DATA_FIELD: &str = "session_data";
const EXPIRE_FIELD: &str = "expire_date";

/// KEYS: session. ARGV: data, expire text, expire ms. 1 stored, 0 taken.
const INSERT_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// KEYS: session. ARGV: data, expire text, expire ms. 1 stored, 0 missing.
const UPDATE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// Compare-and-set. KEYS: session. ARGV: data read, expire text read, new
/// data, new expire text, new expire ms. 1 stored, -1 missing, or the
/// current `[data, expire]` when it is no longer what was read.
const PATCH_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HMGET', KEYS[1], 'session_data', 'expire_date')
if current[1] ~= ARGV[1] or current[2] ~= ARGV[2] then return current end
redis.call('HSET', KEYS[1], 'session_data', ARGV[3], 'expire_date', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return 1
";

/// KEYS: old, new. ARGV: data, expire text, expire ms. 1 moved, 0 new taken.
const CYCLE_WITH_DATA_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'session_data', ARGV[1], 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Moves the stored data if the old session's expiry is still the one found
/// live. KEYS: old, new. ARGV: old expire text read, new expire text, new
/// expire ms. 1 moved, 0 new taken, -1 old missing, or the old session's
/// current expire text when it changed.
const CYCLE_MOVE_SCRIPT: &str = r"
local expire = redis.call('HGET', KEYS[1], 'expire_date')
if not expire then return -1 end
if expire ~= ARGV[1] then return expire end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local data = redis.call('HGET', KEYS[1], 'session_data')
if not data then return -1 end
redis.call('HSET', KEYS[2], 'session_data', data, 'expire_date', ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[1])
return 1
";

/// Why a Redis operation failed, when Redis itself did not say.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error("the redis store is closed")]
    Closed,
    #[error("redis did not answer within {0:?} (--store-timeout)")]
    TimedOut(Duration),
    #[error("a stored session is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "the session changed under each of {MAX_WRITE_ATTEMPTS} attempts to write it; too many concurrent writes to one session"
    )]
    Contended,
}

/// The compiled scripts; each keeps its SHA1, so calls send `EVALSHA` and
/// load the script only when Redis does not know it (e.g. after a restart).
struct Scripts {
    insert: Script,
    update: Script,
    patch: Script,
    cycle_with_data: Script,
    cycle_move: Script,
}

/// The Redis engine.
pub struct RedisStore {
    /// `None` once closed. Cloned out for each call (a cheap handle to one
    /// shared, multiplexed connection); the lock is never held across an
    /// `.await`.
    connection: Mutex<Option<ConnectionManager>>,
    prefix: String,
    timeout: Duration,
    scripts: Scripts,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Runs `script` (insert or update) with `record` on the session `key`;
    /// returns the script's answer, 1 when it wrote.
    async fn write_record(
        &self,
        script: &Script,
        key: &SessionKey,
        record: &Record,
    ) -> Result<i64, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            let reply: Value = script
                .key(&key)
                .arg(record.session_data.as_str())
                .arg(to_text(record.expire_date))
                .arg(expire_at_millis(record.expire_date))
                .invoke_async(&mut conn)
                .await
                .map_err(classify)?;
            integer(&reply)
        })
        .await
    }

    /// Connects, so that a wrong address or password stops the server
    /// before it listens. Later outages are survived by reconnecting.
    pub(super) async fn open(url: &RedisUrl, options: &StoreOptions) -> Result<Self, OpenFailure> {
        let timeout = options.timeout;
        if timeout.is_zero() {
            // SQLite can fail at once on a lock; a network round trip cannot
            // be answered in no time, so every call would fail.
            return Err(OpenFailure::Unusable(
                "a --store-timeout of 0 gives Redis no time to answer; set it to how long a call may wait, e.g. 5s".into(),
            ));
        }
        let info = url
            .connection_info()
            .map_err(|err| OpenFailure::Driver(err.into()))?;
        let client = Client::open(info).map_err(|err| OpenFailure::Driver(err.into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(DEFAULT_RECONNECT_RETRIES)
            .set_min_delay(DEFAULT_RECONNECT_MIN_DELAY)
            .set_max_delay(DEFAULT_RECONNECT_MAX_DELAY);
        let connecting = ConnectionManager::new_with_config(client, config);
        let connection = match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(explain_open_error(err, url)),
            Err(_) => {
                return Err(OpenFailure::Unusable(format!(
                    "Redis at {} did not answer within {timeout:?} (--store-timeout); check that it runs and is reachable",
                    url.address()
                )));
            }
        };
        Ok(Self {
            connection: Mutex::new(Some(connection)),
            prefix: url.prefix.clone(),
            timeout,
            scripts: Scripts {
                insert: Script::new(INSERT_SCRIPT),
                update: Script::new(UPDATE_SCRIPT),
                patch: Script::new(PATCH_SCRIPT),
                cycle_with_data: Script::new(CYCLE_WITH_DATA_SCRIPT),
                cycle_move: Script::new(CYCLE_MOVE_SCRIPT),
            },
        })
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable(Box::new(Fault::Closed)))
    }

    fn key(&self, key: &SessionKey) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.as_str().len());
        full.push_str(&self.prefix);
        full.push_str(key.as_str());
        full
    }

    /// Runs one whole operation within the store timeout, so that no call
    /// waits longer on Redis (a reconnection included) than the operator
    /// allowed.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, operation)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(Box::new(Fault::TimedOut(
                    self.timeout,
                ))))
            })
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    /// Redis has no schema: nothing to create or upgrade.
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        Ok(Vec::new())
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            let reply: Value = ::redis::cmd("HMGET")
                .arg(&key)
                .arg(DATA_FIELD)
                .arg(EXPIRE_FIELD)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            Ok(Stored::from_reply(reply)?
                .filter(|stored| stored.expire_date.instant() > now)
                .map(|stored| Record {
                    session_data: stored.session_data,
                    expire_date: stored.expire_date,
                }))
        })
        .await
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            let reply: Value = ::redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            Ok(integer(&reply)? > 0)
        })
        .await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        match self
            .write_record(&self.scripts.insert, key, &record)
            .await?
        {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        match self
            .write_record(&self.scripts.update, key, &record)
            .await?
        {
            1 => Ok(()),
            _ => Err(StoreError::NotFound),
        }
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        let expire_text = to_text(expire_date);
        let expire_at = expire_at_millis(expire_date);
        self.bounded(async {
            let reply: Value = ::redis::cmd("HMGET")
                .arg(&key)
                .arg(DATA_FIELD)
                .arg(EXPIRE_FIELD)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            let mut stored = Stored::from_reply(reply)?.ok_or(StoreError::NotFound)?;
            for _ in 0..MAX_WRITE_ATTEMPTS {
                let live = stored.expire_date.instant() > now;
                let patched = patcher(live.then(|| stored.session_data.clone()))
                    .map_err(StoreError::Invalid)?;
                let reply: Value = self
                    .scripts
                    .patch
                    .key(&key)
                    .arg(stored.session_data.as_str())
                    .arg(stored.expire_text.as_str())
                    .arg(patched)
                    .arg(expire_text.as_str())
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(classify)?;
                match reply {
                    Value::Int(1) => return Ok(()),
                    Value::Int(_) => return Err(StoreError::NotFound),
                    // Another write came first: merge again on top of it.
                    current => stored = Stored::from_reply(current)?.ok_or(StoreError::NotFound)?,
                }
            }
            Err(StoreError::Unavailable(Box::new(Fault::Contended)))
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            let reply: Value = ::redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            Ok(integer(&reply)? > 0)
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
        let mut conn = self.connection()?;
        let old_key = self.key(old_key);
        let new_key = self.key(new_key);
        let expire_text = to_text(expire_date);
        let expire_at = expire_at_millis(expire_date);
        self.bounded(async {
            if let Some(session_data) = session_data {
                let reply: Value = self
                    .scripts
                    .cycle_with_data
                    .key(&old_key)
                    .key(&new_key)
                    .arg(session_data)
                    .arg(expire_text.as_str())
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(classify)?;
                return match integer(&reply)? {
                    1 => Ok(()),
                    _ => Err(StoreError::AlreadyExists),
                };
            }

            let reply: Value = ::redis::cmd("HGET")
                .arg(&old_key)
                .arg(EXPIRE_FIELD)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            let mut old_expire = text(reply)?.ok_or(StoreError::NotFound)?;
            for _ in 0..MAX_WRITE_ATTEMPTS {
                if from_text(&old_expire)?.instant() <= now {
                    return Err(StoreError::NotFound);
                }
                let reply: Value = self
                    .scripts
                    .cycle_move
                    .key(&old_key)
                    .key(&new_key)
                    .arg(old_expire.as_str())
                    .arg(expire_text.as_str())
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(classify)?;
                match reply {
                    Value::Int(1) => return Ok(()),
                    Value::Int(0) => return Err(StoreError::AlreadyExists),
                    Value::Int(_) => return Err(StoreError::NotFound),
                    // The old session's expiry changed: check it again.
                    current => old_expire = text(current)?.ok_or(StoreError::NotFound)?,
                }
            }
            Err(StoreError::Unavailable(Box::new(Fault::Contended)))
        })
        .await
    }

    /// Redis drops expired sessions by itself; there is never anything to
    /// remove.
    async fn clear_expired_batch(
        &self,
        _now: DateTime<Utc>,
        _limit: u64,
    ) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Drops this store's handle to the connection; it closes once the calls
    /// still in flight are done. Later calls fail with `UNAVAILABLE`.
    async fn close(&self) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(connection);
    }
}

/// A session as read from its hash.
struct Stored {
    session_data: String,
    /// The `expire_date` field exactly as stored, for compare-and-set.
    expire_text: String,
    expire_date: ExpireDate,
}

impl Stored {
    /// Reads the `[session_data, expire_date]` pair of `HMGET` (or of the
    /// patch script); `None` when the session does not exist.
    fn from_reply(reply: Value) -> Result<Option<Self>, StoreError> {
        let Value::Array(fields) = reply else {
            return Err(malformed("expected the fields of a session"));
        };
        let mut fields = fields.into_iter();
        let (Some(data), Some(expire), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(malformed("expected two fields"));
        };
        match (text(data)?, text(expire)?) {
            (None, None) => Ok(None),
            (Some(session_data), Some(expire_text)) => Ok(Some(Self {
                expire_date: from_text(&expire_text)?,
                session_data,
                expire_text,
            })),
            _ => Err(malformed(
                "the hash lacks session_data or expire_date; it was not written by sessiond",
            )),
        }
    }
}

fn malformed(what: &'static str) -> StoreError {
    StoreError::Internal(Box::new(Fault::Malformed(what)))
}

/// A string reply, `None` for nil. The error never carries the text, which
/// may be session data.
fn text(reply: Value) -> Result<Option<String>, StoreError> {
    match reply {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| malformed("a field is not UTF-8 text")),
        Value::SimpleString(text) => Ok(Some(text)),
        _ => Err(malformed("expected a text field")),
    }
}

fn integer(reply: &Value) -> Result<i64, StoreError> {
    match reply {
        Value::Int(number) => Ok(*number),
        _ => Err(malformed("expected an integer reply")),
    }
}

/// The `expire_date` field: RFC 3339, UTC, always six fractional digits.
fn to_text(expire_date: ExpireDate) -> String {
    expire_date
        .instant()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

fn from_text(text: &str) -> Result<ExpireDate, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .and_then(|instant| ExpireDate::new(instant.with_timezone(&Utc)).ok())
        .ok_or_else(|| malformed("expire_date is not an RFC 3339 time"))
}

/// The key's `PEXPIREAT`: the expiry in Unix milliseconds, rounded up so
/// that Redis never drops a session before its `expire_date`.
fn expire_at_millis(expire_date: ExpireDate) -> i64 {
    let micros = expire_date.instant().timestamp_micros();
    micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0)
}

/// Sorts a driver error into what the caller can do about it.
fn classify(err: RedisError) -> StoreError {
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
fn explain_open_error(err: RedisError, url: &RedisUrl) -> OpenFailure {
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
        format!(
            "Redis at {address} has no database {}; choose one below its `databases` setting",
            url.db
        )
    } else if err.is_io_error() {
        format!("cannot reach Redis at {address}; check the host name and the network")
    } else {
        return OpenFailure::Driver(DriverError::from(err));
    };
    OpenFailure::Unusable(format!("{reason} ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(text: &str) -> ExpireDate {
        ExpireDate::new(
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
        .unwrap()
    }

    #[test]
    fn expire_dates_are_fixed_width_rfc3339() {
        assert_eq!(
            to_text(instant("2026-01-15T09:30:00Z")),
            "2026-01-15T09:30:00.000000Z"
        );
        assert_eq!(
            to_text(instant("0005-03-04T05:06:07.000001Z")),
            "0005-03-04T05:06:07.000001Z"
        );
        for text in ["2026-01-15T09:30:00.250000Z", "9999-12-31T23:59:59.999999Z"] {
            assert_eq!(to_text(from_text(text).unwrap()), text);
        }
        assert!(from_text("yesterday").is_err());
    }

    #[test]
    fn redis_expiry_never_comes_before_the_expire_date() {
        assert_eq!(expire_at_millis(instant("1970-01-01T00:00:01Z")), 1_000);
        assert_eq!(
            expire_at_millis(instant("1970-01-01T00:00:01.000001Z")),
            1_001
        );
        assert_eq!(expire_at_millis(instant("1969-12-31T23:59:59.999999Z")), 0);
        assert_eq!(expire_at_millis(instant("1969-12-31T23:59:59.998Z")), -2);
    }
}
