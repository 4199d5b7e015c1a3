//! `--threads N`: N threads serve connections, each on a runtime of its own
//! and all accepting on one listener. Many clients at once, each with many
//! calls in flight on its connection, are all answered, and by those
//! threads (they spend a good share of the process's CPU meanwhile); at
//! shutdown the threads end and the listener closes (every thread's copy
//! of it). On `memory://`, then on SQLite, whose Loads each serving thread
//! reads itself, from a read connection of the shared pool.
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
const CALLS_IN_FLIGHT: usize = 64;
/// The share of the process's CPU, clients included, that the connection
/// threads spend while the clients run: near zero if calls were served
/// elsewhere.
const SERVING_SHARE: f64 = 0.1;
const LIMIT: Duration = Duration::from_secs(30);

/// This process's threads that serve connections.
fn connection_threads() -> usize {
    cpu_by_thread()
        .filter(|(name, _)| is_connection_thread(name))
        .count()
}

fn is_connection_thread(name: &str) -> bool {
    name.starts_with("sessiond-conn-")
}

/// Each live thread of this process: its name and its time on a CPU.
fn cpu_by_thread() -> impl Iterator<Item = (String, Duration)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_owned(), Duration::from_nanos(nanos)))
        })
}

/// CPU time of the connection threads, and of every thread.
fn cpu_time() -> (Duration, Duration) {
    cpu_by_thread().fold(
        (Duration::ZERO, Duration::ZERO),
        |(serving, all), (name, cpu)| {
            let serving = if is_connection_thread(&name) {
                serving + cpu
            } else {
                serving
            };
            (serving, all + cpu)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_several_threads_are_all_answered_by_them_and_the_threads_end_at_shutdown() {
    serve_clients_then_stop(None).await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("sessions.sqlite3").display());
    serve_clients_then_stop(Some(&store)).await;
}

/// One round on `store` (`memory://` when `None`).
async fn serve_clients_then_stop(store: Option<&str>) {
    let threads = THREADS.to_string();
    let server = TestServer::start_on(store.unwrap_or("memory://"), &["--threads", &threads]).await;
    wait_for_threads(|count| count == THREADS, "the threads start").await;

    let (serving_before, all_before) = cpu_time();
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
    let (serving_after, all_after) = cpu_time();
    let share = (serving_after - serving_before).as_secs_f64()
        / (all_after.saturating_sub(all_before))
            .as_secs_f64()
            .max(f64::EPSILON);
    assert!(
        share >= SERVING_SHARE,
        "the connection threads spent {share:.2} of the CPU while the calls ran"
    );

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
