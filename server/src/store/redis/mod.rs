//! The `redis://` engine: Django's cache session engine on Redis, with
//! Django's database semantics where Redis allows them. One server
//! (`redis://`), the master that Sentinel names (`redis+sentinel://`) or a
//! Redis Cluster (`redis+cluster://`), each also over TLS (`rediss…`); see
//! [`RedisUrl`].
//!
//! # Layout
//!
//! One Redis hash per session, under the key `PREFIX + session_key` (the
//! prefix defaults to `sessiond:session:`; `redis://HOST/DB?prefix=myapp:`
//! changes it). On a cluster the key is `PREFIX{session_key}`: the braces
//! make the session key the hash tag, so whatever a session gains beside
//! its hash later (`PREFIX{session_key}:…`) shares its slot and one script
//! can still change both; the prefix may then hold no brace. (Sessions kept
//! on one Redis keep the key without braces: moving them to a cluster means
//! renaming them, or letting users log in again.) The hash has two fields,
//! named after Django's columns:
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
//! On a cluster, a script may touch one hash slot only, and cycle-key's old
//! and new keys lie in different slots: there it runs as ordered steps
//! (write the new key, then delete the old one), described with what a
//! failure between them leaves in [`cycle_steps`]. Every other operation
//! touches one session's key, so it is as atomic as on one server.
//!
//! # Failover
//!
//! Redis replicates asynchronously: a write acknowledged by a master that
//! dies before its replica received it is lost when Sentinel or the cluster
//! promotes that replica. Just before a failover, then: a created session
//! may read as missing, a save or patch as the version before it, a delete
//! (logout) may be undone, the session live again until it expires, and a
//! cycle-key may be lost (the new key missing, the old one live) or, on a
//! cluster, half lost (the delete of the old key undone: the old key live
//! again with the data it had before the cycle, beside the new one). What
//! each single write changes stays atomic. The PostgreSQL engine loses no
//! acknowledged write (its commit is durable before it answers), except
//! across a failover to an asynchronous standby, which has the same window.
//!
//! # Connections and failures
//!
//! One multiplexed connection ([`link`]), re-established after a failure,
//! so sessiond recovers by itself when Redis comes back: the `redis`
//! crate's connection manager for one server, its cluster connection
//! (which follows the slot map) for a cluster, and for Sentinel a
//! connection to the master that asks the sentinels again once they
//! announce a new master (`+switch-master`) or the master fails or turns
//! replica ([`sentinel`]). Connect and response timeouts
//! come from `--store-timeout`, and every operation as a whole is bounded by
//! it too: an unreachable or stalled Redis answers `UNAVAILABLE` within the
//! timeout. A call that fails during a failover is not retried by sessiond
//! (a write whose answer was lost may have been applied); the client sees
//! `UNAVAILABLE` and may retry.
//!
//! Out of scope for now: Unix sockets, reading from replicas, and a TLS
//! option to skip certificate checks.

mod connection;
mod cycle_steps;
mod errors;
mod link;
mod scripts;
mod sentinel;
mod stored;
mod tls;
mod url;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::{Script, Value};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::session::{ExpireDate, Record, SessionKey};
use crate::store::kit::{Engine, OpenFailure, StoreError, StoreOptions};
use crate::store::{Patcher, SessionStore};
use errors::{Fault, classify};
use link::Link;
use scripts::Scripts;
use stored::{
    DATA_FIELD, EXPIRE_FIELD, Stored, expire_at_millis, from_text, integer, text, to_text,
};
pub use url::{RedisUrl, RedisUrlError};

/// Optimistic write attempts (patch, cycle-key without data) before giving up
/// with `UNAVAILABLE`. An attempt fails only when another write to the same
/// session succeeded in between, so N concurrent writers to one session need
/// at most N attempts; 64 covers any burst one user's tabs produce, while a
/// session hammered without pause fails instead of spinning.
pub const MAX_WRITE_ATTEMPTS: u32 = 64;

