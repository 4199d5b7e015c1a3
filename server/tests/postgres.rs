//! sessiond on the real PostgreSQL of this machine: replicas sharing one
//! table, races between them, Django's table adopted, and the database
//! going away and coming back under load.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{PgSchema, Proxy, TestServer, code, hours_from_now};
use sessiond::Server;
use sessiond::store::StoreUrl;
use tonic::Code;

macro_rules! require_postgres {
    () => {
        if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
            return;
        }
    };
}

#[tokio::test]
async fn two_replicas_share_one_table() {
    require_postgres!();
    let schema = PgSchema::new();
    let one = TestServer::start_on(&schema.url(), &[]).await;
    let two = TestServer::start_on(&schema.url(), &[]).await;

    let created = one.client.create(r#"{"user":"ada"}"#, None).await.unwrap();
    let loaded = two
        .client
        .load(&created.session_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    assert_eq!(loaded.expire_date, created.expire_date);

    let cycled = two
        .client
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    assert!(!one.client.exists(&created.session_key).await.unwrap());
    assert_eq!(
        one.client
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"user":"ada"}"#
    );
    one.client
        .patch(&cycled.session_key, r#"{"cart":[1]}"#, &[], false, None)
        .await
        .unwrap();
    assert_eq!(
        two.client
            .load(&cycled.session_key)
            .await
            .unwrap()
            .unwrap()
            .data,
        r#"{"user":"ada","cart":[1]}"#
    );
    assert!(two.client.delete(&cycled.session_key).await.unwrap());
    assert_eq!(one.client.load(&cycled.session_key).await.unwrap(), None);
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn of_must_create_saves_racing_on_two_replicas_exactly_one_wins() {
    require_postgres!();
    let schema = PgSchema::new();
    let one = TestServer::start_on(&schema.url(), &[]).await;
    let two = TestServer::start_on(&schema.url(), &[]).await;
    for round in 0..20 {
        let key = format!("racekey{round:04}");
        let (a, b) = tokio::join!(
            one.client.save(&key, r#"{"by":"one"}"#, None, true),
            two.client.save(&key, r#"{"by":"two"}"#, None, true),
        );
        let winners = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
        assert_eq!(winners, 1, "round {round}");
        for result in [a, b] {
            if let Err(err) = result {
                assert_eq!(code(err), Code::AlreadyExists);
            }
        }
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn an_update_racing_a_delete_on_another_replica_never_resurrects() {
    require_postgres!();
    let schema = PgSchema::new();
    let one = TestServer::start_on(&schema.url(), &[]).await;
    let two = TestServer::start_on(&schema.url(), &[]).await;
    for round in 0..20 {
        let key = one.client.create("{}", None).await.unwrap().session_key;
        let (saved, patched, deleted) = tokio::join!(
            one.client.save(&key, r#"{"n":1}"#, None, false),
            one.client.patch(&key, r#"{"m":1}"#, &[], false, None),
            two.client.delete(&key),
        );
        assert!(deleted.unwrap(), "round {round}");
        for result in [saved, patched] {
            if let Err(err) = result {
                assert_eq!(code(err), Code::NotFound, "round {round}");
            }
        }
        assert!(
            !two.client.exists(&key).await.unwrap(),
            "round {round}: resurrected"
        );
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn two_replicas_clearing_at_once_remove_each_expired_row_once() {
    require_postgres!();
    let schema = PgSchema::new();
    let one = TestServer::start_on(&schema.url(), &["--purge-batch-size", "50"]).await;
    let two = TestServer::start_on(&schema.url(), &["--purge-batch-size", "50"]).await;
    let mut writes = Vec::new();
    for n in 0..600 {
        let client = one.client.clone();
        writes.push(tokio::spawn(async move {
            let expire = if n % 3 == 0 {
                hours_from_now(1)
            } else {
                hours_from_now(-1)
            };
            client
                .save(&format!("bulk{n:06}"), "{}", Some(expire), true)
                .await
                .unwrap();
        }));
    }
    for write in writes {
        write.await.unwrap();
    }
    let (a, b) = tokio::join!(one.client.clear_expired(), two.client.clear_expired());
    let removed = a.unwrap() + b.unwrap();
    // Rows skipped by one replica (locked by the other) are left to the
    // next purge, never removed twice.
    assert!(removed <= 400, "{removed}");
    let rest = one.client.clear_expired().await.unwrap();
    assert_eq!(removed + rest, 400);
    assert!(one.client.exists("bulk000000").await.unwrap());
    one.stop().await;
    two.stop().await;
}

/// Django's own `sessions.0001_initial` on PostgreSQL.
const DJANGO_DDL: &str = r#"
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
CREATE INDEX "django_session_session_key_c0390e0f_like" ON "django_session" ("session_key" varchar_pattern_ops);
"#;

#[tokio::test]
async fn a_table_migrated_by_django_is_adopted() {
    require_postgres!();
    let schema = PgSchema::new();
    schema
        .execute(&format!("CREATE SCHEMA \"{}\"", schema.name))
        .await;
    schema.execute(DJANGO_DDL).await;
    schema
        .execute(
            "INSERT INTO django_session VALUES ('djangowrotethis0', '{\"from\":\"django\"}', '2999-01-01T00:00:00Z')",
        )
        .await;
    let server = TestServer::start_on(&schema.url(), &[]).await;
    let loaded = server
        .client
        .load("djangowrotethis0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.data, r#"{"from":"django"}"#);
    server.stop().await;
}

#[tokio::test]
async fn a_foreign_django_session_table_is_refused() {
    require_postgres!();
    let schema = PgSchema::new();
    schema
        .execute(&format!("CREATE SCHEMA \"{}\"", schema.name))
        .await;
    schema
        .execute("CREATE TABLE django_session (session_key text PRIMARY KEY, payload bytea)")
        .await;
    let err = Server::open(config(&schema.url())).await.unwrap_err();
    let text = chain(&err);
    assert!(text.contains("not in Django's shape"), "{text}");
    assert!(text.contains("--store"), "{text}");
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    require_postgres!();
    let schema = PgSchema::new();
    let (one, two, three) = tokio::join!(
        Server::open(config(&schema.url())),
        Server::open(config(&schema.url())),
        Server::open(config(&schema.url())),
    );
    one.unwrap();
    two.unwrap();
    three.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_refused_at_start_up_with_a_clear_message() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let started = Instant::now();
    let err = Server::open(config(&format!("postgres://postgres@{closed}/test")))
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("cannot connect to PostgreSQL"), "{text}");
    assert!(text.contains("--store"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn passwords_never_appear_in_messages() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("postgres://app:hunter2secret@{closed}/test");
    let parsed: StoreUrl = url.parse().unwrap();
    assert!(!parsed.to_string().contains("hunter2secret"));
    let err = Server::open(config(&url)).await.unwrap_err();
    assert!(!chain(&err).contains("hunter2secret"), "{}", chain(&err));
    assert!(!format!("{err:?}").contains("hunter2secret"));
}

#[tokio::test]
async fn when_the_database_goes_away_calls_fail_fast_and_recover_by_themselves() {
    require_postgres!();
    let schema = PgSchema::new();
    let mut proxy = Proxy::start(common::POSTGRES_ADDR).await;
    let server = TestServer::start_on(
        &schema.url_via(&proxy.addr.to_string()),
        &["--store-timeout", "1s"],
    )
    .await;
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let key = server
            .client
            .create(&format!(r#"{{"n":{n}}}"#), None)
            .await
            .unwrap()
            .session_key;
        acknowledged.push((key, n));
    }

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let err = server.client.create("{}", None).await.unwrap_err();
        assert_eq!(code(err), Code::Unavailable);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        let err = server.client.load(&acknowledged[0].0).await.unwrap_err();
        assert_eq!(code(err), Code::Unavailable);
    }

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match server.client.load(&acknowledged[0].0).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("no recovery: {err:?}"),
        }
    }
    for (key, n) in &acknowledged {
        let loaded = server.client.load(key).await.unwrap().unwrap();
        assert_eq!(loaded.data, format!(r#"{{"n":{n}}}"#));
    }
    server.client.create("{}", None).await.unwrap();
    server.stop().await;
}

fn config(url: &str) -> sessiond::ServerConfig {
    use clap::Parser;
    sessiond::cli::ServeArgs::try_parse_from(["serve", "--store", url, "--store-timeout", "3s"])
        .unwrap()
        .into_config()
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn two_replicas_cycling_one_session_at_once_leave_exactly_one_copy() {
    require_postgres!();
    let schema = PgSchema::new();
    let one = TestServer::start_on(&schema.url(), &[]).await;
    let two = TestServer::start_on(&schema.url(), &[]).await;
    for round in 0..20 {
        let key = one
            .client
            .create(&format!(r#"{{"round":{round}}}"#), None)
            .await
            .unwrap()
            .session_key;
        let (a, b) = tokio::join!(
            one.client.cycle_key(&key, None, None),
            two.client.cycle_key(&key, None, None),
        );
        let new_keys: Vec<String> = [a, b]
            .into_iter()
            .filter_map(|result| match result {
                Ok(created) => Some(created.session_key),
                Err(err) => {
                    assert_eq!(code(err), Code::NotFound, "round {round}");
                    None
                }
            })
            .collect();
        assert_eq!(new_keys.len(), 1, "round {round}");
        assert!(!one.client.exists(&key).await.unwrap());
        assert_eq!(
            two.client.load(&new_keys[0]).await.unwrap().unwrap().data,
            format!(r#"{{"round":{round}}}"#)
        );
    }
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn pool_size_caps_the_connections_of_a_replica() {
    require_postgres!();
    let schema = PgSchema::new();
    let url: StoreUrl = format!("{}&pool_size=2", schema.url()).parse().unwrap();
    assert!(url.to_string().ends_with("&pool_size=2"), "{url}");
    let store = sessiond::store::open(&url, &sessiond::store::StoreOptions::default())
        .await
        .unwrap();
    let mut pings = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let store = store.clone();
        pings.spawn(async move { store.ping().await });
    }
    while let Some(result) = pings.join_next().await {
        result.unwrap().unwrap();
    }
    let pool = store.gauges().pool.unwrap();
    assert_eq!(pool.max, 2);
    assert!(pool.in_use + pool.idle <= 2, "{pool:?}");
    store.close().await;

    let err = "postgres://postgres@127.0.0.1/test?pool_size=0"
        .parse::<StoreUrl>()
        .unwrap_err();
    let shown = sessiond::error::ErrorChain(&err).to_string();
    assert!(
        shown.contains("pool_size must be a whole number from 1 to 1024, got '0'"),
        "{shown}"
    );
}
