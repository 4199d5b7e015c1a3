//! Django's `cached_db`: a cache engine (Redis or memory) in front of a
//! database engine (SQLite, PostgreSQL or files).
//!
//! The database stays the truth. Loads read the cache first and fill it from
//! the database on a miss; writes go to the database, and the cache follows.
//! A cache that fails costs speed, never a call: the failure is logged
//! (without keys or data) and the database answers, as in Django.
//!
//! # Claims: nothing brings back an older session
//!
//! A load reads the database, then fills the cache; a write that lands in
//! between (a logout, a patch, a key cycle) must not be undone by that fill,
//! even when the load and the write run on different replicas sharing one
//! Redis, and even when the write's call is cut off (its deadline passed,
//! its client went away) between the database and the cache. So the cache
//! is only ever changed in ways that cannot go back in time:
//!
//! - Before a write touches the database, it *claims* the session in the
//!   cache: whatever is cached is replaced by a tombstone, a record whose
//!   `session_data` no codec writes (`~tombstone:` and a random nonce),
//!   expiring a while from now. A call that goes no further leaves the
//!   tombstone to expire, and the database answers meanwhile.
//! - After the database, a write whose result is a session (an update, a
//!   patch) *publishes* it: the record replaces the tombstone, but only while
//!   the cache still holds that write's own tombstone, so that a later
//!   write's claim wins. A delete or a key cycle leaves its tombstone. A
//!   write that found no session, or that the database refused, drops its
//!   tombstone again, so that calls with unknown keys leave nothing behind.
//! - A load that finds a tombstone reads the database and leaves the cache
//!   alone.
//! - A fill writes only where nothing live is cached (an insert, or a
//!   compare-and-set `patch` of the cache engine over an expired record),
//!   and only within `--store-timeout` of the load's start. A claim made
//!   after the load read the database keeps the fill out, since the
//!   tombstone outlives any fill that started before it; a fill that comes
//!   first is replaced by the claim. An insert (a fresh key) is cached the
//!   same way.
//!
//! This needs nothing of the cache engine beyond the [`SessionStore`]
//! contract, and nothing kept inside one replica. It needs the replicas'
//! clocks to agree (a tombstone's expiry is the writer's clock) and a Redis
//! cache that does not evict (`maxmemory-policy noeviction`): an evicted
//! tombstone would let a late fill land. What it does not order are two
//! writes of one session racing each other: the one whose claim came first
//! may be published although the other reached the database last, and stay
//! cached until the session's next write or expiry, as with Django's
//! cached_db. A Django app on the same table sees only the database, and
//! its writes are not seen through the cache.
//!
//! A claim that cannot reach the cache at all would leave an older copy
//! there. This replica remembers such keys and reads them from the database,
//! claiming their cached copy as soon as the cache answers again. Other
//! replicas sharing the cache can still see that older copy until the
//! session's next write or its expiry.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::{Migration, Patcher, PendingMigration, SessionStore, StoreError, StoreGauges};
use crate::error::ErrorChain;
use crate::session::{ExpireDate, InvalidInput, Record, SessionKey};

/// Keys whose cached copy may be stale that one replica keeps track of.
/// Past this, it stops using the cache until it restarts, which is always
/// safe; the bound only caps memory during a long cache outage.
const MAX_STALE_KEYS: usize = 1_000_000;

/// The shortest life of a tombstone, whatever `--store-timeout`: room for a
/// slow Redis and for the clocks of replicas drifting a little apart.
/// Longer costs little: a deleted session stays deleted anyway, and a
/// session whose write was cut off is read from the database meanwhile.
const MIN_TOMBSTONE_LIFETIME: TimeDelta = TimeDelta::seconds(30);

/// A tombstone outlives any fill that started before its claim: such a fill
/// makes its last cache call within one store timeout of its start, and
/// that call takes at most one more. Four store timeouts leave room for the
/// claim's own calls.
const TOMBSTONE_LIFETIME_IN_TIMEOUTS: u32 = 4;

/// Attempts at putting a record into the cache. One fails only when another
/// call created or removed the cached copy in between, so a handful settles
/// any burst of one user's requests.
const PUT_ATTEMPTS: u32 = 8;

/// How the `session_data` of a tombstone starts. Neither codec writes it:
/// JSON data is an object, and Django's signed values are base64 text.
const TOMBSTONE_PREFIX: &str = "~tombstone:";

