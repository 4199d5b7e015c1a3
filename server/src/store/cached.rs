//! Django's `cached_db`: a cache engine (Redis or memory) in front of a
//! database engine (SQLite, PostgreSQL or files).
//!
//! The database stays the truth. Loads read the cache first and fill it from
//! the database on a miss; inserts and updates go to the database first,
//! then put the new record in the cache. A cache that fails costs speed,
//! never a call: the failure is logged (without keys or data) and the
//! database answers, as in Django.
//!
//! # Tombstones: no fill or late write brings back an older session
//!
//! A load reads the database, then fills the cache; a write that lands in
//! between (a logout, a patch, a key cycle) must not be undone by that fill,
//! even when the load and the write run on different replicas sharing one
//! Redis. So the cache is only ever changed in ways that cannot go back in
//! time:
//!
//! - A write whose result the cache cannot hold (a delete, a patch, the old
//!   key of a key cycle, a failed update) replaces whatever is cached with a
//!   *tombstone*: a record with empty `session_data`, which no codec ever
//!   writes, expiring [`TOMBSTONE_LIFETIME`] from now. (A write that found
//!   no session buries only a live cached copy, so that calls with unknown
//!   keys leave nothing behind.)
//! - A load that finds a tombstone reads the database and leaves the cache
//!   alone.
//! - A fill writes only where nothing live is cached (an insert, or a
//!   compare-and-set `patch` of the cache engine over an expired record), so
//!   a tombstone written after the database was read keeps it out; a fill
//!   that comes first is overwritten by the tombstone. Either way the
//!   deleted or patched session is not served from the cache afterwards.
//!   A fill is skipped when its database read took longer than
//!   [`FILL_DEADLINE`], so that it always lands while a tombstone of a
//!   write it raced with is still there.
//! - An insert or update puts its record over anything but a live tombstone
//!   (the same compare-and-set): a save that reached the database just
//!   before a delete cannot put the session back after the delete's
//!   tombstone. The session is then read from the database until the
//!   tombstone expires.
//!
//! This needs nothing of the cache engine beyond the [`SessionStore`]
//! contract, and nothing kept inside one replica. What it does not order
//! are two saves of one session racing each other: the older one can reach
//! the cache last and stay there until the session's next write or expiry,
//! as with Django's cached_db.
//!
//! A write that cannot reach the cache at all would leave an older copy
//! there. This replica remembers such keys and reads them from the database,
//! putting a tombstone over their cached copy as soon as the cache answers
//! again. Other replicas sharing the cache can still see that older copy
//! until the session's next write or its expiry, as with Django's cached_db.
//! A Django app on the same table sees only the database, and its writes
//! are not seen through the cache.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{DEFAULT_STORE_TIMEOUT, Migration, Patcher, SessionStore, StoreError};
use crate::error::ErrorChain;
use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};

/// Keys whose cached copy may be stale that one replica keeps track of.
/// Past this, it stops using the cache until it restarts, which is always
/// safe; the bound only caps memory during a long cache outage.
const MAX_STALE_KEYS: usize = 1_000_000;

/// How long a tombstone keeps fills out of the cache. It must outlast any
/// load that read the database before the write and has yet to fill: such a
/// load sends its fill within [`FILL_DEADLINE`] of its start, and the one or
/// two cache calls of a fill each wait at most `--store-timeout` (default
/// 5 s). Thirty
/// seconds cover that with room for a slow Redis, a longer
/// `--store-timeout` and clock skew between replicas (the tombstone's
/// expiry is one replica's clock, Redis drops it by its own). Longer costs
/// little: a deleted session stays deleted anyway, and a patched one is read
/// from the database until the tombstone expires.
const TOMBSTONE_LIFETIME: TimeDelta = TimeDelta::seconds(30);

/// A load fills the cache only if the database answered within this time of
/// the load's start; a slower answer is returned but not cached, since a
/// tombstone written meanwhile may be close to its expiry. A read that
/// succeeds takes less than `--store-timeout`, whose default this is, so
/// with defaults no fill is lost.
const FILL_DEADLINE: Duration = DEFAULT_STORE_TIMEOUT;

/// Attempts at putting a record into the cache. One fails only when another
/// call created or removed the cached copy in between, so a handful settles
/// any burst of one user's requests.
const PUT_ATTEMPTS: u32 = 8;

