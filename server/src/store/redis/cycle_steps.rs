//! Cycle-key on a Redis Cluster, where the old and the new key live in
//! different hash slots (often on different nodes), so no one script can
//! move a session from one to the other.
//!
//! # The order of the steps
//!
//! The new copy is written first and the old session deleted last:
//!
//! 1. (without new data) read the old session and check that it is live;
//! 2. write the new key, only if it is free (else `ALREADY_EXISTS`, and the
//!    caller draws another key), with the new data or the data read in 1;
//! 3. delete the old key: with new data unconditionally; without, only if
//!    it still holds what was read in 1 (compare-and-delete). If a write
//!    to the old session came in between, its result is copied over the new
//!    key and step 3 runs again (at most [`MAX_WRITE_ATTEMPTS`] times); if
//!    the old session is gone (a logout in another tab, or it expired), the
//!    new copy is deleted and the answer is `NOT_FOUND`, as if the delete
//!    had come first.
//!
//! # What a failure between the steps leaves
//!
//! The call fails (`UNAVAILABLE`) and the client keeps the old key, which
//! still holds the old session, unchanged. The new key holds a copy (of the
//! old data, or of the data the client meant to store) that no client ever
//! learned: its key was never returned, and it is 32 random characters.
//! It expires with its own expiry. So there are never two sessions a client
//! can read: there is the old one, and an unreachable copy.
//!
//! The reverse order (delete the old key, then write the new) would leave,
//! after a failure, no session at all: the user logged out, and with data
//! given, that data lost. An orphan that expires by itself is the cheaper
//! failure. What a login must guarantee (the pre-login key never carries
//! the post-login data, against session fixation) holds either way.

use chrono::{DateTime, Utc};
use redis::Value;

use super::errors::{Fault, classify};
use super::link::Link;
use super::stored::{Stored, expire_at_millis, integer, to_text};
use super::{MAX_WRITE_ATTEMPTS, RedisStore, read};
use crate::session::ExpireDate;
use crate::store::kit::StoreError;

impl RedisStore {
    /// Cycle-key as ordered steps, for a cluster (see the module's
    /// documentation); `old_key` and `new_key` are full Redis keys.
    pub(super) async fn cycle_in_steps(
        &self,
        conn: &mut Link,
        old_key: &str,
        new_key: &str,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let expire_text = to_text(expire_date);
        let expire_at = expire_at_millis(expire_date);

        if let Some(session_data) = session_data {
            let reply: Value = self
                .scripts
                .insert
                .key(new_key)
                .arg(session_data)
                .arg(expire_text.as_str())
                .arg(expire_at)
                .invoke_async(conn)
                .await
                .map_err(classify)?;
            if integer(&reply)? != 1 {
                return Err(StoreError::AlreadyExists);
            }
            let _: Value = ::redis::cmd("DEL")
                .arg(old_key)
                .query_async(conn)
                .await
                .map_err(classify)?;
            return Ok(());
        }

        let mut stored = read(conn, old_key).await?.ok_or(StoreError::NotFound)?;
        if stored.expire_date.instant() <= now {
            return Err(StoreError::NotFound);
        }
        let reply: Value = self
            .scripts
            .insert
            .key(new_key)
            .arg(stored.session_data.as_str())
            .arg(expire_text.as_str())
            .arg(expire_at)
            .invoke_async(conn)
            .await
            .map_err(classify)?;
        if integer(&reply)? != 1 {
            return Err(StoreError::AlreadyExists);
        }
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let reply: Value = self
                .scripts
                .delete_if_unchanged
                .key(old_key)
                .arg(stored.session_data.as_str())
                .arg(stored.expire_text.as_str())
                .invoke_async(conn)
                .await
                .map_err(classify)?;
            let current = match reply {
                Value::Int(1) => return Ok(()),
                Value::Int(_) => None,
                current => Stored::from_reply(current)?,
            };
            // The old session changed after it was copied: copy it again,
            // unless it is gone or no longer live.
            match current {
                Some(current) if current.expire_date.instant() > now => stored = current,
                _ => {
                    discard(conn, new_key).await;
                    return Err(StoreError::NotFound);
                }
            }
            let _: Value = self
                .scripts
                .put
                .key(new_key)
                .arg(stored.session_data.as_str())
                .arg(expire_text.as_str())
                .arg(expire_at)
                .invoke_async(conn)
                .await
                .map_err(classify)?;
        }
        discard(conn, new_key).await;
        Err(StoreError::Unavailable(Box::new(Fault::Contended)))
    }
}

/// Deletes the copy under the new key after the cycle failed. Best effort:
/// should this fail too, the copy is one no client knows of, and it expires
/// by itself.
async fn discard(conn: &mut Link, new_key: &str) {
    let deleted: Result<Value, _> = ::redis::cmd("DEL").arg(new_key).query_async(conn).await;
    if let Err(err) = deleted {
        tracing::warn!(error = %err, "could not delete the copy of a session whose key change failed; it expires by itself");
    }
}