fn is_tombstone(record: &Record) -> bool {
    record.session_data.starts_with(TOMBSTONE_PREFIX)
}

/// A database engine with a cache engine in front of it.
#[derive(Debug)]
pub struct CachedStore {
    database: Arc<dyn SessionStore>,
    cache: Arc<dyn SessionStore>,
    stale: Mutex<Stale>,
    /// How long after its start a load may still fill the cache.
    fill_deadline: Duration,
    tombstone_lifetime: TimeDelta,
    /// What the last ping heard from the cache, so that an outage is
    /// logged once, not at every ping.
    cache_answered: AtomicBool,
}

/// Sessions whose cached copy may be older than the database's.
#[derive(Debug, Default)]
struct Stale {
    keys: HashSet<SessionKey>,
    /// Too many to track: the cache is bypassed from now on.
    overflowed: bool,
}

/// A write's claim on a session in the cache.
#[derive(Debug)]
struct Claim {
    /// Its tombstone's `session_data`.
    data: String,
    /// No other write's claim was live when this one was made. When one
    /// was, the two writes may reach the database in either order, so
    /// neither result is cached: the tombstone stays until it expires.
    publishable: bool,
}

/// What a put into the cache may replace.
#[derive(Clone, Copy, Debug)]
enum Over<'a> {
    /// Nothing live: a fill, or an insert of a fresh key.
    Nothing,
    /// The tombstone of this claim, live: a write publishing its result.
    Own(&'a Claim),
}

/// How a put into the cache went.
#[derive(Debug, PartialEq, Eq)]
enum Put {
    Stored,
    /// What the cache holds may not be replaced, or the put came too late;
    /// the cache is as it was.
    Kept,
    /// The cached copy kept changing under each attempt.
    Contended,
}