/// The `session_data` of a tombstone. Neither codec can write it: JSON data
/// is an object (`{}` at least) and Django's signed values are never empty.
const TOMBSTONE_DATA: &str = "";

fn is_tombstone(record: &Record) -> bool {
    record.session_data == TOMBSTONE_DATA
}

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

/// What a put into the cache may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Over {
    /// Nothing live: a fill from the database.
    Nothing,
    /// Anything but a live tombstone: the record an insert or update wrote.
    AnyButTombstone,
    /// Anything: a tombstone.
    Anything,
}

/// How a put into the cache went.
#[derive(Debug, PartialEq, Eq)]
enum Put {
    Stored,
    /// What the cache holds may not be replaced; it stays.
    Kept,
    /// The cached copy kept changing under each attempt.
    Contended,
}

/// What a write did to the database, as far as the cache is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Changed the session, or may have (a failure after the request was
    /// sent).
    Changed,
    /// Found no session to change.
    NoSession,
    /// Changed nothing: refused before writing.
    Unchanged,
}

impl Effect {
    fn of<T>(result: &Result<T, StoreError>) -> Self {
        match result {
            Ok(_) => Self::Changed,
            Err(StoreError::NotFound) => Self::NoSession,
            Err(StoreError::AlreadyExists | StoreError::Invalid(_) | StoreError::Full(_)) => {
                Self::Unchanged
            }
            Err(_) => Self::Changed,
        }
    }
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
    /// bury it so that it can be again.
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
        if self.put_tombstone(key).await.is_ok() {
            self.stale().keys.remove(key);
        }
        false
    }

    /// Caches `record`, just read from the database, unless something live
    /// is cached already: a copy as fresh, or a tombstone of a write that
    /// came after the read.
    async fn fill(&self, key: &SessionKey, record: Record, now: DateTime<Utc>) {
        if is_tombstone(&record) {
            // Written by someone else; cached, it would read as a tombstone.
            return;
        }
        if let Err(err) = self.put(key, record, Over::Nothing, now).await {
            // Nothing stale is left behind: at worst the fill is missing.
            cache_failed("cannot save to the cache", &err);
        }
    }

    /// Caches `record`, just written to the database, over any older copy,
    /// but not over a tombstone: a delete or patch may have come after the
    /// write.
    async fn remember(&self, key: &SessionKey, record: Record) {
        if is_tombstone(&record) {
            return self.bury(key).await;
        }
        match self
            .put(key, record, Over::AnyButTombstone, Utc::now())
            .await
        {
            Ok(Put::Stored | Put::Kept) => {}
            Ok(Put::Contended) => {
                self.mark_stale(key);
                tracing::warn!(
                    "cannot save to the cache: the session kept changing; the database answers instead"
                );
            }
            Err(err) => {
                self.mark_stale(key);
                cache_failed("cannot save to the cache", &err);
            }
        }
    }

    /// Replaces the cached copy of `key` with a tombstone.
    async fn bury(&self, key: &SessionKey) {
        match self.put_tombstone(key).await {
            Ok(_) => {}
            Err(err) => {
                self.mark_stale(key);
                cache_failed("cannot drop a session from the cache", &err);
            }
        }
    }

    /// Brings the cache in line with a write to the database whose result
    /// it cannot hold.
    async fn settle(&self, key: &SessionKey, effect: Effect) {
        match effect {
            Effect::Changed => self.bury(key).await,
            // Only a copy cached before someone else removed the session is
            // left to bury; a tombstone for every unknown key would fill the
            // cache with them.
            Effect::NoSession => match self.cache.load(key, Utc::now()).await {
                Ok(Some(record)) if !is_tombstone(&record) => self.bury(key).await,
                Ok(_) => {}
                Err(err) => {
                    self.mark_stale(key);
                    cache_failed("cannot read the cache", &err);
                }
            },
            Effect::Unchanged => {}
        }
    }

    async fn put_tombstone(&self, key: &SessionKey) -> Result<Put, StoreError> {
        let now = Utc::now();
        let tombstone = Record {
            session_data: TOMBSTONE_DATA.to_owned(),
            expire_date: ExpireDate::after(now, TOMBSTONE_LIFETIME).map_err(StoreError::Invalid)?,
        };
        match self.put(key, tombstone, Over::Anything, now).await? {
            Put::Contended => Err(StoreError::Unavailable(Box::new(Contended))),
            put => Ok(put),
        }
    }

    /// Puts `record` into the cache in place of what `over` allows, with
    /// the cache engine's own atomic steps only (insert if absent, update or
    /// compare-and-set patch if present), so that it works across replicas.
    async fn put(
        &self,
        key: &SessionKey,
        record: Record,
        over: Over,
        now: DateTime<Utc>,
    ) -> Result<Put, StoreError> {
        // A fill expects nothing cached; a write expects an older copy.
        let mut insert_first = over == Over::Nothing;
        for _ in 0..PUT_ATTEMPTS {
            if insert_first {
                match self.cache.insert(key, record.clone()).await {
                    Ok(()) => return Ok(Put::Stored),
                    Err(StoreError::AlreadyExists) => {}
                    Err(err) => return Err(err),
                }
            }
            insert_first = true;
            match self.replace(key, &record, over, now).await {
                // Gone meanwhile: insert instead.
                Err(StoreError::NotFound) => {}
                other => return other,
            }
        }
        Ok(Put::Contended)
    }

    /// Replaces the cached copy of `key` with `record` if `over` allows;
    /// [`StoreError::NotFound`] if there is none.
    async fn replace(
        &self,
        key: &SessionKey,
        record: &Record,
        over: Over,
        now: DateTime<Utc>,
    ) -> Result<Put, StoreError> {
        if over == Over::Anything {
            return self
                .cache
                .update(key, record.clone())
                .await
                .map(|()| Put::Stored);
        }
        // The engine's patch is an atomic read-modify-write, here used as a
        // compare-and-set: the patcher sees the cached data (`None` once
        // expired at `now`) and refuses to replace what it may not, which
        // leaves the cached copy as it was.
        let refused = Arc::new(AtomicBool::new(false));
        let patcher: Patcher = {
            let (data, refused) = (record.session_data.clone(), refused.clone());
            Box::new(move |cached: Option<String>| {
                let replaceable = match cached {
                    None => true,
                    Some(cached) => over == Over::AnyButTombstone && cached != TOMBSTONE_DATA,
                };
                refused.store(!replaceable, Ordering::Relaxed);
                if replaceable {
                    Ok(data.clone())
                } else {
                    Err(kept())
                }
            })
        };
        match self
            .cache
            .patch(key, patcher, record.expire_date, now)
            .await
        {
            Ok(()) => Ok(Put::Stored),
            Err(StoreError::Invalid(_)) if refused.load(Ordering::Relaxed) => Ok(Put::Kept),
            Err(err) => Err(err),
        }
    }
}

