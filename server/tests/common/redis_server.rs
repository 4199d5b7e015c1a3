//! Redis for tests: the shared server on 127.0.0.1:6379 (each test under a
//! key prefix of its own, so tests run in parallel), or a private
//! `redis-server` child process that a test may stop and restart; and the
//! pieces `redis_cluster` and `redis_sentinel` are made of (a process in a
//! directory of its own, the certificates of TLS-only servers).
//!
//! A test that needs the shared Redis and cannot reach it says so on stderr
//! with a `SKIPPED:` line and returns; under `CI=true` it fails instead,
//! since CI starts Redis and a silent skip would hide a broken setup.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::process::{Child, Command};

use super::pki::{TestCa, Validity};
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

/// Whether `redis-server` (and `redis-cli`, when `cli` is set) can run here.
/// When not: fails under `CI=true`, otherwise prints a loud skip line naming
/// `test` and returns false.
pub fn installed(test: &str, cli: bool) -> bool {
    let runs = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    for program in ["redis-server", "redis-cli"]
        .into_iter()
        .take(1 + usize::from(cli))
    {
        if !runs(program) {
            skip::skip_or_fail(&format!("{program} is not installed ({test})"));
            return false;
        }
    }
    true
}

/// A port nothing listens on now, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` (or sentinel) child process working in a temporary
/// directory of its own (its configuration, cluster state and log go
/// there), without persistence. Killed when dropped.
pub struct RedisProcess {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server ARGS… --port PORT` (plus settings every test
    /// process shares) and waits until it accepts connections on `port`.
    /// `args` come first, so a configuration file may lead them. When they
    /// give `--tls-port PORT`, the server speaks TLS only (`--port 0`).
    pub async fn start(port: u16, args: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, port, args).await
    }

    /// As [`start`](Self::start), in `dir`.
    pub async fn start_in(dir: tempfile::TempDir, port: u16, args: &[String]) -> Self {
        let log = dir.path().join("redis.log");
        let tls_only = args.iter().any(|arg| arg == "--tls-port");
        let plain_port = if tls_only { 0 } else { port };
        let child = Command::new("redis-server")
            .args(args)
            .args(["--port", &plain_port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed for this test");
        let mut process = Self {
            port,
            dir,
            child: Some(child),
        };
        process.wait_listening(port).await;
        process
    }

    async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "redis-server on port {port} did not start ({exited:?}); its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the server wrote to its log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

/// Runs `redis-cli ARGS…` and returns what it printed; panics with its
/// output when it fails.
pub async fn redis_cli(args: &[String]) -> String {
    let output = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "redis-cli {args:?} failed: {text}");
    text
}

/// Runs `command` on the plain (non-TLS) Redis at `addr`.
pub async fn query<T: redis::FromRedisValue>(addr: &str, command: &redis::Cmd) -> T {
    command.query_async(&mut connect(addr).await).await.unwrap()
}

/// A CA, a server certificate for both `localhost` and `127.0.0.1` (the
/// address a cluster announces its nodes by, and sentinels their master)
/// and a client certificate, as PEM files in `dir`, keys readable by the
/// owner alone.
#[derive(Clone)]
pub struct RedisPki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// For servers that check clients (`tls-auth-clients yes`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl RedisPki {
    pub fn new(dir: &Path) -> Self {
        let ca = TestCa::new("sessiond redis test CA");
        let server = ca
            .server_cert(&["localhost", "127.0.0.1"], Validity::Current)
            .write(dir, "redis");
        let client = ca.client_cert("sessiond").write(dir, "redis-client");
        Self {
            ca: ca.write_ca(dir, "redis-ca.pem"),
            cert: server.cert,
            key: server.key,
            client_cert: client.cert,
            client_key: client.key,
        }
    }

    /// The `redis-server` flags of a TLS-only server with these files that
    /// does not ask clients for certificates.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        self.server_args_checking(port, false)
    }

    /// The same, asking clients for a certificate signed by the CA when
    /// `check_clients` is set. Its own outgoing connections (replication,
    /// a sentinel's) then present the server certificate, as Redis does
    /// without `tls-client-cert-file`.
    pub fn server_args_checking(&self, port: u16, check_clients: bool) -> Vec<String> {
        let path = |path: &Path| path.to_string_lossy().into_owned();
        vec![
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&self.cert),
            "--tls-key-file".to_owned(),
            path(&self.key),
            "--tls-ca-cert-file".to_owned(),
            path(&self.ca),
            "--tls-auth-clients".to_owned(),
            if check_clients { "yes" } else { "no" }.to_owned(),
        ]
    }

    /// The `redis-cli` flags to reach such a server.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".to_owned(),
            "--cacert".to_owned(),
            self.ca.to_string_lossy().into_owned(),
        ]
    }

    /// A client of the TLS server at `addr` (`HOST:PORT`) that trusts the
    /// CA and presents the client certificate.
    pub fn client(&self, addr: &str) -> redis::Client {
        let certificates = redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&self.client_cert).unwrap(),
                client_key: std::fs::read(&self.client_key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&self.ca).unwrap()),
        };
        redis::Client::build_with_tls(format!("rediss://{addr}/"), certificates).unwrap()
    }
}
