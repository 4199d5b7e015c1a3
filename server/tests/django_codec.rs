//! `--codec django`: session_data stored exactly as Django signs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clap::Parser;
use common::{TestServer, stored_row};
use sessiond::Server;

const SECRET: &str = "sessiond-test-secret";

#[tokio::test]
async fn data_is_stored_signed_and_read_back() {
    let server = TestServer::start_with(&["--codec", "django", "--secret-key", SECRET]).await;
    let data = r#"{"_auth_user_id":"42","name":"Zoë 🎉","n":9007199254740993}"#;
    let key = server.client.create(data, None).await.unwrap().session_key;
    let (stored, _) = stored_row(&server.db(), &key).unwrap();
    let parts: Vec<&str> = stored.split(':').collect();
    assert_eq!(parts.len(), 3, "{stored}");
    assert!(stored.is_ascii());
    assert!(!stored.contains("_auth_user_id"), "{stored}");

    let loaded = server.client.load(&key).await.unwrap().unwrap();
    let expected: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&loaded.data).unwrap(),
        expected
    );

    server
        .client
        .patch(&key, r#"{"cart":[1]}"#, &[], false, None)
        .await
        .unwrap();
    let patched: serde_json::Value =
        serde_json::from_str(&server.client.load(&key).await.unwrap().unwrap().data).unwrap();
    assert_eq!(patched["cart"], serde_json::json!([1]));
    assert_eq!(patched["_auth_user_id"], "42");
    server.stop().await;
}

#[tokio::test]
async fn data_signed_with_another_key_reads_as_empty_and_fallbacks_are_honoured() {
    let old = TestServer::start_with(&["--codec", "django", "--secret-key", "the-old-key"]).await;
    let key = old
        .client
        .create(r#"{"user":"ada"}"#, None)
        .await
        .unwrap()
        .session_key;
    let dir = old.stop().await;

    let rotated =
        TestServer::start_in(dir, &["--codec", "django", "--secret-key", "the-new-key"]).await;
    assert_eq!(rotated.client.load(&key).await.unwrap().unwrap().data, "{}");
    let dir = rotated.stop().await;

    let with_fallback = TestServer::start_in(
        dir,
        &[
            "--codec",
            "django",
            "--secret-key",
            "the-new-key",
            "--secret-key-fallbacks",
            "x,the-old-key",
        ],
    )
    .await;
    assert_eq!(
        with_fallback.client.load(&key).await.unwrap().unwrap().data,
        r#"{"user":"ada"}"#
    );
    with_fallback.stop().await;
}

#[tokio::test]
async fn the_django_codec_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("db.sqlite3").display());
    let config =
        sessiond::cli::ServeArgs::try_parse_from(["serve", "--store", &store, "--codec", "django"])
            .unwrap()
            .into_config();
    let err = Server::open(config).await.unwrap_err().to_string();
    assert!(
        err.contains("--secret-key") && err.contains("SESSIOND_SECRET_KEY"),
        "{err}"
    );
    assert!(
        !dir.path().join("db.sqlite3").exists(),
        "nothing is opened before the check"
    );
}

#[test]
fn secrets_never_show_in_help() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["serve", "--help"])
        .env("SESSIOND_SECRET_KEY", "hunter2-do-not-show")
        .env("SESSIOND_SECRET_KEY_FALLBACKS", "old-hunter2")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("SESSIOND_SECRET_KEY"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}
