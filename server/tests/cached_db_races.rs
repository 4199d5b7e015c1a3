//! Races between a cache fill and a write in cached_db, forced in a fixed
//! order: a database engine that stops after it answered lets a test run
//! another call to completion in between, as a slower request would.
//!
//! Every race runs between two replicas (two `CachedStore`s over one
//! database and one cache), so nothing kept inside one sessiond process can
//! be what makes it come out right. The cache is the in-process engine, and
//! Redis reached through two connections of its own, as two sessiond
//! processes would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use common::redis_server;
use sessiond::session::{ExpireDate, Record, SessionKey};
use sessiond::store::{
    CachedStore, DEFAULT_STORE_TIMEOUT, Migration, Patcher, SessionStore, StoreConfig, StoreError,
    StoreUrl,
};
use tokio::sync::oneshot;

/// A point where a call of [`Gated`] stops once, when armed.
#[derive(Debug, Default)]
struct Gate(Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>);

impl Gate {
    /// Makes the next call stop after the database answered: the first
    /// receiver says it got there, the sender lets it go on.
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (release_tx, release) = oneshot::channel();
        *self.0.lock().unwrap() = Some((reached, release));
        (reached_rx, release_tx)
    }

    async fn pass(&self) {
        let armed = self.0.lock().unwrap().take();
        if let Some((reached, release)) = armed {
            reached.send(()).unwrap();
            release.await.unwrap();
        }
    }
}

/// The real database engine, with a gate after `load` and after `update`.
#[derive(Debug)]
struct Gated {
    database: Arc<dyn SessionStore>,
    after_load: Gate,
    after_update: Gate,
}

