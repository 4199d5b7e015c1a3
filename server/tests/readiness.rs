//! Readiness that follows the store, through the built binary: on a Redis
//! store that the test stops and starts again, `sessiond.v1.SessionService`
//! turns NOT_SERVING while Redis is down and SERVING once it is back, while
//! the overall status ("") stays SERVING throughout; `sessiond healthcheck
//! --service` says the same with its exit code, and presents a client
//! certificate where the server requires one.
//!
//! Waits are bounded loops with a deadline, never assertions about speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::process::{Running, sessiond};
use common::redis_server::PrivateRedis;
use common::scrape::{metric, metrics_text};
use sessiond::proto::session_service_server::SERVICE_NAME;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The longest any change may take to show before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

async fn health_client(addr: &str) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

async fn status(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Polls the session service until it reports `wanted`, checking at every
/// round that the server as a whole still reports SERVING.
async fn wait_for_service(
    client: &mut HealthClient<tonic::transport::Channel>,
    wanted: ServingStatus,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert_eq!(
            status(client, "").await,
            ServingStatus::Serving,
            "the overall status left SERVING:\n{}",
            log()
        );
        if status(client, SERVICE_NAME).await == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{SERVICE_NAME} never reported {wanted:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `sessiond healthcheck ARGS…` against `addr`.
async fn healthcheck(addr: &str, args: &[&str]) -> Output {
    let mut command: Command = sessiond();
    command
        .args(["healthcheck", "--listen", addr, "--timeout", "5s"])
        .args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Starts `sessiond serve` on the Redis at `redis_addr`, pinging it every
/// `interval`, with metrics on loopback.
fn serve_on_redis(redis_addr: &str, interval: &str) -> Running {
    Running::start(
        sessiond()
            .env("SESSIOND_STORE", format!("redis://{redis_addr}/"))
            .env("SESSIOND_STORE_TIMEOUT", "1s")
            .env("SESSIOND_READINESS_INTERVAL", interval)
            .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0"),
    )
}

fn count_lines(log: &str, level: &str, message: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(&format!("\"level\":\"{level}\"")) && line.contains(message))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_service_follows_the_store_while_the_server_stays_serving() {
    let Some(mut redis) = PrivateRedis::start("readiness").await else {
        return;
    };
    let server = serve_on_redis(&redis.addr(), "200ms");
    // The probe off: the old behaviour, SERVING whatever the store does.
    let unprobed = serve_on_redis(&redis.addr(), "0");
    let metrics = server.metrics_addr();
    let mut client = health_client(&server.addr).await;
    let mut unprobed_client = health_client(&unprobed.addr).await;
    // Every change of the overall status, from start to the end of the
    // test: one SERVING, then nothing.
    let mut overall = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = overall.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    wait_for_service(&mut client, ServingStatus::Serving, || server.log()).await;
    let checked = healthcheck(&server.addr, &["--service", SERVICE_NAME]).await;
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert_eq!(text(&checked.stdout).trim(), "SERVING");
    assert_eq!(
        metric(&metrics_text(metrics).await, "sessiond_store_up"),
        1.0
    );

    redis.kill().await;
    wait_for_service(&mut client, ServingStatus::NotServing, || server.log()).await;
    let checked = healthcheck(&server.addr, &["--service", SERVICE_NAME]).await;
    assert_eq!(checked.status.code(), Some(1), "{}", text(&checked.stderr));
    let stderr = text(&checked.stderr);
    assert!(
        stderr.contains("NotServing") && stderr.contains(SERVICE_NAME),
        "{stderr}"
    );
    // Liveness asks for the server as a whole, which is alive.
    let checked = healthcheck(&server.addr, &[]).await;
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert_eq!(
        metric(&metrics_text(metrics).await, "sessiond_store_up"),
        0.0
    );
    assert_eq!(
        status(&mut unprobed_client, SERVICE_NAME).await,
        ServingStatus::Serving,
        "with --readiness-interval 0 the service should stay SERVING"
    );

    redis.restart().await;
    wait_for_service(&mut client, ServingStatus::Serving, || server.log()).await;
    let checked = healthcheck(&server.addr, &["--service", SERVICE_NAME]).await;
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert_eq!(
        metric(&metrics_text(metrics).await, "sessiond_store_up"),
        1.0
    );

    // The overall status never changed, not even between two polls.
    let changed = tokio::time::timeout(Duration::from_millis(200), overall.message()).await;
    assert!(changed.is_err(), "the overall status changed: {changed:?}");
    drop(overall);

    // One warning as the store went, one line as it came back.
    let log = server.log();
    assert_eq!(
        count_lines(&log, "WARN", "is NOT_SERVING until it does"),
        1,
        "{log}"
    );
    assert_eq!(
        count_lines(&log, "INFO", "the store answers again"),
        1,
        "{log}"
    );
    let store = format!("redis://{}", redis.addr());
    assert!(
        log.lines()
            .filter(|line| line.contains("NOT_SERVING until it does"))
            .all(|line| line.contains(&store)),
        "the warning should name the store:\n{log}"
    );

    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
    unprobed.signal("TERM");
    let (code, log) = unprobed.wait();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test]
async fn healthcheck_presents_a_client_certificate_under_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = common::pki::make_pki(dir.path());
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", "memory://")
            .env("SESSIOND_TLS_CERT", &pki.server_cert)
            .env("SESSIOND_TLS_KEY", &pki.server_key)
            .env("SESSIOND_TLS_CLIENT_CA", &pki.ca),
    );
    let ca = pki.ca.to_str().unwrap();
    let cert = pki.client_cert.to_str().unwrap();
    let key = pki.client_key.to_str().unwrap();

    let refused = healthcheck(&server.addr, &["--tls-ca", ca]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));

    for service in ["", SERVICE_NAME] {
        let checked = healthcheck(
            &server.addr,
            &[
                "--tls-ca",
                ca,
                "--tls-cert",
                cert,
                "--tls-key",
                key,
                "--service",
                service,
            ],
        )
        .await;
        assert!(
            checked.status.success(),
            "{service:?}: {}",
            text(&checked.stderr)
        );
        assert_eq!(text(&checked.stdout).trim(), "SERVING");
    }

    // The same through the environment, as a container's probe sets it.
    let mut command = sessiond();
    command
        .args(["healthcheck", "--listen", &server.addr])
        .env("SESSIOND_HEALTHCHECK_TLS_CA", ca)
        .env("SESSIOND_HEALTHCHECK_TLS_CERT", cert)
        .env("SESSIOND_HEALTHCHECK_TLS_KEY", key)
        .env("SESSIOND_HEALTHCHECK_SERVICE", SERVICE_NAME);
    let checked = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(checked.status.success(), "{}", text(&checked.stderr));

    // A service the server does not have is not healthy.
    let unknown = healthcheck(
        &server.addr,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--service",
            "no.such.Service",
        ],
    )
    .await;
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown.stderr));
    assert!(
        text(&unknown.stderr).contains("no.such.Service"),
        "{}",
        text(&unknown.stderr)
    );

    // A certificate without its key is a usage error, before connecting.
    let half = healthcheck(&server.addr, &["--tls-ca", ca, "--tls-cert", cert]).await;
    assert_eq!(half.status.code(), Some(2), "{}", text(&half.stderr));
    assert!(
        text(&half.stderr).contains("--tls-key"),
        "{}",
        text(&half.stderr)
    );

    server.signal("TERM");
    let (code, log) = server.wait();
    assert_eq!(code, Some(0), "{log}");
}
