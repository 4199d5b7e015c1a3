//! Who may call, over what, and how much: bearer tokens, TLS and client
//! certificates (made here with rcgen), the refusal to serve the network
//! unauthenticated, the in-flight limit, deadlines and the metrics that
//! count all of it. A real server on 127.0.0.1:0, real clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use common::pki::{Pki, make_pki};
use common::scrape::{metric, metrics_response, metrics_text};
use common::{Serving, code, hours_from_now, serve_config};
use sessiond::cli::ServeArgs;
use sessiond::{Server, StartError};
use sessiond_client::Client;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn open(db: &Path, args: &[&str]) -> Server {
    Server::open(serve_config(db, args)).await.unwrap()
}

async fn health(channel: Channel) -> Result<ServingStatus, tonic::Status> {
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(answer.into_inner().status())
}

async fn plain_channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn client(addr: std::net::SocketAddr, token: Option<&str>) -> sessiond_client::ClientBuilder {
    let builder = Client::builder().endpoint(format!("http://{addr}"));
    match token {
        Some(token) => builder.bearer_token(token),
        None => builder,
    }
}

#[tokio::test]
async fn tokens_guard_session_calls_and_reflection_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("frontend {TOKEN}\n")).unwrap();
    let server = open(
        &dir.path().join("db.sqlite3"),
        &["--tokens-file", tokens.to_str().unwrap()],
    )
    .await;
    let serving = Serving::start(server).await;
    let addr = serving.addr;

    let allowed = client(addr, Some(TOKEN)).connect().await.unwrap();
    let created = allowed.create("{\"user\": 1}", None).await.unwrap();
    assert!(allowed.load(&created.session_key).await.unwrap().is_some());

    for token in [None, Some("fedcba9876543210fedcba9876543210")] {
        let refused = client(addr, token).connect().await.unwrap();
        let err = refused.load(&created.session_key).await.unwrap_err();
        assert_eq!(code(err), tonic::Code::Unauthenticated, "{token:?}");
        let err = refused.create("{}", None).await.unwrap_err();
        assert_eq!(code(err), tonic::Code::Unauthenticated, "{token:?}");
    }

    // Health stays open to probes without credentials; reflection does not.
    assert_eq!(
        health(plain_channel(addr).await).await.unwrap(),
        ServingStatus::Serving
    );
    let mut reflection =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
            plain_channel(addr).await,
        );
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let status = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    serving.stop().await;
}

#[tokio::test]
async fn a_single_token_from_the_environment_twin_is_enough() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(&dir.path().join("db.sqlite3"), &["--token", TOKEN]).await;
    let serving = Serving::start(server).await;
    let allowed = client(serving.addr, Some(TOKEN)).connect().await.unwrap();
    allowed.create("{}", None).await.unwrap();
    let refused = client(serving.addr, None).connect().await.unwrap();
    let err = refused.exists("abcdefgh12345678").await.unwrap_err();
    assert_eq!(code(err), tonic::Code::Unauthenticated);
    serving.stop().await;
}

/// A server with the certificate and key of `pki` and `extra` flags,
/// serving.
async fn serve_tls(dir: &Path, pki: &Pki, extra: &[&str]) -> Serving {
    let mut args = vec![
        "--tls-cert",
        pki.server_cert.to_str().unwrap(),
        "--tls-key",
        pki.server_key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Serving::start(open(&dir.join("db.sqlite3"), &args).await).await
}

fn tls_client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    identity: bool,
) -> sessiond_client::ClientBuilder {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if identity {
        tls = tls.identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        ));
    }
    Client::builder()
        .endpoint(format!("https://{addr}"))
        .tls(tls)
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn tls_serves_tls_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let serving = serve_tls(dir.path(), &pki, &[]).await;

    let secure = tls_client(serving.addr, &pki, false)
        .connect()
        .await
        .unwrap();
    let created = secure.create("{\"over\": \"tls\"}", None).await.unwrap();
    let loaded = secure.load(&created.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, "{\"over\": \"tls\"}");

    // A plaintext client gets no answer at all.
    let plain = client(serving.addr, None).connect().await;
    match plain {
        Err(_) => {}
        Ok(plain) => assert!(plain.create("{}", None).await.is_err()),
    }
    serving.stop().await;
}

