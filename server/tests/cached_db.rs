//! `--cache` in front of a database (Django's cached_db), through the real
//! server: reads come from the cache, writes go through, deletes and patches
//! leave a tombstone that sends loads to the database, and a cache that
//! fails only costs speed. Races between a fill and a write are forced in
//! `cached_db_races.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Proxy, TestServer, redis_server, stored_row};
use sessiond::Server;

/// Changes a row behind sessiond's back, so a test can tell whether an
/// answer came from the cache or from the database.
fn overwrite_in_database(server: &TestServer, key: &str, data: &str) {
    server
        .db()
        .execute(
            "UPDATE django_session SET session_data = ?2 WHERE session_key = ?1",
            [key, data],
        )
        .unwrap();
}

#[tokio::test]
async fn loads_are_served_from_the_cache_and_writes_go_through() {
    let server = TestServer::start_with(&["--cache", "memory://"]).await;
    let key = server
        .client
        .create(r#"{"v":1}"#, None)
        .await
        .unwrap()
        .session_key;
    assert_eq!(stored_row(&server.db(), &key).unwrap().0, r#"{"v":1}"#);

    overwrite_in_database(&server, &key, r#"{"v":"behind the cache"}"#);
    assert_eq!(
        server.client.load(&key).await.unwrap().unwrap().data,
        r#"{"v":1}"#
    );

    // A save writes the database, then replaces the cached copy.
    server
        .client
        .save(&key, r#"{"v":2}"#, None, false)
        .await
        .unwrap();
    assert_eq!(stored_row(&server.db(), &key).unwrap().0, r#"{"v":2}"#);
    overwrite_in_database(&server, &key, r#"{"v":"behind the cache"}"#);
    assert_eq!(
        server.client.load(&key).await.unwrap().unwrap().data,
        r#"{"v":2}"#
    );

    // A patch leaves a tombstone in the cache: loads read the database.
    server
        .client
        .patch(&key, r#"{"w":3}"#, &[], false, None)
        .await
        .unwrap();
    let patched = server.client.load(&key).await.unwrap().unwrap().data;
    assert_eq!(patched, r#"{"v":"behind the cache","w":3}"#);

    // A delete removes the row and leaves a tombstone in the cache.
    assert!(server.client.delete(&key).await.unwrap());
    assert_eq!(server.client.load(&key).await.unwrap(), None);
    assert_eq!(stored_row(&server.db(), &key), None);
    server.stop().await;
}

#[tokio::test]
async fn a_cycled_key_leaves_no_cached_copy_of_the_old_one() {
    let server = TestServer::start_with(&["--cache", "memory://"]).await;
    let key = server
        .client
        .create(r#"{"user":"ada"}"#, None)
        .await
        .unwrap()
        .session_key;
    server.client.load(&key).await.unwrap().unwrap();
    let cycled = server.client.cycle_key(&key, None, None).await.unwrap();
    assert_eq!(server.client.load(&key).await.unwrap(), None);
    assert_eq!(
        server
            .client
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"user":"ada"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn when_the_cache_fails_the_database_answers() {
    if !redis_server::shared_available("cached_db::when_the_cache_fails_the_database_answers").await
    {
        return;
    }
    let mut proxy = Proxy::start(redis_server::SHARED_ADDR).await;
    let prefix = redis_server::unique_prefix("cache_fails");
    let _cleanup = redis_server::Cleanup {
        prefix: prefix.clone(),
    };
    let cache = format!("redis://{}/0?prefix={prefix}", proxy.addr);
    let server = TestServer::start_with(&["--cache", &cache, "--store-timeout", "1s"]).await;
    let key = server
        .client
        .create(r#"{"v":1}"#, None)
        .await
        .unwrap()
        .session_key;

    proxy.cut();
    // Every call still works, from the database alone.
    assert_eq!(
        server.client.load(&key).await.unwrap().unwrap().data,
        r#"{"v":1}"#
    );
    server
        .client
        .save(&key, r#"{"v":2}"#, None, false)
        .await
        .unwrap();
    let other = server.client.create("{}", None).await.unwrap().session_key;
    assert!(server.client.exists(&other).await.unwrap());
    assert_eq!(stored_row(&server.db(), &key).unwrap().0, r#"{"v":2}"#);

    // Back again. The session saved meanwhile is never served from the copy
    // the cache kept of it ({"v":1}): it is read from the database until the
    // tombstone put over that copy expires.
    proxy.restore().await;
    assert_eq!(
        server.client.load(&key).await.unwrap().unwrap().data,
        r#"{"v":2}"#
    );
    overwrite_in_database(&server, &key, r#"{"v":"behind the cache"}"#);
    assert_eq!(
        server.client.load(&key).await.unwrap().unwrap().data,
        r#"{"v":"behind the cache"}"#
    );
    // And the cache is used once more, as soon as it can be reached.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let fresh = server
            .client
            .create(r#"{"v":3}"#, None)
            .await
            .unwrap()
            .session_key;
        overwrite_in_database(&server, &fresh, r#"{"v":"behind the cache"}"#);
        if server.client.load(&fresh).await.unwrap().unwrap().data == r#"{"v":3}"# {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cache never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_cache_must_be_a_cache_and_the_store_a_database() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
    for (store, cache, expected) in [
        (sqlite.as_str(), sqlite.as_str(), "a cache must be redis://"),
        ("memory://", "memory://", "is a cache itself"),
    ] {
        let config =
            sessiond::cli::ServeArgs::try_parse_from(["serve", "--store", store, "--cache", cache])
                .unwrap()
                .into_config();
        let err = Server::open(config).await.unwrap_err();
        let err = sessiond::error::ErrorChain(&err).to_string();
        assert!(err.contains("--cache"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}
