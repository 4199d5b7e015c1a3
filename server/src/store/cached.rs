//! Django's `cached_db`: a cache engine (Redis or memory) in front of a
//! database engine (SQLite, PostgreSQL or files).
//!
//! The database stays the truth. Loads read the cache first and fill it from
//! the database on a miss; writes go to the database first, then to the
//! cache (a patch or a key cycle, whose result the cache cannot compute,
//! drops the cached copy instead); deletes drop it too. A cache that fails
//! costs speed, never a call: the failure is logged (without keys or data)
//! and the database answers, as in Django.
//!
//! A write that cannot reach the cache would leave an older copy there (a
//! logged-out session still cached, say). This replica remembers such keys
//! and reads them from the database, dropping their cached copy as soon as
//! the cache answers again. Other replicas sharing the cache can still see
//! that older copy until the session's next write or its expiry, as with
//! Django's cached_db; two writers racing on one session can leave the older
//! copy in the cache the same way. A Django app on the same table sees only
//! the database.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Migration, Patcher, SessionStore, StoreError};
use crate::error::ErrorChain;
use crate::session::{ExpireDate, Record, SessionKey};

/// Keys whose cached copy may be stale that one replica keeps track of.
/// Past this, it stops using the cache until it restarts, which is always
/// safe; the bound only caps memory during a long cache outage.
const MAX_STALE_KEYS: usize = 1_000_000;

/// A database engine with a cache engine in front of it.
#[derive(Debug)]
pub struct CachedStore {
    database: Arc<dyn SessionStore>,
    cache: Arc<dyn SessionStore>,
    stale: Mutex<Stale>,
}

/// Sessions whose cached copy may be older than the database's.
#[derive(Debug, Default)]
struct Stale {
    keys: HashSet<SessionKey>,
    /// Too many to track: the cache is bypassed from now on.
    overflowed: bool,
}

impl CachedStore {
    pub fn new(database: Arc<dyn SessionStore>, cache: Arc<dyn SessionStore>) -> Self {
        Self {
            database,
            cache,
            stale: Mutex::new(Stale::default()),
        }
    }

    fn stale(&self) -> MutexGuard<'_, Stale> {
        self.stale
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn mark_stale(&self, key: &SessionKey) {
        let mut stale = self.stale();
        if stale.overflowed {
            return;
        }
        if stale.keys.len() >= MAX_STALE_KEYS {
            stale.keys.clear();
            stale.overflowed = true;
            tracing::error!(
                "too many sessions written while the cache was failing; reading only the database until restart"
            );
            return;
        }
        stale.keys.insert(key.clone());
    }

    /// Whether the cached copy of `key` can be trusted; if not, tries to
    /// drop it so that it can be again.
    async fn cache_trusted(&self, key: &SessionKey) -> bool {
        {
            let stale = self.stale();
            if stale.overflowed {
                return false;
            }
            if !stale.keys.contains(key) {
                return true;
            }
        }
        if self.cache.delete(key).await.is_ok() {
            self.stale().keys.remove(key);
        }
        false
    }

    /// Puts `record` into the cache, replacing any copy there.
    async fn remember(&self, key: &SessionKey, record: Record) {
        let result = match self.cache.update(key, record.clone()).await {
            Err(StoreError::NotFound) => self.cache.insert(key, record).await,
            other => other,
        };
        match result {
            // Another request filled it meanwhile; both copies came from
            // the database.
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            Err(err) => {
                self.mark_stale(key);
                cache_failed("cannot save to the cache", &err);
            }
        }
    }

    /// Drops the cached copy of `key`.
    async fn forget(&self, key: &SessionKey) {
        if let Err(err) = self.cache.delete(key).await {
            self.mark_stale(key);
            cache_failed("cannot drop a session from the cache", &err);
        }
    }
}

fn cache_failed(what: &str, err: &StoreError) {
    tracing::warn!(error = %ErrorChain(err), "{what}; the database answers instead");
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        let mut done = self.database.migrate().await?;
        done.extend(self.cache.migrate().await?);
        Ok(done)
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        if !self.cache_trusted(key).await {
            return self.database.load(key, now).await;
        }
        match self.cache.load(key, now).await {
            Ok(Some(record)) => return Ok(Some(record)),
            Ok(None) => {}
            Err(err) => cache_failed("cannot read the cache", &err),
        }
        let loaded = self.database.load(key, now).await?;
        if let Some(record) = &loaded {
            self.remember(key, record.clone()).await;
        }
        Ok(loaded)
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        // Only the database knows about expired rows that still exist.
        self.database.exists(key).await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        self.database.insert(key, record.clone()).await?;
        self.remember(key, record).await;
        Ok(())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        match self.database.update(key, record.clone()).await {
            Ok(()) => {
                self.remember(key, record).await;
                Ok(())
            }
            Err(err) => {
                // Whatever the cache holds may be a session deleted meanwhile.
                self.forget(key).await;
                Err(err)
            }
        }
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.database.patch(key, patcher, expire_date, now).await;
        self.forget(key).await;
        result
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted = self.database.delete(key).await?;
        self.forget(key).await;
        Ok(deleted)
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self
            .database
            .cycle_key(old_key, new_key, session_data, expire_date, now)
            .await;
        if result.is_ok() {
            self.forget(old_key).await;
        }
        result
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        let removed = self.database.clear_expired_batch(now, limit).await?;
        // An in-process cache has no clock of its own; expired copies are
        // invisible to loads anyway, this only frees their memory.
        if let Err(err) = self.cache.clear_expired_batch(now, limit).await {
            cache_failed("cannot purge the cache", &err);
        }
        Ok(removed)
    }

    async fn close(&self) {
        self.database.close().await;
        self.cache.close().await;
    }
}
