//! TLS to PostgreSQL with libpq's `sslmode` meanings, against real servers
//! the test starts (see `common::postgres_tls`): a TLS-only one, one whose
//! certificate expired, one whose certificate names another host, and one
//! without TLS. Each mode that should connect serves calls; each that must
//! not fails at start-up with an error naming the check and the option.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clap::Parser;
use common::TestServer;
use common::postgres_tls::{CERT_USER, Servers, Variant, servers};
use common::process::{Running, sessiond};
use sessiond::Server;
use sessiond::cli::ServeArgs;
use sessiond::error::ErrorChain;
use sessiond_client::Client;

macro_rules! require_servers {
    () => {
        match servers() {
            Some(servers) => servers,
            None => return,
        }
    };
}

/// Starts sessiond on `store`, saves a session and loads it back.
async fn serves(store: &str) {
    let server = TestServer::start_on(store, &[]).await;
    round_trip(&server.client).await;
    server.stop().await;
}

async fn round_trip(client: &Client) {
    let key = "tlssession0001";
    client
        .save(key, r#"{"user":"ada"}"#, None, true)
        .await
        .unwrap();
    let loaded = client.load(key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
}

/// The error sessiond prints when it cannot start on `store`.
async fn start_up_error(store: &str) -> String {
    let argv = [
        "serve",
        "--store",
        store,
        "--listen",
        "127.0.0.1:0",
        "--store-timeout",
        "5s",
    ];
    let config = ServeArgs::try_parse_from(argv).unwrap().into_config();
    match Server::open(config).await {
        Ok(_) => panic!("sessiond started on {store}"),
        Err(err) => {
            let shown = ErrorChain(&err).to_string();
            eprintln!("sessiond on {store}: {shown}");
            shown
        }
    }
}

fn ca(servers: &Servers) -> String {
    servers.pki.ca.display().to_string()
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let servers = require_servers!();
    // hostssl-only: connecting at all proves TLS. The expired and wrong-host
    // certificates pass too, as with libpq: require only encrypts.
    for variant in [Variant::TlsOnly, Variant::Expired, Variant::WrongHost] {
        serves(&servers.url(variant, "127.0.0.1", "sslmode=require")).await;
    }
}

#[tokio::test]
async fn verify_full_with_the_right_ca_serves() {
    let servers = require_servers!();
    let options = format!("sslmode=verify-full&sslrootcert={}", ca(servers));
    serves(&servers.url(Variant::TlsOnly, "localhost", &options)).await;
    // By address: the certificate names 127.0.0.1 too.
    serves(&servers.url(Variant::TlsOnly, "127.0.0.1", &options)).await;
    // The default, prefer, checks the chain when a root certificate is
    // given, as libpq's does: the other CA fails it.
    serves(&servers.url(
        Variant::TlsOnly,
        "localhost",
        &format!("sslrootcert={}", ca(servers)),
    ))
    .await;
    let other = format!("sslrootcert={}", servers.pki.other_ca.display());
    let err = start_up_error(&servers.url(Variant::TlsOnly, "localhost", &other)).await;
    assert!(
        err.contains("checked under sslmode=prefer, the default"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let servers = require_servers!();
    let options = format!("sslmode=verify-ca&sslrootcert={}", ca(servers));
    serves(&servers.url(Variant::WrongHost, "localhost", &options)).await;

    let options = format!("sslmode=verify-full&sslrootcert={}", ca(servers));
    let err = start_up_error(&servers.url(Variant::WrongHost, "localhost", &options)).await;
    assert!(
        err.contains("certificate does not name the host localhost")
            && err.contains("sslmode=verify-full")
            && err.contains("sslmode=verify-ca"),
        "{err}"
    );
}

#[tokio::test]
async fn prefer_uses_tls_where_offered_and_plaintext_where_refused() {
    let servers = require_servers!();
    for options in ["sslmode=prefer", ""] {
        serves(&servers.url(Variant::TlsOnly, "127.0.0.1", options)).await;
        serves(&servers.url(Variant::Plaintext, "127.0.0.1", options)).await;
    }
}

#[tokio::test]
async fn disable_is_refused_by_a_tls_only_server() {
    let servers = require_servers!();
    serves(&servers.url(Variant::Plaintext, "127.0.0.1", "sslmode=disable")).await;
    let err = start_up_error(&servers.url(Variant::TlsOnly, "127.0.0.1", "sslmode=disable")).await;
    assert!(
        err.contains("refused a connection without TLS (sslmode=disable)")
            && err.contains("no encryption"),
        "{err}"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_naming_sslrootcert() {
    let servers = require_servers!();
    let other = servers.pki.other_ca.display().to_string();
    // require with a root certificate checks the chain, as libpq's does.
    for mode in ["verify-full", "verify-ca", "require"] {
        let options = format!("sslmode={mode}&sslrootcert={other}");
        let err = start_up_error(&servers.url(Variant::TlsOnly, "localhost", &options)).await;
        assert!(
            err.contains(&format!("not signed by a CA of sslrootcert={other}"))
                && err.contains(&format!("sslmode={mode}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_expired_certificate_fails_verification() {
    let servers = require_servers!();
    for mode in ["verify-full", "verify-ca"] {
        let options = format!("sslmode={mode}&sslrootcert={}", ca(servers));
        let err = start_up_error(&servers.url(Variant::Expired, "localhost", &options)).await;
        assert!(
            err.contains("certificate has expired") && err.contains(&format!("sslmode={mode}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails() {
    let servers = require_servers!();
    let err =
        start_up_error(&servers.url(Variant::Plaintext, "127.0.0.1", "sslmode=require")).await;
    assert!(
        err.contains("does not accept TLS, which sslmode=require demands"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_or_unusable_files_are_named_with_their_option() {
    let servers = require_servers!();
    let err = start_up_error(&servers.url(
        Variant::TlsOnly,
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await;
    assert!(
        err.contains("cannot read /nonexistent/ca.pem (the URL option sslrootcert)")
            && err.contains("No such file"),
        "{err}"
    );
    // A key where the CA bundle should be.
    let options = format!(
        "sslmode=verify-full&sslrootcert={}",
        servers.pki.client_key.display()
    );
    let err = start_up_error(&servers.url(Variant::TlsOnly, "localhost", &options)).await;
    assert!(err.contains("holds no certificate in PEM form"), "{err}");
    let err =
        start_up_error(&servers.url(Variant::TlsOnly, "localhost", "sslmode=verify-full")).await;
    assert!(err.contains("set sslrootcert=FILE"), "{err}");
    // A bad value is refused before anything is opened, as a bad flag.
    let argv = [
        "serve",
        "--store",
        &servers.url(Variant::TlsOnly, "localhost", "sslmode=allow"),
    ];
    let err = ServeArgs::try_parse_from(argv).unwrap_err().to_string();
    assert!(
        err.contains("sslmode must be one of")
            && err.contains("allow, plaintext first, is not supported"),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_certificate_logs_in_where_the_server_demands_one() {
    let servers = require_servers!();
    let pki = &servers.pki;
    let verify = format!("sslmode=verify-full&sslrootcert={}", ca(servers));
    let options = format!(
        "{verify}&sslcert={}&sslkey={}",
        pki.client_cert.display(),
        pki.client_key.display()
    );
    serves(&servers.url_as(CERT_USER, Variant::TlsOnly, "localhost", &options)).await;

    let err =
        start_up_error(&servers.url_as(CERT_USER, Variant::TlsOnly, "localhost", &verify)).await;
    assert!(
        err.contains("requires a client certificate for this user; give sslcert and sslkey"),
        "{err}"
    );
    let half = format!("{verify}&sslcert={}", pki.client_cert.display());
    let err =
        start_up_error(&servers.url_as(CERT_USER, Variant::TlsOnly, "localhost", &half)).await;
    assert!(err.contains("needs both sslcert and sslkey"), "{err}");
}

/// The real binary, as an operator runs it: `PGSSLMODE` and friends apply
/// where the URL says nothing, and the URL wins where it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pgssl_variables_are_fallbacks_the_url_overrides() {
    let servers = require_servers!();
    let plain_url = servers.url(Variant::TlsOnly, "localhost", "");
    let running = Running::start(
        sessiond()
            .env("SESSIOND_STORE", &plain_url)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &servers.pki.ca),
    );
    let client = Client::connect(running.url()).await.unwrap();
    round_trip(&client).await;
    running.signal("TERM");
    let (code, _) = running.wait();
    assert_eq!(code, Some(0));

    // The variable alone: refused by the TLS-only server.
    let output = sessiond()
        .args(["migrate", "--store", &plain_url])
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        printed.contains("refused a connection without TLS (PGSSLMODE=disable)"),
        "{printed}"
    );
    // The URL wins over it.
    let output = sessiond()
        .args([
            "migrate",
            "--store",
            &servers.url(Variant::TlsOnly, "localhost", "sslmode=require"),
        ])
        .env("PGSSLMODE", "disable")
        .env("PGSSLROOTCERT", &servers.pki.other_ca)
        .output()
        .unwrap();
    // require with PGSSLROOTCERT checks the chain: the other CA fails it,
    // naming the variable.
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(
        printed.contains("not signed by a CA of PGSSLROOTCERT=")
            && printed.contains("checked under sslmode=require"),
        "{printed}"
    );
    let output = sessiond()
        .args([
            "migrate",
            "--store",
            &servers.url(Variant::TlsOnly, "localhost", "sslmode=require"),
        ])
        .env("PGSSLMODE", "disable")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `sslrootcert=system` reads the OS trust store, whose file an operator
/// (or a container image) may point elsewhere with `SSL_CERT_FILE`; it
/// implies verify-full, as in libpq.
#[test]
fn sslrootcert_system_reads_the_trust_store_ssl_cert_file_names() {
    let Some(servers) = servers() else { return };
    let migrate = |host: &str, trusted: &std::path::Path| {
        sessiond()
            .args([
                "migrate",
                "--store",
                &servers.url(Variant::TlsOnly, host, "sslrootcert=system"),
            ])
            .env("SSL_CERT_FILE", trusted)
            .env_remove("SSL_CERT_DIR")
            .output()
            .unwrap()
    };
    let output = migrate("localhost", &servers.pki.ca);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = migrate("localhost", &servers.pki.other_ca);
    let printed = String::from_utf8_lossy(&output.stderr);
    assert!(
        printed.contains("not signed by a CA of sslrootcert=system")
            && printed.contains("checked under sslmode=verify-full, the default"),
        "{printed}"
    );
}