/// A TLS peer that completes the handshake and then sends nothing (no
/// HTTP/2 preface) is closed when the opening deadline passes, like a TCP
/// peer that sends nothing at all.
#[tokio::test]
async fn a_tls_peer_silent_after_its_handshake_is_closed() {
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let serving = serve_tls(dir.path(), &pki, &["--handshake-timeout", "1s"]).await;

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(serving.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();

    // The handshake is done; now the client says nothing. The server must
    // close the connection once the opening deadline has passed.
    let mut buf = [0u8; 64];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // The server's SETTINGS frame, sent without waiting.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "a silent TLS peer was still connected after 10 s"
    );
    serving.stop().await;
}

#[tokio::test]
async fn client_certificates_signed_by_the_ca_are_required_with_a_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let serving = serve_tls(
        dir.path(),
        &pki,
        &["--tls-client-ca", pki.ca.to_str().unwrap()],
    )
    .await;

    let with_cert = tls_client(serving.addr, &pki, true)
        .connect()
        .await
        .unwrap();
    with_cert.create("{}", None).await.unwrap();

    let without = tls_client(serving.addr, &pki, false).connect().await;
    match without {
        Err(_) => {}
        Ok(without) => assert!(without.create("{}", None).await.is_err()),
    }

    // A certificate from another CA is refused as well.
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_pki(other_dir.path());
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            &other.client_cert_pem,
            &other.client_key_pem,
        ));
    tls = tls.timeout(Duration::from_secs(5));
    let stranger = Client::builder()
        .endpoint(format!("https://{}", serving.addr))
        .tls(tls)
        .connect()
        .await;
    match stranger {
        Err(_) => {}
        Ok(stranger) => assert!(stranger.create("{}", None).await.is_err()),
    }
    serving.stop().await;
}

async fn start_error(args: &[&str]) -> StartError {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let store = format!("sqlite://{}", db.display());
    let mut argv = vec!["serve", "--store", &store];
    argv.extend_from_slice(args);
    let config = ServeArgs::try_parse_from(argv).unwrap().into_config();
    let err = Server::open(config).await.unwrap_err();
    assert!(!db.exists(), "the store was opened before the check: {err}");
    err
}

#[tokio::test]
async fn the_network_is_not_served_without_tokens_or_client_certificates_unless_asked() {
    let err = start_error(&["--listen", "0.0.0.0:50051"]).await;
    assert!(matches!(err, StartError::Unauthenticated(_)), "{err}");
    let message = err.to_string();
    for part in [
        "0.0.0.0:50051",
        "--tokens-file",
        "SESSIOND_TOKEN",
        "--tls-cert",
        "--insecure-allow-unauthenticated",
    ] {
        assert!(message.contains(part), "{part}: {message}");
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    // TLS alone encrypts, but any client that reaches the port gets in.
    let pki = make_pki(dir.path());
    let (cert, key, ca) = (
        pki.server_cert.to_str().unwrap(),
        pki.server_key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    let err = start_error(&[
        "--listen",
        "0.0.0.0:50051",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ])
    .await;
    assert!(matches!(err, StartError::Unauthenticated(_)), "{err}");
    assert!(err.to_string().contains("--tls-client-ca"), "{err}");

    for args in [
        &[
            "--listen",
            "0.0.0.0:50051",
            "--insecure-allow-unauthenticated",
        ][..],
        &["--listen", "0.0.0.0:50051", "--token", TOKEN][..],
        &[
            "--listen",
            "0.0.0.0:50051",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-client-ca",
            ca,
        ][..],
        &["--listen", "[::1]:50051"][..],
    ] {
        let store = format!("sqlite://{}", db.display());
        let mut argv = vec!["serve", "--store", &store];
        argv.extend_from_slice(args);
        Server::open(ServeArgs::try_parse_from(argv).unwrap().into_config())
            .await
            .unwrap_or_else(|err| panic!("{args:?}: {err}"));
    }
}

#[tokio::test]
async fn bad_security_settings_stop_the_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let missing = dir.path().join("missing.pem");
    let cert = pki.server_cert.to_str().unwrap();
    let key = pki.server_key.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--tls-cert", cert], "--tls-key"),
        (vec!["--tls-client-ca", cert], "--tls-client-ca"),
        (
            vec!["--tls-cert", missing.to_str().unwrap(), "--tls-key", key],
            "--tls-cert",
        ),
        (vec!["--tls-cert", key, "--tls-key", key], "--tls-cert"),
        (vec!["--tls-cert", cert, "--tls-key", cert], "--tls-key"),
        (
            vec!["--tokens-file", missing.to_str().unwrap()],
            "--tokens-file",
        ),
        (vec!["--token", "short"], "SESSIOND_TOKEN"),
        (
            vec!["--max-data-bytes", "100000", "--max-message-bytes", "4096"],
            "--max-message-bytes",
        ),
    ];
    for (args, flag) in cases {
        let err = start_error(&args).await;
        let message = sessiond::error::ErrorChain(&err).to_string();
        assert!(message.contains(flag), "{args:?}: {message}");
    }
    // A key that belongs to another certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = make_pki(other_dir.path());
    let err = start_error(&[
        "--tls-cert",
        cert,
        "--tls-key",
        other.server_key.to_str().unwrap(),
    ])
    .await;
    assert!(err.to_string().contains("--tls-key"), "{err}");
}

