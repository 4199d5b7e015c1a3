//! `--threads N`: N threads serve connections, each on a runtime of its own
//! and all accepting on one listener. Many clients at once, each with many
//! calls in flight on its connection, are all answered; at shutdown the
//! threads end and the listener closes (every thread's copy of it).
//!
//! One test in this file: it counts the process's threads by name, which
//! another server in the same test process would confuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use sessiond_client::Client;
use tokio::task::JoinSet;

const THREADS: usize = 3;
const CLIENTS: usize = 12;
const CALLS_IN_FLIGHT: usize = 16;
const LIMIT: Duration = Duration::from_secs(30);

/// This process's threads that serve connections.
fn connection_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("sessiond-conn-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_several_threads_are_all_answered_and_the_threads_end_at_shutdown() {
    let threads = THREADS.to_string();
    let server = TestServer::start_on("memory://", &["--threads", &threads]).await;
    wait_for_threads(|count| count == THREADS, "the threads start").await;

    let mut clients = JoinSet::new();
    for client_no in 0..CLIENTS {
        let url = format!("http://{}", server.addr);
        clients.spawn(async move {
            let client = Client::connect(url).await.unwrap();
            let data = format!("{{\"client\": {client_no}}}");
            let key = client.create(&data, None).await.unwrap().session_key;
            let mut loads = JoinSet::new();
            for _ in 0..CALLS_IN_FLIGHT {
                let (client, key) = (client.clone(), key.clone());
                loads.spawn(async move { client.load(&key).await.unwrap() });
            }
            while let Some(loaded) = loads.join_next().await {
                assert_eq!(loaded.unwrap().expect("the session").data, data);
            }
        });
    }
    tokio::time::timeout(LIMIT, async {
        while let Some(finished) = clients.join_next().await {
            finished.unwrap();
        }
    })
    .await
    .expect("every client answered");

    let addr = server.addr;
    tokio::time::timeout(LIMIT, server.stop())
        .await
        .expect("the server stops");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once the server has stopped"
    );
    wait_for_threads(|count| count == 0, "the threads end").await;
}

/// Waits until the count of connection threads passes `check`.
async fn wait_for_threads(check: impl Fn(usize) -> bool, what: &str) {
    let waited = tokio::time::timeout(LIMIT, async {
        while !check(connection_threads()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{what}: {} connection threads",
        connection_threads()
    );
}