/// The Redis engine.
pub struct RedisStore {
    /// `None` once closed. Cloned out for each call (a cheap handle to one
    /// shared, multiplexed connection); the lock is never held across an
    /// `.await`.
    connection: Mutex<Option<Link>>,
    prefix: String,
    /// Keys carry the session key as a hash tag (`PREFIX{KEY}`), and
    /// cycle-key runs as ordered steps (see [`cycle_steps`]).
    cluster: bool,
    timeout: Duration,
    scripts: Scripts,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Engine for RedisUrl {
    fn is_database(&self) -> bool {
        false
    }

    async fn open(&self, options: &StoreOptions) -> Result<Arc<dyn SessionStore>, OpenFailure> {
        let connection = connection::connect(self, options.timeout).await?;
        Ok(Arc::new(RedisStore {
            connection: Mutex::new(Some(connection)),
            prefix: self.prefix.clone(),
            cluster: self.is_cluster(),
            timeout: options.timeout,
            scripts: Scripts::new(),
        }))
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

    /// Runs `command` (`EXISTS`, `DEL`) on the session `key` and returns
    /// the number it answers with.
    async fn integer_command(&self, key: &SessionKey, command: &str) -> Result<i64, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            let reply: Value = ::redis::cmd(command)
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            integer(&reply)
        })
        .await
    }

    fn connection(&self) -> Result<Link, StoreError> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StoreError::Unavailable(Box::new(Fault::Closed)))
    }

    /// The Redis key of a session: `PREFIX` + `KEY`, or on a cluster
    /// `PREFIX{KEY}`, whose braces make the session key the hash tag, so
    /// that keys a session may gain beside its hash (`PREFIX{KEY}:…`) land
    /// in the same slot and one script can still change them together.
    fn key(&self, key: &SessionKey) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.as_str().len() + 2);
        full.push_str(&self.prefix);
        if self.cluster {
            full.push('{');
            full.push_str(key.as_str());
            full.push('}');
        } else {
            full.push_str(key.as_str());
        }
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
    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        self.bounded(async {
            Ok(read(&mut conn, &key)
                .await?
                .filter(|stored| stored.expire_date.instant() > now)
                .map(|stored| Record {
                    session_data: stored.session_data,
                    expire_date: stored.expire_date,
                }))
        })
        .await
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.integer_command(key, "EXISTS").await? > 0)
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
    ) -> Result<Record, StoreError> {
        let mut conn = self.connection()?;
        let key = self.key(key);
        let expire_text = to_text(expire_date);
        let expire_at = expire_at_millis(expire_date);
        self.bounded(async {
            let mut stored = read(&mut conn, &key).await?.ok_or(StoreError::NotFound)?;
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
                    .arg(patched.as_str())
                    .arg(expire_text.as_str())
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(classify)?;
                match reply {
                    Value::Int(1) => {
                        return Ok(Record {
                            session_data: patched,
                            expire_date,
                        });
                    }
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
        Ok(self.integer_command(key, "DEL").await? > 0)
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
        if self.cluster {
            return self
                .bounded(self.cycle_in_steps(
                    &mut conn,
                    &old_key,
                    &new_key,
                    session_data,
                    expire_date,
                    now,
                ))
                .await;
        }
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

    /// `PING`: on a cluster every master answers, since each holds the
    /// sessions of its slots.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        self.bounded(async {
            let _: Value = ::redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    /// Drops this store's handle to the connection; it closes once the calls
    /// still in flight are done. Later calls fail with `UNAVAILABLE`.
    async fn close(&self) {
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(connection) = connection {
            connection.stop().await;
        }
    }
}

/// The session stored under the full key `key`, if any.
async fn read(conn: &mut Link, key: &str) -> Result<Option<Stored>, StoreError> {
    let reply: Value = ::redis::cmd("HMGET")
        .arg(key)
        .arg(DATA_FIELD)
        .arg(EXPIRE_FIELD)
        .query_async(conn)
        .await
        .map_err(classify)?;
    Stored::from_reply(reply)
}
