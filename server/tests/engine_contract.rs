//! The engine contract, written once and instantiated per engine, so that a
//! failure reads `sqlite::expire_date_equal_to_now_is_neither_loaded_nor_purged`.
//! Engines take `now` as an argument, so these tests set the clock instead of
//! sleeping.
//!
//! Where an engine's semantics differ by design, the harness says so
//! through a flag of [`Subject`] and the test states both expectations,
//! rather than asserting less for every engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use common::redis_server;
use sessiond::session::{ExpireDate, InvalidInput, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreConfig, StoreError, StoreOptions, StoreUrl};

/// An engine under test and whatever keeps its storage alive.
struct Subject {
    store: Arc<dyn SessionStore>,
    /// The clock the test runs on: what it passes as `now`, and what its
    /// expiry dates are relative to.
    now: DateTime<Utc>,
    /// Expired sessions vanish on the engine's own clock (Redis key expiry)
    /// instead of staying until a purge: `clear_expired` has nothing to
    /// remove and returns 0, and `exists` turns false once the engine's clock
    /// passes the expiry.
    natural_expiry: bool,
    _guard: Vec<Box<dyn std::any::Any>>,
}

/// A fixed instant for engines that keep no clock of their own: any date
/// works, and a fixed one makes failures reproducible.
fn fixed_now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T12:00:00.250000Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// How far the Redis tests' clock runs ahead of the real one. Redis expires
/// keys on its own (real) clock, so a fixed date in the past would make it
/// drop every session at once; ahead by more than any test's span, every
/// session a test writes stays in Redis while the test decides by its `now`
/// what has expired, exactly as with the SQL engines.
const REDIS_CLOCK_AHEAD: TimeDelta = TimeDelta::minutes(10);

/// Opens, for one test, the engine `store` names with the cache `cache`
/// names in front of it (if any), and migrates it. In the URLs, `{dir}`
/// stands for a temporary directory, `{postgres}` for a PostgreSQL URL with
/// a schema of the test's own, `{redis}` for a Redis URL with a key prefix
/// of the test's own. `None` when a service is missing outside CI (the skip
/// is printed).
async fn engine(test: &str, store: &str, cache: Option<&str>) -> Option<Subject> {
    let uses =
        |service: &str| store.contains(service) || cache.is_some_and(|c| c.contains(service));
    let mut guard: Vec<Box<dyn std::any::Any>> = Vec::new();
    let mut urls = vec![store.to_owned()];
    urls.extend(cache.map(str::to_owned));
    if uses("{dir}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        urls.iter_mut()
            .for_each(|url| *url = url.replace("{dir}", &path));
        guard.push(Box::new(dir));
    }
    if uses("{postgres}") {
        if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
            return None;
        }
        let schema = common::PgSchema::new();
        urls.iter_mut()
            .for_each(|url| *url = url.replace("{postgres}", &schema.url()));
        guard.push(Box::new(schema));
    }
    if uses("{redis}") {
        if !redis_server::shared_available(&format!("engine_contract {test}")).await {
            return None;
        }
        let prefix = redis_server::unique_prefix(test);
        let url = format!("redis://{}/0?prefix={prefix}", redis_server::SHARED_ADDR);
        urls.iter_mut()
            .for_each(|each| *each = each.replace("{redis}", &url));
        guard.push(Box::new(redis_server::Cleanup { prefix }));
    }
    let config = StoreConfig {
        url: urls[0].parse().unwrap(),
        cache: urls.get(1).map(|url| url.parse().unwrap()),
        options: StoreOptions::default(),
    };
    let store_is_redis = matches!(config.url, StoreUrl::Redis(_));
    let store_handle = config.open().await.unwrap();
    store_handle.migrate().await.unwrap();
    Some(Subject {
        store: store_handle,
        now: if uses("{redis}") {
            Utc::now() + REDIS_CLOCK_AHEAD
        } else {
            fixed_now()
        },
        natural_expiry: store_is_redis,
        _guard: guard,
    })
}

fn key(text: &str) -> SessionKey {
    SessionKey::parse(text).unwrap()
}