/// Holds SQLite's write lock from another connection, as another process
/// would, so that writes wait in flight.
fn lock_writes(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    conn
}

/// Metrics beyond loopback need a token, unless explicitly public; with a
/// token, a scraper without it gets 401.
#[tokio::test]
async fn metrics_beyond_loopback_need_a_token_or_an_explicit_public() {
    let err = start_error(&["--metrics-listen", "0.0.0.0:0"]).await;
    let message = sessiond::error::ErrorChain(&err).to_string();
    for part in ["--metrics-token", "--metrics-public", "0.0.0.0:0"] {
        assert!(message.contains(part), "{message}");
    }
    let err = start_error(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-token",
        "short",
    ])
    .await;
    let message = sessiond::error::ErrorChain(&err).to_string();
    assert!(message.contains("SESSIOND_METRICS_TOKEN"), "{message}");
    assert!(!message.contains("short"), "{message}");

    let dir = tempfile::tempdir().unwrap();
    let public = open(
        &dir.path().join("public.sqlite3"),
        &["--metrics-listen", "0.0.0.0:0", "--metrics-public"],
    )
    .await;
    assert!(public.metrics_addr().is_some());
    drop(public);

    let server = open(
        &dir.path().join("db.sqlite3"),
        &["--metrics-listen", "0.0.0.0:0", "--metrics-token", TOKEN],
    )
    .await;
    let port = server.metrics_addr().unwrap().port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let serving = Serving::start(server).await;
    for refused in [None, Some("Bearer not-the-token-0123456789"), Some(TOKEN)] {
        let response = metrics_response(addr, refused).await;
        assert!(
            response.starts_with("HTTP/1.1 401"),
            "{refused:?}: {response}"
        );
        assert!(!response.contains("sessiond_calls"), "{response}");
    }
    let response = metrics_response(addr, Some(&format!("Bearer {TOKEN}"))).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("# EOF"), "{response}");
    serving.stop().await;
}

