//! What only the Redis engine does: its key layout and TTLs (checked with a
//! plain Redis connection), expiry on Redis's own clock, start-up refusals,
//! two sessiond replicas sharing one Redis, and an outage of Redis in the
//! middle of a run (a private `redis-server` that the test stalls, kills and
//! restarts).
//!
//! Tests on the shared Redis (127.0.0.1:6379) print a `SKIPPED:` line when
//! it is not reachable, and fail under `CI=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use common::redis_server::{self, Cleanup, PrivateRedis, SHARED_ADDR};
use common::{TestServer, code};
use sessiond::cli::ServeArgs;
use sessiond::session::{ExpireDate, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreError, StoreOptions, StoreUrl};
use sessiond::{Server, StartError};
use tonic::Code;

const KEY: &str = "abcdefgh12345678abcdefgh12345678";

/// The store timeout of these tests: short, so that an outage is reported
/// quickly, and long enough for a loaded test machine.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a call may take during an outage: the store timeout plus room
/// for the gRPC round trip on a busy machine.
const OUTAGE_ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// A store on the shared Redis under a prefix of its own, and the guard that
/// deletes the prefix's keys afterwards.
async fn shared_store(test: &str) -> Option<(Arc<dyn SessionStore>, String, Cleanup)> {
    if !redis_server::shared_available(test).await {
        return None;
    }
    let prefix = redis_server::unique_prefix(test);
    let url: StoreUrl = format!("redis://{SHARED_ADDR}/0?prefix={prefix}")
        .parse()
        .unwrap();
    let options = StoreOptions::default();
    let store = store::open(&url, &options).await.unwrap();
    let cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    Some((store, prefix, cleanup))
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

/// Retries `attempt` every 50 ms until it returns `Some`, for at most
/// `limit`.
async fn eventually<T, F, Fut>(limit: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sessions_are_hashes_under_the_prefix_that_expire_with_the_session() {
    let Some((store, prefix, _cleanup)) = shared_store("layout").await else {
        return;
    };
    let expire = DateTime::parse_from_rfc3339("2100-01-01T00:00:00.123456Z")
        .unwrap()
        .with_timezone(&Utc);
    store
        .insert(&key(KEY), record(r#"{"user":"ada"}"#, expire))
        .await
        .unwrap();

    let mut conn = redis_server::connect(SHARED_ADDR).await;
    let full_key = format!("{prefix}{KEY}");
    assert_eq!(
        redis_server::keys(&mut conn, &prefix).await,
        std::slice::from_ref(&full_key)
    );
    let kind: String = redis::cmd("TYPE")
        .arg(&full_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "hash");
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&full_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        fields,
        HashMap::from([
            ("session_data".to_owned(), r#"{"user":"ada"}"#.to_owned()),
            (
                "expire_date".to_owned(),
                "2100-01-01T00:00:00.123456Z".to_owned()
            ),
        ])
    );
    // The key expires with the session, rounded up to the millisecond.
    let expire_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&full_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(expire_at, 4_102_444_800_124);

    // An update moves the key's expiry with the session's.
    let sooner = Utc::now() + TimeDelta::hours(1);
    store
        .update(&key(KEY), record(r#"{"user":"bob"}"#, sooner))
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&full_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((3_500_000..=3_600_001).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn the_default_prefix_is_sessiond_session() {
    let url: StoreUrl = "redis://127.0.0.1".parse().unwrap();
    let StoreUrl::Redis(url) = url else {
        panic!("not a redis url: {url}");
    };
    assert_eq!(url.prefix(), "sessiond:session:");
}

#[tokio::test]
async fn an_expired_session_vanishes_by_itself() {
    let Some((store, prefix, _cleanup)) = shared_store("vanish").await else {
        return;
    };
    let expire = Utc::now() + TimeDelta::milliseconds(200);
    store.insert(&key(KEY), record("{}", expire)).await.unwrap();
    assert!(store.exists(&key(KEY)).await.unwrap());
    // Redis, not a purge, removes it: ClearExpired never has work to do.
    assert_eq!(store.clear_expired_batch(Utc::now(), 100).await.unwrap(), 0);
    eventually(Duration::from_secs(5), || async {
        (!store.exists(&key(KEY)).await.unwrap()).then_some(())
    })
    .await;
    let mut conn = redis_server::connect(SHARED_ADDR).await;
    assert!(redis_server::keys(&mut conn, &prefix).await.is_empty());
    // Unlike the SQL engines, an expired session no longer exists at all.
    assert_eq!(store.load(&key(KEY), Utc::now()).await.unwrap(), None);
    let err = store
        .update(&key(KEY), record("{}", Utc::now() + TimeDelta::hours(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}

#[tokio::test]
async fn a_session_written_with_a_past_expiry_is_not_stored() {
    let Some((store, prefix, _cleanup)) = shared_store("past").await else {
        return;
    };
    let past = Utc::now() - TimeDelta::seconds(1);
    let later = Utc::now() + TimeDelta::hours(1);
    let mut conn = redis_server::connect(SHARED_ADDR).await;

    // Insert: accepted, nothing stored, the key stays free.
    store.insert(&key(KEY), record("{}", past)).await.unwrap();
    assert!(!store.exists(&key(KEY)).await.unwrap());
    store.insert(&key(KEY), record("{}", past)).await.unwrap();
    assert!(redis_server::keys(&mut conn, &prefix).await.is_empty());

    // Update of a live session: accepted, and the session is gone.
    store.insert(&key(KEY), record("{}", later)).await.unwrap();
    store.update(&key(KEY), record("{}", past)).await.unwrap();
    assert!(!store.exists(&key(KEY)).await.unwrap());
    let err = store
        .update(&key(KEY), record("{}", later))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    // Insert on a taken key is still refused, whatever the expiry.
    store.insert(&key(KEY), record("{}", later)).await.unwrap();
    let err = store
        .insert(&key(KEY), record("{}", past))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists), "{err:?}");

    // Patch and cycle-key to a past expiry remove the session.
    let past_date = ExpireDate::new(past).unwrap();
    let keep: store::Patcher = Box::new(|stored| Ok(stored.unwrap_or_default()));
    store
        .patch(&key(KEY), keep, past_date, Utc::now())
        .await
        .unwrap();
    assert!(!store.exists(&key(KEY)).await.unwrap());
    store.insert(&key(KEY), record("{}", later)).await.unwrap();
    store
        .cycle_key(&key(KEY), &key("newkey000"), None, past_date, Utc::now())
        .await
        .unwrap();
    assert!(redis_server::keys(&mut conn, &prefix).await.is_empty());
}

#[tokio::test]
async fn a_bad_redis_url_is_refused_naming_the_flag() {
    for (url, expected) in [
        ("redis://cache/abc", "database must be a number"),
        ("redis://cache:99999", "not a valid redis:// URL"),
        ("redis://cache/0?prefix=", "prefix must be non-empty"),
        ("redis://cache/0?ttl=5", "unknown option 'ttl'"),
        (
            "redis://cache/0?ca=/ca.pem",
            "use rediss:// to connect with TLS",
        ),
        ("redis://a,b/0", "names one server"),
    ] {
        let err = ServeArgs::try_parse_from(["serve", "--store", url])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--store"), "{url}: {err}");
        assert!(err.contains(expected), "{url}: {err}");
    }
}

/// The start-up error of a server on `store` with `--store-timeout
/// timeout`, as `main` prints it.
async fn start_error(store: &str, timeout: &str) -> String {
    let config = ServeArgs::try_parse_from([
        "serve",
        "--store",
        store,
        "--store-timeout",
        timeout,
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap()
    .into_config();
    let err: StartError = Server::open(config).await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    assert!(text.contains("--store"), "{text}");
    text
}

#[tokio::test]
async fn start_up_stops_at_once_when_nothing_listens_and_hides_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let text = start_error(&format!("redis://:hunter2@127.0.0.1:{port}/0"), "2s").await;
    assert!(started.elapsed() < Duration::from_secs(3), "{text}");
    assert!(text.contains("nothing accepts connections"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn start_up_refuses_a_database_redis_does_not_have() {
    if !redis_server::shared_available("missing_database").await {
        return;
    }
    let text = start_error(&format!("redis://{SHARED_ADDR}/99999"), "2s").await;
    assert!(text.contains("has no database 99999"), "{text}");
}

#[tokio::test]
async fn start_up_refuses_a_store_timeout_of_zero() {
    let text = start_error(&format!("redis://{SHARED_ADDR}/0"), "0").await;
    assert!(text.contains("--store-timeout of 0"), "{text}");
}

#[tokio::test]
async fn two_servers_share_sessions_through_one_prefix() {
    if !redis_server::shared_available("two_replicas").await {
        return;
    }
    let prefix = redis_server::unique_prefix("replicas");
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let store = format!("redis://{SHARED_ADDR}/0?prefix={prefix}");
    let one = TestServer::start_on(&store, &[]).await;
    let two = TestServer::start_on(&store, &[]).await;

    let created = one.client.create(r#"{"user":"ada"}"#, None).await.unwrap();
    let key = created.session_key;
    let loaded = two.client.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    assert_eq!(loaded.expire_date, created.expire_date);

    two.client
        .save(&key, r#"{"user":"ada","cart":[1]}"#, None, false)
        .await
        .unwrap();
    one.client
        .patch(&key, r#"{"theme":"dark"}"#, &[], false, None)
        .await
        .unwrap();
    let loaded = two.client.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada","cart":[1],"theme":"dark"}"#);

    let cycled = two.client.cycle_key(&key, None, None).await.unwrap();
    assert_eq!(one.client.load(&key).await.unwrap(), None);
    assert!(!one.client.exists(&key).await.unwrap());
    let moved = one.client.load(&cycled.session_key).await.unwrap().unwrap();
    assert_eq!(moved.data, r#"{"user":"ada","cart":[1],"theme":"dark"}"#);

    // A session deleted through one is gone for the other, and a stale save
    // through the other does not bring it back.
    assert!(one.client.delete(&cycled.session_key).await.unwrap());
    assert!(!two.client.exists(&cycled.session_key).await.unwrap());
    let err = two
        .client
        .save(&cycled.session_key, "{}", None, false)
        .await
        .unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert_eq!(two.client.clear_expired().await.unwrap(), 0);

    one.stop().await;
    two.stop().await;
}

/// Runs `call` and checks that it fails with UNAVAILABLE, quickly.
async fn assert_unavailable_quickly<T: std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = Result<T, sessiond_client::Error>>,
) {
    let started = Instant::now();
    let result = call.await;
    let elapsed = started.elapsed();
    let err = result.expect_err(what);
    assert_eq!(code(err), Code::Unavailable, "{what}");
    assert!(
        elapsed < OUTAGE_ANSWER_WITHIN,
        "{what} took {elapsed:?} to fail"
    );
}

#[tokio::test]
async fn an_outage_of_redis_answers_unavailable_in_time_and_heals_by_itself() {
    let Some(mut redis) = PrivateRedis::start("outage").await else {
        return;
    };
    let store = format!("redis://{}/0", redis.addr());
    let timeout = format!("{}ms", STORE_TIMEOUT.as_millis());
    let server = TestServer::start_on(&store, &["--store-timeout", &timeout]).await;
    let client = &server.client;
    let created = client.create(r#"{"n":1}"#, None).await.unwrap();
    let key = created.session_key.as_str();

    // Stalled: Redis holds the connection but answers nothing.
    redis.signal("STOP");
    assert_unavailable_quickly("save to a stalled redis", async {
        client.save(key, r#"{"n":2}"#, None, false).await
    })
    .await;
    assert_unavailable_quickly("create on a stalled redis", async {
        client.create("{}", None).await
    })
    .await;
    redis.signal("CONT");
    let loaded = eventually(Duration::from_secs(10), || async {
        client.load(key).await.ok().flatten()
    })
    .await;
    assert_eq!(loaded.data, r#"{"n":1}"#);

    // Down: the process is gone and connections are refused.
    redis.kill().await;
    assert_unavailable_quickly("save to a dead redis", async {
        client.save(key, r#"{"n":3}"#, None, false).await
    })
    .await;
    assert_unavailable_quickly("create on a dead redis", async {
        client.create("{}", None).await
    })
    .await;
    assert_unavailable_quickly("load from a dead redis", async { client.load(key).await }).await;
    assert_unavailable_quickly("patch on a dead redis", async {
        client.patch(key, r#"{"x":1}"#, &[], false, None).await
    })
    .await;

    // Back (empty: it saves nothing): the same sessiond works again.
    redis.restart().await;
    let created = eventually(Duration::from_secs(10), || async {
        client.create(r#"{"n":4}"#, None).await.ok()
    })
    .await;
    let loaded = client.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"n":4}"#);
    assert_eq!(client.load(key).await.unwrap(), None);

    server.stop().await;
}

#[tokio::test]
async fn a_redis_out_of_memory_answers_resource_exhausted() {
    let Some(redis) = PrivateRedis::start("out_of_memory").await else {
        return;
    };
    let store = format!("redis://{}/0", redis.addr());
    let server = TestServer::start_on(&store, &[]).await;
    let created = server.client.create("{}", None).await.unwrap();

    let mut conn = redis_server::connect(&redis.addr()).await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let err = server
        .client
        .create(r#"{"secret":"s3cr3t"}"#, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err:?}");
    assert!(!format!("{err:?}").contains("s3cr3t"));
    // Reads and deletes go on.
    assert!(server.client.exists(&created.session_key).await.unwrap());
    assert!(server.client.delete(&created.session_key).await.unwrap());
    server.stop().await;
}

#[tokio::test]
async fn a_session_saved_through_the_server_expires_on_time_in_redis() {
    if !redis_server::shared_available("server_expiry").await {
        return;
    }
    let prefix = redis_server::unique_prefix("server-expiry");
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let server =
        TestServer::start_on(&format!("redis://{SHARED_ADDR}/0?prefix={prefix}"), &[]).await;
    let soon = SystemTime::now() + Duration::from_millis(300);
    server
        .client
        .save(KEY, r#"{"a":1}"#, Some(soon), true)
        .await
        .unwrap();
    assert!(server.client.load(KEY).await.unwrap().is_some());
    eventually(Duration::from_secs(5), || async {
        (!server.client.exists(KEY).await.unwrap()).then_some(())
    })
    .await;
    assert_eq!(server.client.load(KEY).await.unwrap(), None);
    server.stop().await;
}