fn record(data: &str, expire: DateTime<Utc>) -> Record {
    Record {
        session_data: data.to_owned(),
        expire_date: ExpireDate::new(expire).unwrap(),
    }
}

async fn expire_date_equal_to_now_is_neither_loaded_nor_purged(engine: Subject) {
    let Subject {
        store,
        now,
        natural_expiry,
        _guard,
    } = engine;
    store
        .insert(&key("edgecase1"), record("{}", now))
        .await
        .unwrap();
    assert_eq!(store.load(&key("edgecase1"), now).await.unwrap(), None);
    assert_eq!(
        store::clear_expired(store.as_ref(), now, 100)
            .await
            .unwrap(),
        0
    );
    assert!(store.exists(&key("edgecase1")).await.unwrap());

    let one_micro_later = now + TimeDelta::microseconds(1);
    let purged = store::clear_expired(store.as_ref(), one_micro_later, 100)
        .await
        .unwrap();
    if natural_expiry {
        // Nothing to purge: the engine drops the session on its own clock.
        assert_eq!(purged, 0);
    } else {
        assert_eq!(purged, 1);
        assert!(!store.exists(&key("edgecase1")).await.unwrap());
    }
}

async fn a_session_expiring_one_microsecond_after_now_loads(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let expire = now + TimeDelta::microseconds(1);
    store
        .insert(&key("edgecase2"), record(r#"{"a":1}"#, expire))
        .await
        .unwrap();
    let loaded = store.load(&key("edgecase2"), now).await.unwrap().unwrap();
    assert_eq!(loaded, record(r#"{"a":1}"#, expire));
}

async fn insert_never_overwrites(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = now + TimeDelta::hours(1);
    store
        .insert(&key("taken0000"), record(r#"{"v":1}"#, later))
        .await
        .unwrap();
    let err = store
        .insert(&key("taken0000"), record(r#"{"v":2}"#, later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    let loaded = store.load(&key("taken0000"), now).await.unwrap().unwrap();
    assert_eq!(loaded.session_data, r#"{"v":1}"#);
}

async fn update_never_resurrects(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = now + TimeDelta::hours(1);
    let err = store
        .update(&key("missing00"), record("{}", later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!store.exists(&key("missing00")).await.unwrap());
}

async fn cycle_key_is_all_or_nothing(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = now + TimeDelta::hours(1);
    store
        .insert(&key("oldkey000"), record(r#"{"u":1}"#, later))
        .await
        .unwrap();
    store
        .insert(&key("newkey000"), record(r#"{"u":2}"#, later))
        .await
        .unwrap();

    // The new key is taken: nothing may change.
    let err = store
        .cycle_key(
            &key("oldkey000"),
            &key("newkey000"),
            None,
            ExpireDate::new(later).unwrap(),
            now,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(
        store
            .load(&key("oldkey000"), now)
            .await
            .unwrap()
            .unwrap()
            .session_data,
        r#"{"u":1}"#
    );
    assert_eq!(
        store
            .load(&key("newkey000"), now)
            .await
            .unwrap()
            .unwrap()
            .session_data,
        r#"{"u":2}"#
    );

    store
        .cycle_key(
            &key("oldkey000"),
            &key("newkey111"),
            None,
            ExpireDate::new(later).unwrap(),
            now,
        )
        .await
        .unwrap();
    assert!(!store.exists(&key("oldkey000")).await.unwrap());
    assert_eq!(
        store
            .load(&key("newkey111"), now)
            .await
            .unwrap()
            .unwrap()
            .session_data,
        r#"{"u":1}"#
    );
}

async fn a_large_clear_expired_removes_exactly_the_expired_rows(engine: Subject) {
    let Subject {
        store,
        now,
        natural_expiry,
        _guard,
    } = engine;
    let earlier = now - TimeDelta::seconds(1);
    let later = now + TimeDelta::seconds(1);
    let mut writes = Vec::new();
    for n in 0..2_500 {
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            let expire = if n % 5 == 0 { later } else { earlier };
            store
                .insert(&key(&format!("bulk{n:06}")), record("{}", expire))
                .await
                .unwrap();
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    let purged = store::clear_expired(store.as_ref(), now, 300)
        .await
        .unwrap();
    assert!(store.load(&key("bulk000000"), now).await.unwrap().is_some());
    assert!(store.load(&key("bulk000001"), now).await.unwrap().is_none());
    if natural_expiry {
        // The engine drops them itself when its clock gets there.
        assert_eq!(purged, 0);
        return;
    }
    assert_eq!(purged, 2_000);
    assert!(store.exists(&key("bulk000000")).await.unwrap());
    assert!(!store.exists(&key("bulk000001")).await.unwrap());
    assert_eq!(
        store::clear_expired(store.as_ref(), now, 300)
            .await
            .unwrap(),
        0
    );
}

/// A patcher that sets `"name": true` on whatever data it is given.
fn set_flag(name: &'static str) -> store::Patcher {
    Box::new(move |stored: Option<String>| {
        let mut data: serde_json::Map<String, serde_json::Value> = stored
            .map_or_else(Default::default, |text| {
                serde_json::from_str(&text).unwrap()
            });
        data.insert(name.to_owned(), true.into());
        Ok(serde_json::Value::Object(data).to_string())
    })
}

async fn patches_are_atomic_read_modify_writes(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = ExpireDate::new(now + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("patched00"), record("{}", later.instant()))
        .await
        .unwrap();
    const NAMES: [&str; 32] = [
        "f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10", "f11", "f12",
        "f13", "f14", "f15", "f16", "f17", "f18", "f19", "f20", "f21", "f22", "f23", "f24", "f25",
        "f26", "f27", "f28", "f29", "f30", "f31",
    ];
    let mut patches = Vec::new();
    for name in NAMES {
        let store = store.clone();
        patches.push(tokio::spawn(async move {
            store
                .patch(&key("patched00"), set_flag(name), later, now)
                .await
                .unwrap();
        }));
    }
    for patch in patches {
        patch.await.unwrap();
    }
    let loaded = store.load(&key("patched00"), now).await.unwrap().unwrap();
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&loaded.session_data).unwrap();
    assert_eq!(data.len(), NAMES.len(), "{}", loaded.session_data);
}

async fn a_patch_sees_no_data_of_an_expired_row_and_none_of_a_missing_one(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = ExpireDate::new(now + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("expired00"), record(r#"{"old":1}"#, now))
        .await
        .unwrap();
    store
        .patch(&key("expired00"), set_flag("new"), later, now)
        .await
        .unwrap();
    let loaded = store.load(&key("expired00"), now).await.unwrap().unwrap();
    assert_eq!(loaded.session_data, r#"{"new":true}"#);

    let err = store
        .patch(&key("missing00"), set_flag("new"), later, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!store.exists(&key("missing00")).await.unwrap());
}

async fn delete_says_whether_there_was_a_session(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = now + TimeDelta::hours(1);
    store
        .insert(&key("deleted00"), record("{}", later))
        .await
        .unwrap();
    assert!(store.delete(&key("deleted00")).await.unwrap());
    assert!(!store.delete(&key("deleted00")).await.unwrap());
    assert!(!store.exists(&key("deleted00")).await.unwrap());
    assert_eq!(store.load(&key("deleted00"), now).await.unwrap(), None);
    let err = store
        .update(&key("deleted00"), record("{}", later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

async fn update_replaces_the_data_and_expiry_of_an_expired_session(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = now + TimeDelta::hours(1);
    store
        .insert(&key("renewed00"), record(r#"{"old":1}"#, now))
        .await
        .unwrap();
    store
        .update(&key("renewed00"), record(r#"{"new":1}"#, later))
        .await
        .unwrap();
    assert_eq!(
        store.load(&key("renewed00"), now).await.unwrap(),
        Some(record(r#"{"new":1}"#, later))
    );
}

async fn cycle_key_without_data_needs_a_live_session(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = ExpireDate::new(now + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("stale0000"), record(r#"{"u":1}"#, now))
        .await
        .unwrap();
    for old in ["stale0000", "missing00"] {
        let err = store
            .cycle_key(&key(old), &key("fresh0000"), None, later, now)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{old}: {err:?}");
    }
    assert!(store.exists(&key("stale0000")).await.unwrap());
    assert!(!store.exists(&key("fresh0000")).await.unwrap());
}

async fn cycle_key_with_data_stores_that_data_under_the_new_key(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = ExpireDate::new(now + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("before000"), record(r#"{"u":1}"#, later.instant()))
        .await
        .unwrap();
    store
        .cycle_key(
            &key("before000"),
            &key("after0000"),
            Some(r#"{"u":2}"#.to_owned()),
            later,
            now,
        )
        .await
        .unwrap();
    assert!(!store.exists(&key("before000")).await.unwrap());
    assert_eq!(
        store.load(&key("after0000"), now).await.unwrap(),
        Some(record(r#"{"u":2}"#, later.instant()))
    );
    // With data, the old session need not exist (Django cycles a session
    // that was never saved the same way).
    store
        .cycle_key(
            &key("neversaved"),
            &key("after1111"),
            Some("{}".to_owned()),
            later,
            now,
        )
        .await
        .unwrap();
    assert!(store.exists(&key("after1111")).await.unwrap());
}

async fn a_refused_patch_changes_nothing(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    let later = ExpireDate::new(now + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("refused00"), record(r#"{"keep":1}"#, later.instant()))
        .await
        .unwrap();
    let refuse: store::Patcher =
        Box::new(|_| Err(InvalidInput::PatchedTooLarge { size: 2, limit: 1 }));
    let other_expiry = ExpireDate::new(now + TimeDelta::hours(2)).unwrap();
    let err = store
        .patch(&key("refused00"), refuse, other_expiry, now)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        store.load(&key("refused00"), now).await.unwrap(),
        Some(record(r#"{"keep":1}"#, later.instant()))
    );
}

async fn writes_after_close_fail_cleanly(engine: Subject) {
    let Subject {
        store, now, _guard, ..
    } = engine;
    store.close().await;
    let err = store
        .insert(&key("afterclose"), record("{}", now))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

async fn ping_answers_while_open_and_fails_once_closed(engine: Subject) {
    let Subject { store, _guard, .. } = engine;
    store.ping().await.unwrap();
    // Again: a ping changes nothing that the next one depends on.
    store.ping().await.unwrap();
    store.close().await;
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// Instantiates every contract test for each engine: one line per engine,
/// its store URL and optionally a cache's, as [`engine`] reads them.
macro_rules! contract {
    ($($engine:ident => $store:literal $(+ $cache:literal)?,)*) => {
        $(
            contract!(@engine $engine ($store, None $(.or(Some($cache)))?):
                expire_date_equal_to_now_is_neither_loaded_nor_purged,
                a_session_expiring_one_microsecond_after_now_loads,
                insert_never_overwrites,
                update_never_resurrects,
                cycle_key_is_all_or_nothing,
                a_large_clear_expired_removes_exactly_the_expired_rows,
                patches_are_atomic_read_modify_writes,
                a_patch_sees_no_data_of_an_expired_row_and_none_of_a_missing_one,
                delete_says_whether_there_was_a_session,
                update_replaces_the_data_and_expiry_of_an_expired_session,
                cycle_key_without_data_needs_a_live_session,
                cycle_key_with_data_stores_that_data_under_the_new_key,
                a_refused_patch_changes_nothing,
                writes_after_close_fail_cleanly,
                ping_answers_while_open_and_fails_once_closed,
            );
        )*
    };
    (@engine $engine:ident ($store:literal, $cache:expr): $($test:ident),* $(,)?) => {
        mod $engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let name = concat!(stringify!($engine), "::", stringify!($test));
                    let cache: Option<&str> = $cache;
                    if let Some(engine) = super::engine(name, $store, cache).await {
                        super::$test(engine).await;
                    }
                }
            )*
        }
    };
}

contract! {
    sqlite => "sqlite://{dir}/engine.sqlite3",
    postgres => "{postgres}",
    file => "file://{dir}",
    memory => "memory://",
    redis => "{redis}",
    // Django's cached_db: SQLite behind an in-process cache, and
    // PostgreSQL behind Redis, as replicas would run it.
    cached_sqlite => "sqlite://{dir}/engine.sqlite3" + "memory://",
    cached_postgres => "{postgres}" + "{redis}",
}
