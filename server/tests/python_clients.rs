//! The Python package's framework-neutral client (`sessiond_client`), its
//! Flask extension (`flask_sessiond`) and its ASGI middleware
//! (`sessiond_asgi`), checked by their pytest suite
//! (`integrations/python/tests/clients`) against real sessionds: one that
//! requires a token, and one serving mutual TLS with certificates made here.
//! The Flask and Starlette apps of the suite serve real HTTP (werkzeug's
//! server, uvicorn) in the test process.
//!
//! Python runs from a virtualenv built from PyPI under the target directory
//! (once; later runs reuse it). Without python3 or PyPI the test prints
//! `SKIPPED:` and passes, except under `CI=true`, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::pki::make_pki;
use common::python::{self, integration_dir};
use common::{Serving, TestServer, serve_config};
use sessiond::Server;

/// The whole suite takes seconds; the bound is for a wedged run.
const PYTEST_TIMEOUT: Duration = Duration::from_secs(300);

/// The bearer token of the plaintext sessiond.
const TOKEN: &str = "python-clients-token-0123456789";

/// One `passed`/`failed`/... count of pytest's closing line.
fn count(summary: &str, outcome: &str) -> u32 {
    summary
        .split([',', '=', ' '])
        .collect::<Vec<_>>()
        .windows(2)
        .find_map(|pair| (pair[1] == outcome).then(|| pair[0].parse().ok()).flatten())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_flask_and_asgi_suite_passes() {
    let Some(venv) = python::venv(&[
        python::GRPCIO,
        python::GRPCIO_TOOLS,
        python::PROTOBUF,
        python::FLASK,
        python::STARLETTE,
        python::UVICORN,
        python::PYTEST,
    ]) else {
        return;
    };
    let dir = integration_dir();
    let stubs = tempfile::tempdir().unwrap();
    let python_path = python::checkout_path(&venv, stubs.path()).await;

    let server = TestServer::start_with(&["--token", TOKEN]).await;
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path());
    let tls_args = [
        "--tls-cert",
        pki.server_cert.to_str().unwrap(),
        "--tls-key",
        pki.server_key.to_str().unwrap(),
        "--tls-client-ca",
        pki.ca.to_str().unwrap(),
    ];
    let tls_server = Serving::start(
        Server::open(serve_config(&certs.path().join("db.sqlite3"), &tls_args))
            .await
            .unwrap(),
    )
    .await;

    let mut pytest = tokio::process::Command::new(venv.join("bin/python"));
    pytest
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-v", "-rfEs"])
        .arg("tests/clients")
        .current_dir(&dir)
        .env("PYTHONPATH", &python_path)
        .env("SESSIOND_ADDRESS", server.addr.to_string())
        .env("SESSIOND_TOKEN", TOKEN)
        .env(
            "SESSIOND_TLS_ADDRESS",
            format!("localhost:{}", tls_server.addr.port()),
        )
        .env("SESSIOND_TLS_CA", &pki.ca)
        .env("SESSIOND_TLS_CERT", &pki.client_cert)
        .env("SESSIOND_TLS_KEY", &pki.client_key);
    let finished = python::run_to_end(pytest, PYTEST_TIMEOUT).await;
    server.stop().await;
    tls_server.stop().await;

    let summary = finished
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('=') && line.contains(" in "))
        .unwrap_or("no pytest summary line")
        .to_owned();
    let _ = writeln!(
        std::io::stderr().lock(),
        "python client, Flask and ASGI tests (integrations/python/tests/clients): {summary}"
    );
    assert!(
        finished.status.is_some_and(|status| status.success()),
        "pytest failed: {summary}\n--- stdout\n{}\n--- stderr\n{}",
        finished.stdout,
        finished.stderr
    );
    // Nothing may be skipped: a test that cannot run must fail.
    for outcome in ["failed", "skipped", "error", "errors", "xfailed"] {
        assert_eq!(count(&summary, outcome), 0, "{outcome}: {summary}");
    }
    assert!(count(&summary, "passed") >= 40, "{summary}");
}
