//! The engine contract, written once and instantiated per engine, so that a
//! failure reads `sqlite::expire_date_equal_to_now_is_neither_loaded_nor_purged`.
//! Engines take `now` as an argument, so these tests set the clock instead of
//! sleeping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sessiond::session::{ExpireDate, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreError, StoreOptions, StoreUrl};

/// An engine under test and whatever keeps its storage alive.
struct Engine {
    store: Arc<dyn SessionStore>,
    _guard: Box<dyn std::any::Any>,
}

async fn sqlite() -> Option<Engine> {
    let dir = tempfile::tempdir().unwrap();
    let url: StoreUrl = format!("sqlite://{}", dir.path().join("engine.sqlite3").display())
        .parse()
        .unwrap();
    let options = StoreOptions {
        timeout: Duration::from_secs(5),
    };
    let store = store::open(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    Some(Engine {
        store,
        _guard: Box::new(dir),
    })
}

/// `None` when PostgreSQL is not reachable outside CI (the skip is printed).
async fn postgres() -> Option<Engine> {
    if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
        return None;
    }
    let schema = common::PgSchema::new();
    let url: StoreUrl = schema.url().parse().unwrap();
    let options = StoreOptions {
        timeout: Duration::from_secs(5),
    };
    let store = store::open(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    Some(Engine {
        store,
        _guard: Box::new(schema),
    })
}

async fn file() -> Option<Engine> {
    let dir = tempfile::tempdir().unwrap();
    let url: StoreUrl = format!("file://{}", dir.path().display()).parse().unwrap();
    let options = StoreOptions {
        timeout: Duration::from_secs(5),
    };
    let store = store::open(&url, &options).await.unwrap();
    store.migrate().await.unwrap();
    Some(Engine {
        store,
        _guard: Box::new(dir),
    })
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T12:00:00.250000Z")
        .unwrap()
        .with_timezone(&Utc)
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

async fn expire_date_equal_to_now_is_neither_loaded_nor_purged(engine: Engine) {
    let store = engine.store;
    store
        .insert(&key("edgecase1"), record("{}", now()))
        .await
        .unwrap();
    assert_eq!(store.load(&key("edgecase1"), now()).await.unwrap(), None);
    assert_eq!(
        store::clear_expired(store.as_ref(), now(), 100)
            .await
            .unwrap(),
        0
    );
    assert!(store.exists(&key("edgecase1")).await.unwrap());

    let one_micro_later = now() + TimeDelta::microseconds(1);
    assert_eq!(
        store::clear_expired(store.as_ref(), one_micro_later, 100)
            .await
            .unwrap(),
        1
    );
}

async fn a_session_expiring_one_microsecond_after_now_loads(engine: Engine) {
    let store = engine.store;
    let expire = now() + TimeDelta::microseconds(1);
    store
        .insert(&key("edgecase2"), record(r#"{"a":1}"#, expire))
        .await
        .unwrap();
    let loaded = store.load(&key("edgecase2"), now()).await.unwrap().unwrap();
    assert_eq!(loaded, record(r#"{"a":1}"#, expire));
}

async fn insert_never_overwrites(engine: Engine) {
    let store = engine.store;
    let later = now() + TimeDelta::hours(1);
    store
        .insert(&key("taken0000"), record(r#"{"v":1}"#, later))
        .await
        .unwrap();
    let err = store
        .insert(&key("taken0000"), record(r#"{"v":2}"#, later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    let loaded = store.load(&key("taken0000"), now()).await.unwrap().unwrap();
    assert_eq!(loaded.session_data, r#"{"v":1}"#);
}

async fn update_never_resurrects(engine: Engine) {
    let store = engine.store;
    let later = now() + TimeDelta::hours(1);
    let err = store
        .update(&key("missing00"), record("{}", later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!store.exists(&key("missing00")).await.unwrap());
}

async fn cycle_key_is_all_or_nothing(engine: Engine) {
    let store = engine.store;
    let later = now() + TimeDelta::hours(1);
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
            now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");
    assert_eq!(
        store
            .load(&key("oldkey000"), now())
            .await
            .unwrap()
            .unwrap()
            .session_data,
        r#"{"u":1}"#
    );
    assert_eq!(
        store
            .load(&key("newkey000"), now())
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
            now(),
        )
        .await
        .unwrap();
    assert!(!store.exists(&key("oldkey000")).await.unwrap());
    assert_eq!(
        store
            .load(&key("newkey111"), now())
            .await
            .unwrap()
            .unwrap()
            .session_data,
        r#"{"u":1}"#
    );
}

async fn a_large_clear_expired_removes_exactly_the_expired_rows(engine: Engine) {
    let store = engine.store;
    let earlier = now() - TimeDelta::seconds(1);
    let later = now() + TimeDelta::seconds(1);
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
    assert_eq!(
        store::clear_expired(store.as_ref(), now(), 300)
            .await
            .unwrap(),
        2_000
    );
    assert!(store.exists(&key("bulk000000")).await.unwrap());
    assert!(!store.exists(&key("bulk000001")).await.unwrap());
    assert_eq!(
        store::clear_expired(store.as_ref(), now(), 300)
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

async fn patches_are_atomic_read_modify_writes(engine: Engine) {
    let store = engine.store;
    let later = ExpireDate::new(now() + TimeDelta::hours(1)).unwrap();
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
                .patch(&key("patched00"), set_flag(name), later, now())
                .await
                .unwrap();
        }));
    }
    for patch in patches {
        patch.await.unwrap();
    }
    let loaded = store.load(&key("patched00"), now()).await.unwrap().unwrap();
    let data: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&loaded.session_data).unwrap();
    assert_eq!(data.len(), NAMES.len(), "{}", loaded.session_data);
}

async fn a_patch_sees_no_data_of_an_expired_row_and_none_of_a_missing_one(engine: Engine) {
    let store = engine.store;
    let later = ExpireDate::new(now() + TimeDelta::hours(1)).unwrap();
    store
        .insert(&key("expired00"), record(r#"{"old":1}"#, now()))
        .await
        .unwrap();
    store
        .patch(&key("expired00"), set_flag("new"), later, now())
        .await
        .unwrap();
    let loaded = store.load(&key("expired00"), now()).await.unwrap().unwrap();
    assert_eq!(loaded.session_data, r#"{"new":true}"#);

    let err = store
        .patch(&key("missing00"), set_flag("new"), later, now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert!(!store.exists(&key("missing00")).await.unwrap());
}

async fn writes_after_close_fail_cleanly(engine: Engine) {
    let store = engine.store;
    store.close().await;
    let err = store
        .insert(&key("afterclose"), record("{}", now()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// One module per engine, each with every contract test, so a failure
/// reads `engine::test`.
macro_rules! contract {
    (engines: [$($engine:ident),* $(,)?], tests: $tests:tt) => {
        $( contract!(@engine $engine $tests); )*
    };
    (@engine $engine:ident [$($test:ident),* $(,)?]) => {
        mod $engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(engine) = super::$engine().await {
                        super::$test(engine).await;
                    }
                }
            )*
        }
    };
}

contract!(
    engines: [sqlite, postgres, file],
    tests: [
        expire_date_equal_to_now_is_neither_loaded_nor_purged,
        a_session_expiring_one_microsecond_after_now_loads,
        insert_never_overwrites,
        update_never_resurrects,
        cycle_key_is_all_or_nothing,
        a_large_clear_expired_removes_exactly_the_expired_rows,
        patches_are_atomic_read_modify_writes,
        a_patch_sees_no_data_of_an_expired_row_and_none_of_a_missing_one,
        writes_after_close_fail_cleanly,
    ]
);
