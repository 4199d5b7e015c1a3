//! Connection floods from other processes, against the built binary, as an
//! attacker on the network would send them (connections are accepted
//! before any token is checked): past `--max-connections` and
//! `--max-connections-per-ip` new connections are closed at once, and at
//! the open-file limit accepting pauses instead of spinning. Meanwhile the
//! clients already connected are served, the server stays near idle and
//! its memory bounded, and once the flood goes new clients are served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::flood::Flood;
use common::process::{Running, sessiond, sessiond_with_file_limit, sessiond_with_soft_file_limit};
use common::scrape::{metric, metrics_text};
use sessiond_client::Client;

/// CPU the server may use while a flood holds, over [`CPU_WINDOW`]: an
/// accept loop that spins uses all of it, an idle server next to nothing.
const CPU_WINDOW: Duration = Duration::from_secs(2);
const IDLE_CPU: Duration = Duration::from_millis(250);

/// How long the server gets to notice that a flood went away.
const RECOVERY: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_ones_are_closed_and_clients_are_served() {
    const CAP: usize = 200;
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", "memory://")
            .env("SESSIOND_MAX_CONNECTIONS", CAP.to_string())
            .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0"),
    );
    let client = Client::connect(server.url()).await.unwrap();
    let key = client
        .create("{\"user\": 1}", None)
        .await
        .unwrap()
        .session_key;
    let rss_before = server.rss_bytes();

    // Twice the cap, from four processes.
    let Some(flood) = Flood::start(&server.addr, 4, CAP / 2, None) else {
        return;
    };
    let outcome = flood.outcome;
    assert_eq!(outcome.held, CAP - 1, "the client holds one: {outcome:?}");
    assert_eq!(outcome.closed, CAP + 1, "{outcome:?}");

    for _ in 0..20 {
        assert!(client.load(&key).await.unwrap().is_some());
    }
    let newcomer = async {
        let late = Client::connect(server.url()).await?;
        late.load(&key).await
    };
    assert!(
        newcomer.await.is_err(),
        "a connection past the cap is closed"
    );
    assert_idle_while_flooded(&server);
    let per_connection = server.rss_bytes().saturating_sub(rss_before) / CAP as u64;
    assert!(
        per_connection < 64 * 1024,
        "{per_connection} bytes of resident memory per idle connection"
    );
    let text = metrics_text(server.metrics_addr()).await;
    assert_eq!(metric(&text, "sessiond_connections_open"), CAP as f64);
    assert!(
        metric(
            &text,
            "sessiond_connections_refused_total{reason=\"max_connections\"}"
        ) >= (CAP + 2) as f64,
        "{text}"
    );
    let warnings = server.log().matches("refusing new connections").count();
    assert_eq!(warnings, 1, "warned about once a minute:\n{}", server.log());

    flood.stop();
    assert_served_again(&server, &key).await;
    server.signal("TERM");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    const PER_IP: usize = 30;
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", "memory://")
            .env("SESSIOND_MAX_CONNECTIONS_PER_IP", PER_IP.to_string())
            .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0"),
    );
    let client = Client::connect(server.url()).await.unwrap();
    let key = client.create("{}", None).await.unwrap().session_key;

    // The client's address, 127.0.0.1, floods; another one, 127.0.0.2,
    // comes after it.
    let Some(flood) = Flood::start(&server.addr, 2, PER_IP, Some("127.0.0.1")) else {
        return;
    };
    assert_eq!(flood.outcome.held, PER_IP - 1, "{:?}", flood.outcome);
    let other = Flood::start(&server.addr, 1, 10, Some("127.0.0.2")).unwrap();
    assert_eq!(other.outcome.held, 10, "{:?}", other.outcome);

    assert!(client.load(&key).await.unwrap().is_some());
    let text = metrics_text(server.metrics_addr()).await;
    assert_eq!(
        metric(
            &text,
            "sessiond_connections_refused_total{reason=\"max_connections_per_ip\"}"
        ),
        (PER_IP + 1) as f64,
        "{text}"
    );
    assert!(server.log().contains("--max-connections-per-ip"));

    flood.stop();
    other.stop();
    assert_served_again(&server, &key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_open_file_limit_accepting_pauses_instead_of_spinning() {
    // 64 files, and a --max-connections far above what they allow.
    let server = Running::start(
        sessiond_with_file_limit(64)
            .env("SESSIOND_STORE", "memory://")
            .env("SESSIOND_MAX_CONNECTIONS", "1000")
            .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0"),
    );
    assert!(
        server
            .log()
            .contains("--max-connections is above what the open-file limit leaves"),
        "{}",
        server.log()
    );
    let client = Client::connect(server.url()).await.unwrap();
    let key = client.create("{}", None).await.unwrap().session_key;

    let Some(flood) = Flood::start(&server.addr, 2, 50, None) else {
        return;
    };
    assert!(
        flood.outcome.silent > 0,
        "some wait unaccepted: {:?}",
        flood.outcome
    );
    assert!(client.load(&key).await.unwrap().is_some());
    assert_idle_while_flooded(&server);
    let log = server.log();
    assert_eq!(
        log.matches("as many files open as its open-file limit allows")
            .count(),
        1,
        "one warning, naming the limit:\n{log}"
    );
    assert!(log.contains("LimitNOFILE"), "{log}");

    flood.stop();
    assert_served_again(&server, &key).await;
    let text = metrics_text(server.metrics_addr()).await;
    assert!(
        metric(&text, "sessiond_accept_failures_total") >= 1.0,
        "{text}"
    );
}

#[test]
fn serve_takes_its_hard_file_limit_and_caps_the_default_below_it() {
    let server =
        Running::start(sessiond_with_soft_file_limit(100).env("SESSIOND_STORE", "memory://"));
    let log = server.log();
    let field = |name: &str| -> u64 {
        log.split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the start-up line:\n{log}"))
    };
    let file_limit = field("file_limit");
    assert!(file_limit > 100, "the soft limit was raised: {log}");
    let expected = (file_limit - 128.min(file_limit / 2)).min(16_384);
    assert_eq!(field("max_connections"), expected, "{log}");
}

/// The server's CPU over [`CPU_WINDOW`] stays below [`IDLE_CPU`].
fn assert_idle_while_flooded(server: &Running) {
    let before = server.cpu_time();
    std::thread::sleep(CPU_WINDOW);
    let used = server.cpu_time().saturating_sub(before);
    assert!(
        used < IDLE_CPU,
        "the server used {used:?} of CPU in {CPU_WINDOW:?} while the flood held"
    );
}

/// A new client connects and is served, within [`RECOVERY`].
async fn assert_served_again(server: &Running, key: &str) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let attempt = async {
            let client = Client::connect(server.url()).await?;
            client.load(key).await
        };
        match attempt.await {
            Ok(loaded) => {
                assert!(loaded.is_some());
                return;
            }
            Err(err) if Instant::now() > deadline => {
                panic!("not served {RECOVERY:?} after the flood: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
