//! Far more concurrent clients than the server admits, against the built
//! binary: it sheds what is past `--max-in-flight` with RESOURCE_EXHAUSTED,
//! keeps answering health checks, holds its memory to what it admitted, and
//! serves normally again once the load drops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::code;
use common::process::{Running, sessiond};
use sessiond_client::Client;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Calls the flood sends at once: 60 times what the server admits.
const CLIENTS: usize = 1920;
const MAX_IN_FLIGHT: &str = "32";
/// Each call carries this much data, so that queueing them all would show
/// in the server's memory (60 MiB for the whole flood).
const DATA_BYTES: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_shed_health_answers_memory_stays_bounded_and_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let server = Running::start(
        sessiond()
            .env("SESSIOND_STORE", format!("sqlite://{}", db.display()))
            .env("SESSIOND_MAX_IN_FLIGHT", MAX_IN_FLIGHT)
            .env("SESSIOND_STORE_TIMEOUT", "60s"),
    );
    let sessions = Client::connect(server.url()).await.unwrap();
    let key = sessions.create("{}", None).await.unwrap().session_key;
    let rss_before = server.rss_bytes();

    // Another process holds the write lock: admitted writes wait in flight.
    let lock = rusqlite::Connection::open(&db).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let data = format!("{{\"pad\": \"{}\"}}", "x".repeat(DATA_BYTES));
    let mut connections = Vec::new();
    for _ in 0..16 {
        connections.push(Client::connect(server.url()).await.unwrap());
    }
    let mut flood = tokio::task::JoinSet::new();
    for n in 0..CLIENTS {
        let (client, key, data) = (connections[n % 16].clone(), key.clone(), data.clone());
        flood.spawn(async move { client.save(&key, &data, None, false).await });
    }
    let admitted: usize = MAX_IN_FLIGHT.parse().unwrap();
    let mut refused = 0;
    while refused < CLIENTS - admitted {
        let answered = tokio::time::timeout(Duration::from_secs(60), flood.join_next())
            .await
            .expect("refused calls must not wait for the lock")
            .unwrap()
            .unwrap();
        let err = answered.expect_err("no save can succeed while the lock is held");
        assert_eq!(code(err), tonic::Code::ResourceExhausted);
        refused += 1;
    }
    assert_eq!(flood.len(), admitted);

    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);
    // What it admitted, not what was sent, is what it holds: the whole
    // flood's data alone would be 60 MiB.
    let grown = server.rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 32 << 20,
        "resident memory grew by {} MiB under the flood",
        grown >> 20
    );

    // The load drops: the admitted calls finish, new ones are served.
    lock.execute_batch("COMMIT").unwrap();
    while let Some(answered) = flood.join_next().await {
        answered.unwrap().unwrap();
    }
    let loaded = sessions.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, data);
    for client in &connections {
        client.create("{}", None).await.unwrap();
    }
    server.signal("TERM");
    let (exit, log) = server.wait();
    assert_eq!(exit, Some(0), "{log}");
}
