//! What an operator reads at scrape time besides the call counters: the
//! process (memory, CPU, open files), the build, and the store's gauges
//! (its pool, the SQLite files, the last purge), from the built binary and
//! from servers on PostgreSQL and memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use common::process::{Running, sessiond};
use common::scrape::{metric, metrics_text};
use common::{PgSchema, Serving, hours_from_now};
use sessiond::Server;
use sessiond::cli::ServeArgs;
use sessiond_client::Client;

fn seconds_since_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Whether a series of `name` (with any labels) is in `text`.
fn has(text: &str, name: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with([' ', '{']))
    })
}

/// Opens a server on `store` with metrics on loopback.
async fn serve_on(store: &str) -> (Serving, std::net::SocketAddr) {
    let args = [
        "serve",
        "--store",
        store,
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let config = ServeArgs::try_parse_from(args).unwrap().into_config();
    let server = Server::open(config).await.unwrap();
    let metrics = server.metrics_addr().unwrap();
    (Serving::start(server).await, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reports_its_process_build_and_sqlite_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.sqlite3");
    let started = seconds_since_epoch();
    let running = Running::start(
        sessiond()
            .env("SESSIOND_STORE", format!("sqlite://{}", db.display()))
            .env("SESSIOND_METRICS_LISTEN", "127.0.0.1:0"),
    );
    let metrics = running.metrics_addr();
    let text = metrics_text(metrics).await;
    assert!(
        !has(&text, "sessiond_purge_last_success_timestamp_seconds"),
        "a purge time before any purge:\n{text}"
    );

    let client = Client::connect(running.url()).await.unwrap();
    for _ in 0..50 {
        let created = client.create("{\"a\": 1}", None).await.unwrap();
        client.load(&created.session_key).await.unwrap();
    }
    let expired = client.create("{}", Some(hours_from_now(-1))).await.unwrap();
    assert_eq!(client.clear_expired().await.unwrap(), 1);
    // Its copy, expired, answers that there is no session, and goes.
    assert!(client.load(&expired.session_key).await.unwrap().is_none());

    // The checkpoint thread copies the log shortly after the writes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = metrics_text(metrics).await;
        if has(&text, "sessiond_sqlite_last_checkpoint_timestamp_seconds")
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let now = seconds_since_epoch();

    let rss = metric(&text, "process_resident_memory_bytes");
    let measured = running.rss_bytes() as f64;
    assert!(
        rss > measured / 2.0 && rss < measured * 2.0,
        "resident memory {rss}, /proc says {measured}:\n{text}"
    );
    let (open, max) = (
        metric(&text, "process_open_fds"),
        metric(&text, "process_max_fds"),
    );
    assert!(open > 0.0 && open <= max, "{open} open files of {max}");
    let cpu = metric(&text, "process_cpu_seconds_total");
    let used = running.cpu_time().as_secs_f64();
    assert!(
        has(&text, "process_cpu_seconds_total") && cpu <= used + 0.05,
        "CPU {cpu} s, /proc says {used} s:\n{text}"
    );
    // The boot time is in whole seconds and start is in clock ticks.
    let start = metric(&text, "process_start_time_seconds");
    assert!(
        start > started - 2.0 && start < now + 2.0,
        "start time {start}, test ran from {started} to {now}"
    );
    let build = format!(
        "sessiond_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&text, &build), 1.0, "no {build} in\n{text}");

    assert!(metric(&text, "sessiond_sqlite_file_bytes") > 0.0, "{text}");
    assert!(has(&text, "sessiond_sqlite_wal_bytes"), "{text}");
    // Each Load found the copy its Create left; the expired session's went
    // as it answered.
    assert_eq!(
        metric(&text, "sessiond_sqlite_row_cache_sessions"),
        50.0,
        "{text}"
    );
    assert!(
        metric(&text, "sessiond_sqlite_row_cache_bytes") > 50.0 * 64.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sessiond_sqlite_row_cache_hits_total"),
        51.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "sessiond_sqlite_row_cache_misses_total"),
        0.0,
        "{text}"
    );
    let checkpoint = metric(&text, "sessiond_sqlite_last_checkpoint_timestamp_seconds");
    assert!(
        checkpoint > started - 1.0 && checkpoint < now + 1.0,
        "last checkpoint {checkpoint}, test ran from {started} to {now}:\n{text}"
    );
    let pool = |state: &str| {
        metric(
            &text,
            &format!("sessiond_store_pool_connections{{state=\"{state}\"}}"),
        )
    };
    let max_pool = metric(&text, "sessiond_store_pool_max_connections");
    assert!(max_pool > 0.0, "{text}");
    assert!(pool("idle") + pool("in_use") <= max_pool, "{text}");
    // r2d2 does not count the callers it keeps waiting.
    assert!(!has(&text, "sessiond_store_pool_waiters"), "{text}");

    let purged = metric(&text, "sessiond_purge_last_success_timestamp_seconds");
    assert!(
        purged > started && purged < now + 1.0,
        "last purge {purged}, test ran from {started} to {now}"
    );
    assert_eq!(metric(&text, "sessiond_purge_last_removed_sessions"), 1.0);
    assert_eq!(metric(&text, "sessiond_purge_interval_seconds"), 3600.0);

    running.signal("TERM");
    let (code, log) = running.wait();
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test]
async fn postgres_reports_its_connection_pool() {
    if !common::service_available("PostgreSQL", common::POSTGRES_ADDR) {
        return;
    }
    let schema = PgSchema::new();
    let (serving, metrics) = serve_on(&schema.url()).await;
    let client = Client::connect(format!("http://{}", serving.addr))
        .await
        .unwrap();
    let created = client.create("{\"a\": 1}", None).await.unwrap();
    client.load(&created.session_key).await.unwrap();

    let text = metrics_text(metrics).await;
    let series = |name: &str| metric(&text, name);
    assert_eq!(
        series("sessiond_store_pool_max_connections"),
        sessiond::store::DEFAULT_POOL_SIZE as f64,
        "{text}"
    );
    // The calls opened a connection; the readiness probe may hold one
    // right now, so it may be in use or idle.
    let (idle, in_use) = (
        series("sessiond_store_pool_connections{state=\"idle\"}"),
        series("sessiond_store_pool_connections{state=\"in_use\"}"),
    );
    assert!(
        has(&text, "sessiond_store_pool_connections{state=\"in_use\"}"),
        "{text}"
    );
    assert!(
        idle + in_use >= 1.0 && idle + in_use <= sessiond::store::DEFAULT_POOL_SIZE as f64,
        "{text}"
    );
    assert!(has(&text, "sessiond_store_pool_waiters"), "{text}");
    assert_eq!(series("sessiond_store_pool_waiters"), 0.0);
    assert!(!has(&text, "sessiond_sqlite_file_bytes"), "{text}");
    serving.stop().await;
}

#[tokio::test]
async fn an_engine_without_pool_or_files_reports_neither() {
    let (serving, metrics) = serve_on("memory://").await;
    let text = metrics_text(metrics).await;
    for name in [
        "sessiond_store_pool_connections",
        "sessiond_store_pool_max_connections",
        "sessiond_sqlite_file_bytes",
    ] {
        assert!(!has(&text, name), "{name} in\n{text}");
    }
    assert!(has(&text, "sessiond_store_up"), "{text}");
    assert!(has(&text, "process_open_fds"), "{text}");
    serving.stop().await;
}