#[tokio::test]
async fn past_the_in_flight_limit_calls_are_refused_and_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let server = open(
        &db,
        &[
            "--max-in-flight",
            "8",
            "--store-timeout",
            "60s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let metrics = server.metrics_addr().unwrap();
    let serving = Serving::start(server).await;
    let sessions = Client::connect(format!("http://{}", serving.addr))
        .await
        .unwrap();
    let created = sessions.create("{}", None).await.unwrap();

    let lock = lock_writes(&db);
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..40 {
        let (sessions, key) = (sessions.clone(), created.session_key.clone());
        calls.spawn(async move {
            sessions
                .save(
                    &key,
                    &format!("{{\"n\": {n}}}"),
                    Some(hours_from_now(1)),
                    false,
                )
                .await
        });
    }
    // Eight wait for the lock; the other 32 are refused without waiting.
    let mut refused = 0;
    while refused < 32 {
        let result = tokio::time::timeout(Duration::from_secs(30), calls.join_next())
            .await
            .expect("refusals should not wait for the lock")
            .unwrap()
            .unwrap();
        let err = result.expect_err("no save can succeed while the lock is held");
        assert_eq!(code(err), tonic::Code::ResourceExhausted);
        refused += 1;
    }
    assert_eq!(calls.len(), 8);
    let err = sessions.load(&created.session_key).await.unwrap_err();
    assert_eq!(code(err), tonic::Code::ResourceExhausted);
    assert_eq!(
        health(plain_channel(serving.addr).await).await.unwrap(),
        ServingStatus::Serving
    );
    let text = metrics_text(metrics).await;
    assert_eq!(metric(&text, "sessiond_calls_in_flight"), 8.0, "{text}");

    // Once the lock goes, the waiting calls finish and new ones get in.
    lock.execute_batch("COMMIT").unwrap();
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    assert!(sessions.load(&created.session_key).await.unwrap().is_some());
    let text = metrics_text(metrics).await;
    assert_eq!(
        metric(
            &text,
            "sessiond_calls_total{method=\"Save\",code=\"RESOURCE_EXHAUSTED\"}"
        ),
        32.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sessiond_calls_total{method=\"Save\",code=\"OK\"}"),
        8.0
    );
    assert_eq!(metric(&text, "sessiond_calls_in_flight"), 0.0, "{text}");
    serving.stop().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_ends_with_deadline_exceeded_and_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let server = open(&db, &["--store-timeout", "60s"]).await;
    let serving = Serving::start(server).await;
    let sessions = Client::builder()
        .endpoint(format!("http://{}", serving.addr))
        .request_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let lock = lock_writes(&db);
    let err = sessions.create("{}", None).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
        ),
        "{err:?}"
    );
    drop(lock);
    sessions.create("{}", None).await.unwrap();
    // The write whose caller gave up before it began was not made.
    assert_eq!(common::row_count(&common::open_db(&db)), 1);
    serving.stop().await;
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code_and_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = open(
        &dir.path().join("db.sqlite3"),
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--purge-interval",
            "0",
        ],
    )
    .await;
    let metrics = server.metrics_addr().unwrap();
    let serving = Serving::start(server).await;
    let sessions = client(serving.addr, Some(TOKEN)).connect().await.unwrap();
    let created = sessions.create("{\"a\": 1}", None).await.unwrap();
    sessions.load(&created.session_key).await.unwrap();
    let cycled = sessions
        .cycle_key(&created.session_key, None, None)
        .await
        .unwrap();
    assert!(sessions.delete(&cycled.session_key).await.unwrap());
    let err = sessions.load("bad key!").await.unwrap_err();
    assert_eq!(code(err), tonic::Code::InvalidArgument);
    sessions
        .create("{}", Some(hours_from_now(-1)))
        .await
        .unwrap();
    assert_eq!(sessions.clear_expired().await.unwrap(), 1);
    let stranger = client(serving.addr, None).connect().await.unwrap();
    assert!(stranger.exists("abcdefgh12345678").await.is_err());

    let text = metrics_text(metrics).await;
    for (series, value) in [
        ("sessiond_calls_total{method=\"Create\",code=\"OK\"}", 2.0),
        ("sessiond_calls_total{method=\"Load\",code=\"OK\"}", 1.0),
        (
            "sessiond_calls_total{method=\"Load\",code=\"INVALID_ARGUMENT\"}",
            1.0,
        ),
        (
            "sessiond_calls_total{method=\"Exists\",code=\"UNAUTHENTICATED\"}",
            1.0,
        ),
        (
            "sessiond_call_duration_seconds_count{method=\"Load\",code=\"OK\"}",
            1.0,
        ),
        ("sessiond_sessions_created_total", 2.0),
        ("sessiond_sessions_cycled_total", 1.0),
        ("sessiond_sessions_deleted_total", 1.0),
        ("sessiond_purges_total{trigger=\"call\"}", 1.0),
        ("sessiond_purged_sessions_total{trigger=\"call\"}", 1.0),
    ] {
        assert_eq!(metric(&text, series), value, "{series} in\n{text}");
    }
    assert!(!text.contains(&created.session_key), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    serving.stop().await;
}