/// The error a patcher of [`CachedStore::replace`] refuses with. Engines
/// hand it back without writing and it never leaves this file, so which
/// error it is does not matter; a flag beside it says it was a refusal.
fn kept() -> InvalidInput {
    InvalidInput::PatchedTooLarge { size: 0, limit: 0 }
}

/// The cached copy of a session kept changing while a tombstone was put
/// over it.
#[derive(Debug, thiserror::Error)]
#[error("the cached session kept changing while it was being dropped")]
struct Contended;

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
            Ok(Some(record)) if is_tombstone(&record) => return self.database.load(key, now).await,
            Ok(Some(record)) => return Ok(Some(record)),
            Ok(None) => {}
            Err(err) => {
                cache_failed("cannot read the cache", &err);
                return self.database.load(key, now).await;
            }
        }
        let started = Instant::now();
        let loaded = self.database.load(key, now).await?;
        if let Some(record) = &loaded
            && started.elapsed() < FILL_DEADLINE
        {
            self.fill(key, record.clone(), now).await;
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
                let result = Err(err);
                self.settle(key, Effect::of(&result)).await;
                result
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
        self.settle(key, Effect::of(&result)).await;
        result
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted = self.database.delete(key).await;
        let effect = match deleted {
            Ok(false) => Effect::NoSession,
            _ => Effect::of(&deleted),
        };
        self.settle(key, effect).await;
        deleted
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
        // The new key is freshly drawn: nothing is cached under it, and the
        // next load fills it.
        self.settle(old_key, Effect::of(&result)).await;
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