impl CachedStore {
    /// `database` behind `cache`; `timeout` is `--store-timeout`, which
    /// bounds every call to either.
    pub fn new(
        database: Arc<dyn SessionStore>,
        cache: Arc<dyn SessionStore>,
        timeout: Duration,
    ) -> Self {
        let lifetime = TimeDelta::from_std(timeout.saturating_mul(TOMBSTONE_LIFETIME_IN_TIMEOUTS))
            .unwrap_or(TimeDelta::MAX)
            .max(MIN_TOMBSTONE_LIFETIME);
        Self {
            database,
            cache,
            stale: Mutex::new(Stale::default()),
            fill_deadline: timeout,
            tombstone_lifetime: lifetime,
            cache_answered: AtomicBool::new(true),
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
    /// claim it so that it can be again.
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
        if self.claim(key).await.is_some() {
            self.stale().keys.remove(key);
        }
        false
    }

    /// Puts a tombstone of a new claim over whatever is cached under `key`,
    /// before a write to the database. `None` when that failed (the key is
    /// then read from the database by this replica).
    async fn claim(&self, key: &SessionKey) -> Option<Claim> {
        let data = format!("{TOMBSTONE_PREFIX}{:016x}", rand::random::<u64>());
        let now = Utc::now();
        let expire_date = now
            .checked_add_signed(self.tombstone_lifetime)
            .and_then(|expiry| ExpireDate::new(expiry).ok())?;
        let tombstone = Record {
            session_data: data.clone(),
            expire_date,
        };
        match self.put_tombstone(key, tombstone, now).await {
            Ok(Some(contended)) => Some(Claim {
                data,
                publishable: !contended,
            }),
            Ok(None) => {
                self.mark_stale(key);
                tracing::warn!(
                    "cannot put a tombstone into the cache: the session kept changing; the database answers instead"
                );
                None
            }
            // Nothing new fits (Redis at maxmemory, a full memory cache):
            // drop the cached copy instead, which Redis allows even then; a
            // fill cannot land in a full cache either.
            Err(StoreError::Full(_)) => {
                if let Err(err) = self.cache.delete(key).await {
                    self.mark_stale(key);
                    cache_failed("cannot drop a session from the cache", &err);
                }
                None
            }
            Err(err) => {
                self.mark_stale(key);
                cache_failed("cannot put a tombstone into the cache", &err);
                None
            }
        }
    }

    /// Puts `tombstone` over whatever is cached under `key`; says whether it
    /// replaced another write's live tombstone, `None` if the cached copy
    /// kept changing.
    async fn put_tombstone(
        &self,
        key: &SessionKey,
        tombstone: Record,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>, StoreError> {
        for _ in 0..PUT_ATTEMPTS {
            // A read-modify-write of the cache engine, to learn what was
            // there as it is replaced.
            let contended = Arc::new(AtomicBool::new(false));
            let patcher: Patcher = {
                let (data, contended) = (tombstone.session_data.clone(), contended.clone());
                Box::new(move |cached: Option<String>| {
                    let live_tombstone =
                        cached.is_some_and(|cached| cached.starts_with(TOMBSTONE_PREFIX));
                    contended.store(live_tombstone, Ordering::Relaxed);
                    Ok(data.clone())
                })
            };
            match self
                .cache
                .patch(key, patcher, tombstone.expire_date, now)
                .await
            {
                Ok(_) => return Ok(Some(contended.load(Ordering::Relaxed))),
                Err(StoreError::NotFound) => {}
                Err(err) => return Err(err),
            }
            match self.cache.insert(key, tombstone.clone()).await {
                Ok(()) => return Ok(Some(false)),
                // Cached meanwhile: replace that.
                Err(StoreError::AlreadyExists) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Puts `record`, just written to the database, in place of the
    /// tombstone of `claim`, if the cache still holds it.
    async fn publish(&self, key: &SessionKey, claim: Option<Claim>, record: Record) {
        let Some(claim) = claim.filter(|claim| claim.publishable) else {
            return;
        };
        if is_tombstone(&record) {
            // Written by someone else; cached, it would read as a tombstone.
            return;
        }
        if let Err(err) = self
            .put(key, record, Over::Own(&claim), Utc::now(), None)
            .await
        {
            // The tombstone stays until it expires: at worst, reads go to
            // the database meanwhile.
            cache_failed("cannot save to the cache", &err);
        }
    }

    /// Drops the tombstone of `claim` after a write that left the database as
    /// it was: nothing cached can be older than the database then.
    async fn release(&self, key: &SessionKey, claim: Option<Claim>) {
        if claim.is_some()
            && let Err(err) = self.cache.delete(key).await
        {
            // The tombstone expires by itself.
            cache_failed("cannot drop a session from the cache", &err);
        }
    }

    /// Settles the claim of a write that failed: a write the database
    /// refused, or that found no session, changed nothing; any other failure
    /// may have changed the session, and the tombstone stays.
    async fn settle_failure(&self, key: &SessionKey, claim: Option<Claim>, err: &StoreError) {
        if matches!(
            err,
            StoreError::NotFound
                | StoreError::AlreadyExists
                | StoreError::Invalid(_)
                | StoreError::Full(_)
        ) {
            self.release(key, claim).await;
        }
    }

    /// Caches `record`, just read from (or inserted into) the database,
    /// unless something live is cached already or `deadline` has passed.
    async fn fill(
        &self,
        key: &SessionKey,
        record: Record,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) {
        if is_tombstone(&record) {
            return;
        }
        if let Err(err) = self.put(key, record, Over::Nothing, now, deadline).await {
            // Nothing stale is left behind: at worst the fill is missing.
            cache_failed("cannot save to the cache", &err);
        }
    }

    /// Puts `record` into the cache in place of what `over` allows, with
    /// the cache engine's own atomic steps only (insert if absent, update or
    /// compare-and-set patch if present), so that it works across replicas.
    /// Gives up before any step that would start after `deadline`.
    async fn put(
        &self,
        key: &SessionKey,
        record: Record,
        over: Over<'_>,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<Put, StoreError> {
        // A fill expects nothing cached; a write, its own tombstone.
        let mut insert_first = matches!(over, Over::Nothing);
        for _ in 0..PUT_ATTEMPTS {
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(Put::Kept);
            }
            if insert_first {
                match self.cache.insert(key, record.clone()).await {
                    Ok(()) => return Ok(Put::Stored),
                    Err(StoreError::AlreadyExists) => {}
                    Err(err) => return Err(err),
                }
            }
            insert_first = true;
            match self.replace(key, &record, over, now).await {
                // Gone meanwhile: insert instead, unless this was to replace
                // a tombstone of our own, which someone else has removed.
                Err(StoreError::NotFound) if matches!(over, Over::Own(_)) => return Ok(Put::Kept),
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
        over: Over<'_>,
        now: DateTime<Utc>,
    ) -> Result<Put, StoreError> {
        let wanted = match over {
            Over::Nothing => None,
            Over::Own(claim) => Some(claim.data.clone()),
        };
        // The engine's patch is an atomic read-modify-write, here used as a
        // compare-and-set: the patcher sees the cached data (`None` once
        // expired at `now`) and refuses to replace what it may not, which
        // leaves the cached copy as it was.
        let refused = Arc::new(AtomicBool::new(false));
        let patcher: Patcher = {
            let (data, refused) = (record.session_data.clone(), refused.clone());
            Box::new(move |cached: Option<String>| {
                let replaceable = match (&wanted, cached) {
                    // A fill replaces only what has expired.
                    (None, cached) => cached.is_none(),
                    // A write replaces only its own tombstone, still live.
                    (Some(own), cached) => cached.as_ref() == Some(own),
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
            Ok(_) => Ok(Put::Stored),
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

    async fn pending_migrations(&self) -> Result<Vec<PendingMigration>, StoreError> {
        let mut pending = self.database.pending_migrations().await?;
        pending.extend(self.cache.pending_migrations().await?);
        Ok(pending)
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let deadline = Instant::now() + self.fill_deadline;
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
        let loaded = self.database.load(key, now).await?;
        if let Some(record) = &loaded {
            self.fill(key, record.clone(), now, Some(deadline)).await;
        }
        Ok(loaded)
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        // Only the database knows about expired rows that still exist.
        self.database.exists(key).await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        self.database.insert(key, record.clone()).await?;
        // Nothing older can be cached under a key just inserted; a write
        // that follows claims over this copy.
        self.fill(key, record, Utc::now(), None).await;
        Ok(())
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let claim = self.claim(key).await;
        match self.database.update(key, record.clone()).await {
            Ok(()) => {
                self.publish(key, claim, record).await;
                Ok(())
            }
            Err(err) => {
                self.settle_failure(key, claim, &err).await;
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
    ) -> Result<Record, StoreError> {
        let claim = self.claim(key).await;
        match self.database.patch(key, patcher, expire_date, now).await {
            Ok(patched) => {
                self.publish(key, claim, patched.clone()).await;
                Ok(patched)
            }
            Err(err) => {
                self.settle_failure(key, claim, &err).await;
                Err(err)
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let claim = self.claim(key).await;
        let deleted = self.database.delete(key).await;
        if let Ok(false) = deleted {
            self.release(key, claim).await;
        }
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
        // The new key is freshly drawn: nothing is cached under it, and the
        // next load fills it.
        let claim = self.claim(old_key).await;
        let cycled = self
            .database
            .cycle_key(old_key, new_key, session_data, expire_date, now)
            .await;
        if let Err(err) = &cycled {
            self.settle_failure(old_key, claim, err).await;
        }
        cycled
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

    /// Pings both. Only the database decides the answer: with the cache
    /// down every call still succeeds, from the database, so a shared cache
    /// failing must not take every replica out of service. A cache that
    /// stops or starts answering is logged once.
    async fn ping(&self) -> Result<(), StoreError> {
        let (database, cache) = tokio::join!(self.database.ping(), self.cache.ping());
        let answered = cache.is_ok();
        if self.cache_answered.swap(answered, Ordering::Relaxed) != answered {
            match cache {
                Ok(()) => tracing::info!("the cache answers again"),
                Err(err) => cache_failed("the cache does not answer", &err),
            }
        }
        database
    }

    /// The database's: it holds the sessions and answers every miss, so
    /// its pool and files are what an operator watches.
    fn gauges(&self) -> StoreGauges {
        self.database.gauges()
    }

    async fn close(&self) {
        self.database.close().await;
        self.cache.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreOptions, StoreUrl, open};

    async fn memory() -> Arc<dyn SessionStore> {
        let url: StoreUrl = "memory://".parse().unwrap();
        open(&url, &StoreOptions::default()).await.unwrap()
    }

    #[tokio::test]
    async fn a_ping_answers_as_the_database_does_whatever_the_cache_does() {
        let (database, cache) = (memory().await, memory().await);
        let store = CachedStore::new(database.clone(), cache.clone(), Duration::from_secs(1));
        store.ping().await.unwrap();
        cache.close().await;
        store.ping().await.unwrap();
        database.close().await;
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
}
