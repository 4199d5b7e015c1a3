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

/// An app that boots while sessiond is still starting: the lazy client is
/// made with nothing listening, its calls fail until the server is up, then
/// succeed on the same client.
#[tokio::test]
async fn a_lazy_client_made_before_sessiond_starts_works_once_it_has() {
    // A port of the test's own, bound but not listening: connects to it are
    // refused, as with no server at all, and no other test can take it
    // before sessiond listens on it. (A listening socket that nobody
    // accepts on would queue the connects, which would hang, not fail.)
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap();
    let url = format!("http://{address}");
    assert!(matches!(
        Client::connect(url.clone()).await,
        Err(Error::Connect(_))
    ));
    let client = Client::connect_lazy(url.clone()).unwrap();
    let err = client
        .exists("abcdefghijklmnopqrstuvwxyz012345")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");

    let listener = socket.listen(sessiond::LISTEN_BACKLOG).unwrap();
    let server = Sessiond::start_on(listener, &[]).await;
    let key = client.create(r#"{"a":1}"#, None).await.unwrap().session_key;
    assert!(server.client.exists(&key).await.unwrap());
    let loaded = client.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"a":1}"#);
}

#[tokio::test]
async fn a_lazy_client_refuses_only_a_malformed_address() {
    assert!(matches!(
        Client::connect_lazy("not a url"),
        Err(Error::Connect(_))
    ));
    assert!(matches!(
        Client::builder().connect_lazy(),
        Err(Error::NoEndpoint)
    ));
    assert!(matches!(
        Client::builder()
            .endpoint("http://127.0.0.1:1")
            .bearer_token("line\nbreak")
            .connect_lazy(),
        Err(Error::InvalidToken)
    ));
    let several = Client::builder()
        .endpoint("http://127.0.0.1:1")
        .endpoint("http://127.0.0.1:2")
        .connect_lazy();
    assert!(several.is_ok());
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
async fn errors_say_which_endpoint_and_why_once() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = Client::connect(format!("http://{closed}"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("cannot connect to sessiond at http://{closed}: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    // The cause is in the message, so chain printers must not find it again.
    assert!(std::error::Error::source(&err).is_none(), "{err:?}");
    let Error::Connect(connect) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(connect.endpoint(), format!("http://{closed}"));
    assert!(std::error::Error::source(connect.transport_error()).is_some());

    let server = Sessiond::start().await;
    let err = server.client.load("short").await.unwrap_err();
    let text = err.to_string();
    assert_eq!(
        text,
        "sessiond Load failed (INVALID_ARGUMENT: session_key: must be 8 to 40 characters long, got 5 characters)"
    );
    assert_eq!(text.matches("Load").count(), 1, "{text}");
    assert_eq!(err.rpc(), Some("Load"));
    assert!(std::error::Error::source(&err).is_none(), "{err:?}");

    // A call that never got an answer: the RPC once, the transport cause
    // once, in the message rather than from source().
    let client = Client::connect_lazy(format!("http://{closed}")).unwrap();
    let err = client
        .cycle_key("k5bhu4a3ngm5sbk0nqm79pc6e4mwvt0o", None, None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("sessiond CycleKey failed (UNAVAILABLE: "),
        "{text}"
    );
    assert_eq!(text.matches("CycleKey").count(), 1, "{text}");
    assert_eq!(
        text.to_lowercase().matches("connection refused").count(),
        1,
        "{text}"
    );
    assert!(text.ends_with(')'), "{text}");
    assert_eq!(err.rpc(), Some("CycleKey"));
    assert!(std::error::Error::source(&err).is_none(), "{err:?}");
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
