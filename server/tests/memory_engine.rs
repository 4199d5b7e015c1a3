//! What only the memory engine does: its size bound (expired sessions make
//! room first; then new sessions are refused with RESOURCE_EXHAUSTED, live
//! ones are never evicted), and its URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use common::{TestServer, code};
use sessiond::cli::ServeArgs;
use sessiond::session::{ExpireDate, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreError, StoreOptions, StoreUrl};
use tonic::Code;

async fn memory(url: &str) -> Arc<dyn SessionStore> {
    let url: StoreUrl = url.parse().unwrap();
    let options = StoreOptions::default();
    store::open(&url, &options).await.unwrap()
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

fn assert_full(result: Result<(), StoreError>) {
    let err = result.unwrap_err();
    assert!(matches!(err, StoreError::Full(_)), "{err:?}");
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("max_sessions"), "{cause}");
}

#[tokio::test]
async fn a_full_store_drops_expired_sessions_first_then_refuses_new_ones() {
    let store = memory("memory://?max_sessions=3").await;
    // Making room goes by the server's clock, so these dates are real ones.
    let now = Utc::now();
    let later = now + TimeDelta::hours(1);
    let expired = now - TimeDelta::seconds(1);
    store
        .insert(&key("live00000"), record("{}", later))
        .await
        .unwrap();
    store
        .insert(&key("live11111"), record("{}", later))
        .await
        .unwrap();
    store
        .insert(&key("expired00"), record("{}", expired))
        .await
        .unwrap();

    // Full, but one session has expired: it makes room.
    store
        .insert(&key("live22222"), record("{}", later))
        .await
        .unwrap();
    assert!(!store.exists(&key("expired00")).await.unwrap());

    // Full of live sessions: refused, and none of them is evicted.
    assert_full(store.insert(&key("live33333"), record("{}", later)).await);
    for live in ["live00000", "live11111", "live22222"] {
        assert!(
            store.load(&key(live), now).await.unwrap().is_some(),
            "{live}"
        );
    }
    assert!(!store.exists(&key("live33333")).await.unwrap());

    // Writes that add nothing still work: update, patch, cycle of a stored
    // session. A cycle that would add a session does not.
    store
        .update(&key("live00000"), record(r#"{"a":1}"#, later))
        .await
        .unwrap();
    let expire = ExpireDate::new(later).unwrap();
    store
        .cycle_key(&key("live00000"), &key("cycled000"), None, expire, now)
        .await
        .unwrap();
    assert_full(
        store
            .cycle_key(
                &key("neversaved"),
                &key("cycled111"),
                Some("{}".to_owned()),
                expire,
                now,
            )
            .await,
    );

    // A deletion makes room again.
    assert!(store.delete(&key("live11111")).await.unwrap());
    store
        .insert(&key("live33333"), record("{}", later))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_store_answers_resource_exhausted_without_the_data() {
    let server = TestServer::start_on("memory://?max_sessions=2", &[]).await;
    let first = server.client.create("{}", None).await.unwrap();
    server.client.create("{}", None).await.unwrap();

    let err = server
        .client
        .create(r#"{"secret":"s3cr3t"}"#, None)
        .await
        .unwrap_err();
    let status_text = format!("{err:?}");
    assert_eq!(code(err), Code::ResourceExhausted);
    assert!(status_text.contains("full"), "{status_text}");
    assert!(!status_text.contains("s3cr3t"), "{status_text}");
    let err = server
        .client
        .save("abcdefgh12345678", "{}", None, true)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::ResourceExhausted);

    // The sessions already there work as before.
    server
        .client
        .save(&first.session_key, r#"{"n":1}"#, None, false)
        .await
        .unwrap();
    let loaded = server
        .client
        .load(&first.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"n":1}"#);
    server.stop().await;
}

#[tokio::test]
async fn sessions_live_as_long_as_the_server() {
    let server = TestServer::start_on("memory://", &[]).await;
    let created = server.client.create(r#"{"u":1}"#, None).await.unwrap();
    let cycled = server
        .client
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    let loaded = server
        .client
        .load(&cycled.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"u":1}"#);
    assert!(!server.client.exists(&created.session_key).await.unwrap());
    server.stop().await;

    let server = TestServer::start_on("memory://", &[]).await;
    assert!(!server.client.exists(&cycled.session_key).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn a_bad_memory_url_is_refused_naming_the_flag() {
    for (url, expected) in [
        ("memory://?max_sessions=0", "at least 1"),
        ("memory://?max_sessions=-5", "at least 1"),
        ("memory://?max=5", "unknown option 'max'"),
        ("memory://sessions", "takes no path"),
    ] {
        let err = ServeArgs::try_parse_from(["serve", "--store", url])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--store"), "{url}: {err}");
        assert!(err.contains(expected), "{url}: {err}");
    }
}
