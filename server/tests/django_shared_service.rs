//! The Django engine (`integrations/python/sessiond_django`) against sessiond
//! run as a shared service: over mutual TLS, and with two replicas on one
//! store, one of which is killed.
//!
//! The sessionds are the built binary, configured by `SESSIOND_*`
//! variables. Django's `SessionStore` runs in one long-lived Python process
//! per case (server/tests/django/shared_service.py), fed one command a line,
//! so its gRPC channels outlive a killed replica as a web worker's would.
//! Python runs from the virtualenv of the Django engine's tests; without
//! python3 or PyPI the tests print `SKIPPED:` and pass, except under
//! `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::pki::make_pki;
use common::process::{Running, sessiond};
use common::python;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The longest one command may take: far above SESSIOND_TIMEOUT, a bound
/// for a wedged process, not a timed assertion.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// `SESSIOND_TIMEOUT` of the failover case: the killed replica must be
/// skipped within it.
const FAILOVER_TIMEOUT_SECONDS: &str = "3";

/// One Python process holding Django configured for sessiond.
struct Django {
    child: Child,
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    stderr: tempfile::NamedTempFile,
}

impl Django {
    /// Starts the script with Django's sessiond settings in `settings`
    /// (environment variables of the same names) and nothing of the
    /// caller's `SESSIOND_*`.
    async fn start(venv: &Path, python_path: &str, settings: &[(&str, &str)]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/django/shared_service.py");
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut command = tokio::process::Command::new(venv.join("bin/python"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SESSIOND_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg(script)
            .env_remove("DJANGO_SETTINGS_MODULE")
            .env("PYTHONPATH", python_path)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("GRPC_VERBOSITY", "ERROR")
            .envs(settings.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let answers = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            answers,
            stderr,
        }
    }

    /// Sends one command and returns its answer.
    async fn run(&mut self, command: &str) -> Value {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        let line = match tokio::time::timeout(ANSWER_TIMEOUT, self.answers.next_line()).await {
            Ok(Ok(Some(line))) => line,
            outcome => {
                let _ = self.child.kill().await;
                panic!(
                    "no answer to {command:?} ({outcome:?})\n--- stderr\n{}",
                    std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
                );
            }
        };
        serde_json::from_str(&line).unwrap()
    }

    /// Runs a command that must succeed.
    async fn ok(&mut self, command: &str) -> Value {
        let answer = self.run(command).await;
        assert!(
            answer.get("error").is_none(),
            "{command:?} failed: {answer}"
        );
        answer
    }
}

/// The virtualenv and the `PYTHONPATH` of the checkout's engine, with stubs
/// generated into `stubs`; `None` when Python is not available (reported).
async fn python_env(stubs: &Path) -> Option<(PathBuf, String)> {
    let venv = python::django_venv()?;
    let path = python::checkout_path(&venv, stubs).await;
    Some((venv, path))
}

fn key_of(answer: &Value) -> String {
    answer["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn django_sessions_work_over_mutual_tls_and_fail_clearly_without_the_client_certificate() {
    let stubs = tempfile::tempdir().unwrap();
    let Some((venv, python_path)) = python_env(stubs.path()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = Running::start(
        sessiond()
            .env(
                "SESSIOND_STORE",
                format!("sqlite://{}", dir.path().join("sessions.sqlite3").display()),
            )
            .env("SESSIOND_TLS_CERT", &pki.server_cert)
            .env("SESSIOND_TLS_KEY", &pki.server_key)
            .env("SESSIOND_TLS_CLIENT_CA", &pki.ca),
    );
    let ca = pki.ca.to_str().unwrap();
    // By IP, with the certificate's name given apart, as a deployment that
    // addresses replicas by IP would.
    let trusted = [
        ("SESSIOND_ADDRESSES", server.addr.as_str()),
        ("SESSIOND_TIMEOUT", "5"),
        ("SESSIOND_TLS_CA", ca),
        ("SESSIOND_TLS_SERVER_NAME", "localhost"),
    ];
    let client_cert = [
        ("SESSIOND_TLS_CERT", pki.client_cert.to_str().unwrap()),
        ("SESSIOND_TLS_KEY", pki.client_key.to_str().unwrap()),
    ];
    let mut django = Django::start(
        &venv,
        &python_path,
        &[&trusted[..], &client_cert[..]].concat(),
    )
    .await;

    let key = key_of(&django.ok(r#"create {"cart":["book"]}"#).await);
    assert_eq!(
        django.ok(&format!("load {key}")).await["data"],
        json!({"cart": ["book"]})
    );
    let updated = django.ok(&format!(r#"update {key} {{"user":7}}"#)).await;
    assert_eq!(key_of(&updated), key);
    assert_eq!(
        django.ok(&format!("load {key}")).await["data"],
        json!({"cart": ["book"], "user": 7})
    );
    let cycled = key_of(&django.ok(&format!("cycle {key}")).await);
    assert_ne!(cycled, key);
    assert_eq!(django.ok(&format!("load {key}")).await["data"], json!({}));
    assert_eq!(
        django.ok(&format!("load {cycled}")).await["data"],
        json!({"cart": ["book"], "user": 7})
    );
    django.ok(&format!("delete {cycled}")).await;
    assert_eq!(
        django.ok(&format!("exists {cycled}")).await["exists"],
        json!(false)
    );
    let live = key_of(&django.ok(r#"create {"kept":true}"#).await);

    // The CA but no client certificate: sessiond refuses the handshake.
    let mut no_cert = Django::start(&venv, &python_path, &trusted).await;
    let refused = no_cert.run(&format!("load {live}")).await;
    let class = refused["error"].as_str().unwrap_or_default();
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        ["SessiondUnavailable", "SessiondError"].contains(&class),
        "{refused}"
    );
    assert!(message.contains(&server.addr), "{refused}");
    assert!(message.contains("SESSIOND_TLS_CERT"), "{refused}");
    assert!(
        !message.contains(&live),
        "the message shows the key: {refused}"
    );
    // The session is still there for a client with its certificate.
    assert_eq!(
        django.ok(&format!("load {live}")).await["data"],
        json!({"kept": true})
    );
}

#[tokio::test]
async fn django_skips_a_killed_replica_and_finds_its_sessions_on_the_other() {
    let stubs = tempfile::tempdir().unwrap();
    let Some((venv, python_path)) = python_env(stubs.path()).await else {
        return;
    };
    // Two replicas on one SQLite file: the store they share, as replicas
    // share a PostgreSQL database.
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("sessions.sqlite3").display());
    let first = Running::start(sessiond().env("SESSIOND_STORE", &store));
    let second = Running::start(sessiond().env("SESSIOND_STORE", &store));
    let (first_addr, second_addr) = (first.addr.clone(), second.addr.clone());
    let addresses = format!("{first_addr},{second_addr}");
    let mut django = Django::start(
        &venv,
        &python_path,
        &[
            ("SESSIOND_ADDRESSES", &addresses),
            ("SESSIOND_TIMEOUT", FAILOVER_TIMEOUT_SECONDS),
        ],
    )
    .await;

    let created = django.ok(r#"create {"user":7}"#).await;
    assert_eq!(created["answered_by"], json!(first_addr), "{created}");
    let key = key_of(&created);
    let loaded = django.ok(&format!("load {key}")).await;
    assert_eq!(loaded["answered_by"], json!(first_addr), "{loaded}");

    // As the OOM killer would: no goodbye on the connection the engine holds.
    first.kill();

    // Within SESSIOND_TIMEOUT, or the call would fail: the first replica
    // is skipped, and the session made through it is there.
    let loaded = django.ok(&format!("load {key}")).await;
    assert_eq!(loaded["data"], json!({"user": 7}));
    assert_eq!(loaded["answered_by"], json!(second_addr), "{loaded}");
    let saved = django.ok(&format!(r#"update {key} {{"cart":[1]}}"#)).await;
    assert_eq!(saved["answered_by"], json!(second_addr), "{saved}");
    assert_eq!(
        django.ok(&format!("load {key}")).await["data"],
        json!({"user": 7, "cart": [1]})
    );

    // A worker started after the kill tries the dead address first too.
    let mut later = Django::start(
        &venv,
        &python_path,
        &[
            ("SESSIOND_ADDRESSES", &addresses),
            ("SESSIOND_TIMEOUT", FAILOVER_TIMEOUT_SECONDS),
        ],
    )
    .await;
    let loaded = later.ok(&format!("load {key}")).await;
    assert_eq!(loaded["data"], json!({"user": 7, "cart": [1]}));
    assert_eq!(loaded["answered_by"], json!(second_addr), "{loaded}");
    drop(second);
}
