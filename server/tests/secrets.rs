//! No secret given to sessiond comes back out of it: passwords in store
//! URLs (`user:password@` and libpq's `?password=`), bearer tokens and
//! Django's secret keys are looked for in everything the real binary
//! prints — `--help`, refusals of bad values, start-up failures and the
//! debug log of a server that serves calls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use common::process::{Running, sessiond};
use common::redis_server::{self, PrivateRedis};
use sessiond_client::Client;

const URL_PASSWORD: &str = "url-password-7f3a9c";
const QUERY_PASSWORD: &str = "query-password-4b1d2e";
const CACHE_PASSWORD: &str = "cache-password-9e8d7c";
const TOKEN: &str = "token-secret-0123456789abcdef";
const SECRET_KEY: &str = "django-secret-key-5a6b7c8d";
const FALLBACK_KEY: &str = "django-fallback-key-1e2f3a4b";
const METRICS_TOKEN: &str = "metrics-token-9f8e7d6c5b4a";

const SECRETS: [&str; 7] = [
    URL_PASSWORD,
    QUERY_PASSWORD,
    CACHE_PASSWORD,
    TOKEN,
    SECRET_KEY,
    FALLBACK_KEY,
    METRICS_TOKEN,
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
}

fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every secret setting in the environment, with `store` as the store.
fn with_secrets(store: &str) -> std::process::Command {
    let mut command = sessiond();
    command
        .env("SESSIOND_STORE", store)
        .env(
            "SESSIOND_CACHE",
            format!("redis://:{CACHE_PASSWORD}@127.0.0.1:1/0"),
        )
        .env("SESSIOND_TOKEN", TOKEN)
        .env("SESSIOND_CODEC", "django")
        .env("SESSIOND_SECRET_KEY", SECRET_KEY)
        .env("SESSIOND_SECRET_KEY_FALLBACKS", FALLBACK_KEY)
        .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0")
        .env("SESSIOND_METRICS_TOKEN", METRICS_TOKEN)
        .env("RUST_LOG", "debug");
    command
}

#[test]
fn help_never_shows_a_secret_from_the_environment() {
    let store = format!("postgres://app:{URL_PASSWORD}@127.0.0.1:1/db?password={QUERY_PASSWORD}");
    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["--help"],
    ] {
        let output = with_secrets(&store).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert_no_secret(&format!("{args:?}"), &printed(&output));
    }
}

#[test]
fn refusals_and_start_up_failures_never_show_a_secret() {
    let stores = [
        // Not a URL tokio-postgres accepts: refused as a bad value (exit 2).
        format!("postgres://app:{URL_PASSWORD}@127.0.0.1:notaport/db"),
        format!("postgres://app@127.0.0.1:notaport/db?password={QUERY_PASSWORD}"),
        // An '@' in the password, and a percent-encoded option name.
        format!("postgres://app:x@{URL_PASSWORD}@127.0.0.1:1/db"),
        format!("postgres://app@127.0.0.1:1/db?pass%77ord={QUERY_PASSWORD}"),
        // An encrypted client key's password, which sessiond refuses.
        format!("postgres://app@127.0.0.1:1/db?sslmode=require&sslpassword={QUERY_PASSWORD}"),
        format!("mysql://app:{URL_PASSWORD}@127.0.0.1/db"),
        format!("redis://:{URL_PASSWORD}@127.0.0.1/notadb"),
        // Valid, but nothing answers: a start-up failure (exit 1).
        format!("postgres://app:{URL_PASSWORD}@127.0.0.1:1/db"),
        format!("postgres://app@127.0.0.1:1/db?password={QUERY_PASSWORD}"),
        format!(
            "postgres://app:{URL_PASSWORD}@127.0.0.1:1/db?sslmode=verify-full&sslrootcert=/nonexistent.pem"
        ),
        format!("redis://app:{URL_PASSWORD}@127.0.0.1:1/0"),
        format!(
            "redis+sentinel://app:{URL_PASSWORD}@127.0.0.1:1/master?sentinel_password={QUERY_PASSWORD}"
        ),
        format!("rediss+cluster://app:{URL_PASSWORD}@127.0.0.1:1/"),
    ];
    for store in stores {
        for command in ["serve", "migrate", "clearsessions"] {
            let output = with_secrets(&store)
                .args([command, "--store-timeout", "2s"])
                .output()
                .unwrap();
            assert!(!output.status.success(), "{command} {store}");
            assert_no_secret(&format!("{command} {store}"), &printed(&output));
        }
    }
}

/// A server on PostgreSQL (which trusts any password here) with every
/// secret set, a Redis cache with a password, serving authenticated calls
/// at debug level, then stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_server_logs_no_secret() {
    if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
        return;
    }
    let Some(cache) = PrivateRedis::start("secrets").await else {
        return;
    };
    let mut conn = redis_server::connect(&cache.addr()).await;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(CACHE_PASSWORD)
        .query_async(&mut conn)
        .await
        .unwrap();
    for password_in in ["user part", "query"] {
        let schema = common::PgSchema::new();
        let store = match password_in {
            "user part" => format!(
                "postgres://postgres:{URL_PASSWORD}@{}/test?schema={}",
                common::POSTGRES_ADDR,
                schema.name
            ),
            _ => format!(
                "postgres://postgres@{}/test?password={QUERY_PASSWORD}&schema={}",
                common::POSTGRES_ADDR,
                schema.name
            ),
        };
        let mut command = with_secrets(&store);
        command.env(
            "SESSIOND_CACHE",
            format!("redis://:{CACHE_PASSWORD}@{}/0", cache.addr()),
        );
        let server = Running::start(&mut command);
        let client = Client::builder()
            .endpoint(server.url())
            .bearer_token(TOKEN)
            .connect()
            .await
            .unwrap();
        let created = client.create(r#"{"user":"ada"}"#, None).await.unwrap();
        client.load(&created.session_key).await.unwrap().unwrap();
        let refused = Client::builder()
            .endpoint(server.url())
            .bearer_token("not-the-token-0123456789")
            .connect()
            .await
            .unwrap();
        assert!(refused.load(&created.session_key).await.is_err());
        server.signal("TERM");
        let (code, log) = server.wait();
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains("sessiond serving"), "{log}");
        assert!(
            log.contains("redis://:***@"),
            "the cache is not in the log: {log}"
        );
        assert_no_secret(
            &format!("the log with the password in the {password_in}"),
            &log,
        );
    }
}
