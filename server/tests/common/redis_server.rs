//! Redis for tests: the shared server on 127.0.0.1:6379 (each test under a
//! key prefix of its own, so tests run in parallel), or a private
//! `redis-server` child process that a test may stop and restart.
//!
//! A test that needs the shared Redis and cannot reach it says so on stderr
//! with a `SKIPPED:` line and returns; under `CI=true` it fails instead,
//! since CI starts Redis and a silent skip would hide a broken setup.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::process::{Child, Command};

use super::skip;

/// The Redis every machine of this project runs (see `.ci/run`).
pub const SHARED_ADDR: &str = "127.0.0.1:6379";

/// How long a PING may take before Redis counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the shared Redis answers. When it does not: fails under
/// `CI=true`, otherwise prints a loud skip line naming `test` and returns
/// false.
pub async fn shared_available(test: &str) -> bool {
    if ping(SHARED_ADDR).await {
        return true;
    }
    skip::skip_or_fail(&format!("redis not reachable at {SHARED_ADDR} ({test})"));
    false
}

/// Whether a Redis at `addr` answers PING within [`PING_TIMEOUT`].
pub async fn ping(addr: &str) -> bool {
    let attempt = async {
        let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(PING_TIMEOUT, attempt).await,
        Ok(Some(reply)) if reply == "PONG"
    )
}

/// A key prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sessiond-test:{test}:{}:{nanos}:{n}:", std::process::id())
}

/// A plain connection to the Redis at `addr`, for looking at what is stored.
pub async fn connect(addr: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The keys under `prefix`, sorted.
pub async fn keys(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// Deletes the keys under a prefix of the shared Redis when dropped, so test
/// runs leave nothing behind.
pub struct Cleanup {
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Synchronous on purpose: drop cannot await. Bounded by the timeouts
        // and by the number of SCAN rounds.
        let Ok(client) = redis::Client::open(format!("redis://{SHARED_ADDR}/")) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(PING_TIMEOUT) else {
            return;
        };
        let _ = conn.set_read_timeout(Some(PING_TIMEOUT));
        let mut cursor = 0_u64;
        for _ in 0..10_000 {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query::<(u64, Vec<String>)>(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("DEL").arg(&keys).query::<i64>(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

/// A `redis-server` child process of this test on a port of its own,
/// without persistence. Killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts on a free port and waits until it answers; `None` (after a
    /// `SKIPPED:` line) when `redis-server` is not installed, outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        let installed = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            skip::skip_or_fail(&format!("redis-server is not installed ({test})"));
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        Some(redis)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().and_then(Child::id).unwrap()
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed for this test");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ping(&self.addr()).await {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`) to the server.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }
}
