//! The `Client` itself: several endpoints, retries of idempotent calls, and
//! clear errors for bad settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Sessiond;
use sessiond_client::{Client, Error};

#[tokio::test]
async fn calls_are_spread_over_several_servers_and_survive_losing_one() {
    let first = Sessiond::start().await;
    let second = Sessiond::start().await;
    let client = Client::builder()
        .endpoint(first.url.clone())
        .endpoint(second.url.clone())
        .connect()
        .await
        .unwrap();
    let mut keys = Vec::new();
    for n in 0..20 {
        keys.push(
            client
                .create(&format!(r#"{{"n":{n}}}"#), None)
                .await
                .unwrap()
                .session_key,
        );
    }
    // Each server has its own database here, so the sessions are spread
    // over both.
    let mut on_first = 0;
    for key in &keys {
        if first.client.exists(key).await.unwrap() {
            on_first += 1;
        }
    }
    assert!(
        on_first > 0 && on_first < keys.len(),
        "{on_first} of {} on the first server",
        keys.len()
    );

    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..10 {
        client
            .create(&format!(r#"{{"after":{n}}}"#), None)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn idempotent_calls_are_retried_once_when_the_server_is_unavailable() {
    let server = Sessiond::start_with(&["--store-timeout", "1s"]).await;
    let key = server.client.create("{}", None).await.unwrap().session_key;

    // Another process holds the database's write lock for 1.5 s: the first
    // attempt of a delete fails after 1 s, the retry gets through.
    let holder = rusqlite::Connection::open(&server.db_path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.execute_batch("ROLLBACK").unwrap();
    });
    assert!(server.client.delete(&key).await.unwrap());
    release.await.unwrap();

    // A write that may have taken effect is not retried.
    let holder = rusqlite::Connection::open(&server.db_path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.execute_batch("ROLLBACK").unwrap();
    });
    let err = server.client.create("{}", None).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
    release.await.unwrap();
}

#[tokio::test]
async fn a_wrong_address_fails_at_connect() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Client::connect(format!("http://{closed}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    let err = Client::connect("not a url").await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    let err = Client::builder().connect().await.unwrap_err();
    assert!(matches!(err, Error::NoEndpoint), "{err:?}");
}

#[tokio::test]
async fn a_token_that_cannot_be_a_header_is_refused() {
    let server = Sessiond::start().await;
    let err = Client::builder()
        .endpoint(server.url.clone())
        .bearer_token("line\nbreak")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidToken), "{err:?}");
    // A valid token is accepted (the server does not check tokens yet).
    let client = Client::builder()
        .endpoint(server.url.clone())
        .bearer_token("s3cret-token")
        .connect()
        .await
        .unwrap();
    client.create("{}", None).await.unwrap();
}

#[tokio::test]
async fn the_request_timeout_bounds_a_stuck_call() {
    let server = Sessiond::start_with(&["--store-timeout", "10s"]).await;
    let client = Client::builder()
        .endpoint(server.url.clone())
        .request_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let holder = rusqlite::Connection::open(&server.db_path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let err = client.create("{}", None).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            err.code(),
            Some(tonic::Code::DeadlineExceeded | tonic::Code::Cancelled | tonic::Code::Unavailable)
        ),
        "{err:?}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
}