#[async_trait]
impl SessionStore for Gated {
    async fn migrate(&self) -> Result<Vec<Migration>, StoreError> {
        self.database.migrate().await
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Option<Record>, StoreError> {
        let loaded = self.database.load(key, now).await;
        self.after_load.pass().await;
        loaded
    }

    async fn exists(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.database.exists(key).await
    }

    async fn insert(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        self.database.insert(key, record).await
    }

    async fn update(&self, key: &SessionKey, record: Record) -> Result<(), StoreError> {
        let updated = self.database.update(key, record).await;
        self.after_update.pass().await;
        updated
    }

    async fn patch(
        &self,
        key: &SessionKey,
        patcher: Patcher,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<Record, StoreError> {
        self.database.patch(key, patcher, expire_date, now).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.database.delete(key).await
    }

    async fn cycle_key(
        &self,
        old_key: &SessionKey,
        new_key: &SessionKey,
        session_data: Option<String>,
        expire_date: ExpireDate,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.database
            .cycle_key(old_key, new_key, session_data, expire_date, now)
            .await
    }

    async fn clear_expired_batch(&self, now: DateTime<Utc>, limit: u64) -> Result<u64, StoreError> {
        self.database.clear_expired_batch(now, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.database.ping().await
    }

    async fn close(&self) {
        self.database.close().await;
    }
}

/// Two replicas over one SQLite database and one cache: `slow` goes through
/// the gates, `other` straight to the database.
struct Replicas {
    gates: Arc<Gated>,
    database: Arc<dyn SessionStore>,
    /// The cache as `slow` sees it.
    cache: Arc<dyn SessionStore>,
    slow: Arc<CachedStore>,
    other: Arc<CachedStore>,
    now: DateTime<Utc>,
    _guard: Vec<Box<dyn std::any::Any>>,
}

/// Sets up [`Replicas`] with the cache `cache` names: `memory://` (one map
/// both replicas share) or `{redis}` (the shared Redis under a key prefix of
/// the test's own, one connection per replica). `None` when Redis is missing
/// outside CI (the skip is printed).
async fn replicas(test: &str, cache: &str) -> Option<Replicas> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
    let mut guard: Vec<Box<dyn std::any::Any>> = vec![Box::new(dir)];
    let database = StoreConfig::new(sqlite.parse().unwrap())
        .open()
        .await
        .unwrap();
    database.migrate().await.unwrap();
    let (slow_cache, other_cache) = if cache == "{redis}" {
        if !redis_server::shared_available(&format!("cached_db_races {test}")).await {
            return None;
        }
        let prefix = redis_server::unique_prefix(test);
        let url: StoreUrl = format!("redis://{}/0?prefix={prefix}", redis_server::SHARED_ADDR)
            .parse()
            .unwrap();
        guard.push(Box::new(redis_server::Cleanup { prefix }));
        let config = StoreConfig::new(url);
        (config.open().await.unwrap(), config.open().await.unwrap())
    } else {
        let shared = StoreConfig::new(cache.parse().unwrap())
            .open()
            .await
            .unwrap();
        (shared.clone(), shared)
    };
    let gates = Arc::new(Gated {
        database: database.clone(),
        after_load: Gate::default(),
        after_update: Gate::default(),
    });
    Some(Replicas {
        slow: Arc::new(CachedStore::new(
            gates.clone(),
            slow_cache.clone(),
            DEFAULT_STORE_TIMEOUT,
        )),
        other: Arc::new(CachedStore::new(
            database.clone(),
            other_cache,
            DEFAULT_STORE_TIMEOUT,
        )),
        gates,
        database,
        cache: slow_cache,
        // The real clock: Redis expires keys by it.
        now: Utc::now(),
        _guard: guard,
    })
}

/// A patch that puts a cart into Ada's session.
fn add_cart() -> Patcher {
    Box::new(|_| Ok(r#"{"user":"ada","cart":[1]}"#.to_owned()))
}

fn key(text: &str) -> SessionKey {
    SessionKey::parse(text).unwrap()
}

fn session(data: &str, now: DateTime<Utc>) -> Record {
    Record {
        session_data: data.to_owned(),
        expire_date: ExpireDate::new(now + TimeDelta::hours(1)).unwrap(),
    }
}

impl Replicas {
    /// Stores `data` under `key` in the database only (a session the cache
    /// has not seen yet) and returns the record.
    async fn in_database_only(&self, key: &SessionKey, data: &str) -> Record {
        let record = session(data, self.now);
        self.database.insert(key, record.clone()).await.unwrap();
        record
    }

    /// Starts a load of `key` on the slow replica and returns once it has
    /// read the database; the load goes on when `release` is sent.
    async fn load_stopped_after_reading(
        &self,
        key: &SessionKey,
    ) -> (
        tokio::task::JoinHandle<Result<Option<Record>, StoreError>>,
        oneshot::Sender<()>,
    ) {
        let (read, release) = self.gates.after_load.arm();
        let (slow, key, now) = (self.slow.clone(), key.clone(), self.now);
        let load = tokio::spawn(async move { slow.load(&key, now).await });
        read.await.unwrap();
        (load, release)
    }

    /// What both replicas load for `key`, which must agree with the
    /// database, and what the cache holds of it.
    async fn assert_loads(&self, key: &SessionKey, expected: Option<&Record>) {
        let in_database = self.database.load(key, self.now).await.unwrap();
        assert_eq!(in_database.as_ref(), expected, "the database");
        for (name, replica) in [("slow", &self.slow), ("other", &self.other)] {
            let loaded = replica.load(key, self.now).await.unwrap();
            assert_eq!(loaded.as_ref(), expected, "a load from the {name} replica");
        }
    }

    /// Checks that the cache holds no live copy of `older`, a version of
    /// `key` that the database has moved past.
    async fn assert_no_stale_copy_cached(&self, key: &SessionKey, older: &Record) {
        let cached = self.cache.load(key, self.now).await.unwrap();
        assert!(
            cached.as_ref() != Some(older),
            "the cache still holds a copy older than the database"
        );
    }
}

async fn a_delete_during_a_load_is_not_undone_by_its_fill(replicas: Replicas) {
    let key = key("deleted0");
    let live = replicas.in_database_only(&key, r#"{"user":"ada"}"#).await;

    let (load, release) = replicas.load_stopped_after_reading(&key).await;
    assert!(replicas.other.delete(&key).await.unwrap());
    release.send(()).unwrap();
    // It read the session while it was live; that answer is fine.
    assert_eq!(load.await.unwrap().unwrap(), Some(live.clone()));

    replicas.assert_loads(&key, None).await;
    replicas.assert_no_stale_copy_cached(&key, &live).await;
}

async fn a_patch_during_a_load_is_not_undone_by_its_fill(replicas: Replicas) {
    let key = key("patched0");
    let before = replicas.in_database_only(&key, r#"{"user":"ada"}"#).await;

    let (load, release) = replicas.load_stopped_after_reading(&key).await;
    replicas
        .other
        .patch(&key, add_cart(), before.expire_date, replicas.now)
        .await
        .unwrap();
    release.send(()).unwrap();
    assert_eq!(load.await.unwrap().unwrap(), Some(before.clone()));

    let after = session(r#"{"user":"ada","cart":[1]}"#, replicas.now);
    replicas.assert_loads(&key, Some(&after)).await;
    replicas.assert_no_stale_copy_cached(&key, &before).await;
}

async fn a_key_cycled_during_a_load_is_not_brought_back_by_its_fill(replicas: Replicas) {
    let (old_key, new_key) = (key("oldkey00"), key("newkey00"));
    let live = replicas
        .in_database_only(&old_key, r#"{"user":"ada"}"#)
        .await;

    let (load, release) = replicas.load_stopped_after_reading(&old_key).await;
    replicas
        .other
        .cycle_key(&old_key, &new_key, None, live.expire_date, replicas.now)
        .await
        .unwrap();
    release.send(()).unwrap();
    assert_eq!(load.await.unwrap().unwrap(), Some(live.clone()));

    replicas.assert_loads(&old_key, None).await;
    replicas.assert_no_stale_copy_cached(&old_key, &live).await;
    replicas.assert_loads(&new_key, Some(&live)).await;
}

/// Not a fill, but the same resurrection: a save reaches the database just
/// before a delete, and its copy reaches the cache just after the delete's.
async fn a_save_overtaken_by_a_delete_does_not_put_the_session_back(replicas: Replicas) {
    let key = key("saved000");
    let first = session(r#"{"user":"ada"}"#, replicas.now);
    replicas.other.insert(&key, first).await.unwrap();

    let second = session(r#"{"user":"ada","theme":"dark"}"#, replicas.now);
    let (saved, release) = replicas.gates.after_update.arm();
    let save = {
        let (slow, key, second) = (replicas.slow.clone(), key.clone(), second.clone());
        tokio::spawn(async move { slow.update(&key, second).await })
    };
    saved.await.unwrap();
    assert!(replicas.other.delete(&key).await.unwrap());
    release.send(()).unwrap();
    // It was saved before it was deleted.
    save.await.unwrap().unwrap();

    replicas.assert_loads(&key, None).await;
    replicas.assert_no_stale_copy_cached(&key, &second).await;
}

/// Without a race, a load that misses fills the cache, for both replicas.
async fn a_load_that_misses_fills_the_cache(replicas: Replicas) {
    let key = key("missed00");
    let live = replicas.in_database_only(&key, r#"{"user":"ada"}"#).await;
    assert_eq!(
        replicas.slow.load(&key, replicas.now).await.unwrap(),
        Some(live.clone())
    );
    assert_eq!(
        replicas.cache.load(&key, replicas.now).await.unwrap(),
        Some(live)
    );
}

/// What keeps fills out is left only where there was a session: writes to
/// unknown keys do not fill the cache.
async fn writes_to_unknown_sessions_leave_nothing_in_the_cache(replicas: Replicas) {
    let key = key("unknown0");
    assert!(!replicas.other.delete(&key).await.unwrap());
    let err = replicas
        .other
        .update(&key, session("{}", replicas.now))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!replicas.cache.exists(&key).await.unwrap());
}

/// Whatever keeps a fill out after a write does not keep it out for good:
/// past its own expiry, the next load caches the session again.
async fn the_cache_is_filled_again_after_a_write(replicas: Replicas) {
    let key = key("refilled");
    let before = session(r#"{"v":1}"#, replicas.now);
    replicas.other.insert(&key, before.clone()).await.unwrap();
    let patch: Patcher = Box::new(|_| Ok(r#"{"v":2}"#.to_owned()));
    replicas
        .other
        .patch(&key, patch, before.expire_date, replicas.now)
        .await
        .unwrap();

    let later = replicas.now + TimeDelta::minutes(5);
    let after = session(r#"{"v":2}"#, replicas.now);
    assert_eq!(
        replicas.slow.load(&key, later).await.unwrap(),
        Some(after.clone())
    );
    assert_eq!(replicas.cache.load(&key, later).await.unwrap(), Some(after));
}

/// A write whose call is cut off (its deadline passed, its client went away)
/// after the database changed but before the cache heard of it leaves no
/// older copy served from the cache.
async fn a_write_cut_off_after_the_database_leaves_no_older_copy(replicas: Replicas) {
    let key = key("cutoff00");
    let before = replicas.in_database_only(&key, r#"{"user":"ada"}"#).await;
    // Cached, as a session in use is.
    replicas.assert_loads(&key, Some(&before)).await;
    assert_eq!(
        replicas.cache.load(&key, replicas.now).await.unwrap(),
        Some(before.clone())
    );

    let after = session(r#"{"user":"ada","cart":[1]}"#, replicas.now);
    let (written, _release) = replicas.gates.after_update.arm();
    let (slow, update_key, record) = (replicas.slow.clone(), key.clone(), after.clone());
    let update = tokio::spawn(async move { slow.update(&update_key, record).await });
    written.await.unwrap();
    // The database has the new data; the call is dropped right there.
    update.abort();
    assert!(update.await.unwrap_err().is_cancelled());

    replicas.assert_loads(&key, Some(&after)).await;
    replicas.assert_no_stale_copy_cached(&key, &before).await;
}

/// A patch keeps the session it wrote in the cache: a session written on
/// every request is still read from the cache.
async fn a_patched_session_stays_cached(replicas: Replicas) {
    let key = key("warmcach");
    let before = replicas.in_database_only(&key, r#"{"user":"ada"}"#).await;
    let patched = replicas
        .other
        .patch(&key, add_cart(), before.expire_date, replicas.now)
        .await
        .unwrap();
    assert_eq!(
        replicas.cache.load(&key, replicas.now).await.unwrap(),
        Some(patched)
    );
}

/// Instantiates every race for each cache: one line per cache, its URL as
/// [`replicas`] reads it.
macro_rules! races {
    ($($cache:ident => $url:literal,)*) => {
        $(
            races!(@cache $cache $url:
                a_delete_during_a_load_is_not_undone_by_its_fill,
                a_patch_during_a_load_is_not_undone_by_its_fill,
                a_key_cycled_during_a_load_is_not_brought_back_by_its_fill,
                a_save_overtaken_by_a_delete_does_not_put_the_session_back,
                a_load_that_misses_fills_the_cache,
                writes_to_unknown_sessions_leave_nothing_in_the_cache,
                the_cache_is_filled_again_after_a_write,
                a_write_cut_off_after_the_database_leaves_no_older_copy,
                a_patched_session_stays_cached,
            );
        )*
    };
    (@cache $cache:ident $url:literal: $($test:ident),* $(,)?) => {
        mod $cache {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let name = concat!(stringify!($cache), "::", stringify!($test));
                    if let Some(replicas) = super::replicas(name, $url).await {
                        super::$test(replicas).await;
                    }
                }
            )*
        }
    };
}

races! {
    memory => "memory://",
    redis => "{redis}",
}
