//! Redis for tests: the shared server on 127.0.0.1:6379 (each test under a
//! key prefix of its own, so tests run in parallel), or a private
//! `redis-server` child process that a test may stop and restart.
//!
//! A test that needs the shared Redis and cannot reach it says so on stderr
//! with a `SKIPPED:` line and returns; under `CI=true` it fails instead,
//! since CI starts Redis and a silent skip would hide a broken setup.

use std::collections::HashMap;
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

/// A CA and a server certificate for both `localhost` and `127.0.0.1` (the
/// address a cluster announces its nodes by), as PEM files in `dir`, keys
/// readable by the owner alone.
pub struct RedisPki {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

impl RedisPki {
    pub fn new(dir: &std::path::Path) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sessiond redis test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
        let ca_path = dir.join("redis-ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        let cert_path = dir.join("redis.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        Self {
            ca: ca_path,
            cert: cert_path,
            key: super::pki::write_private(dir, "redis-key.pem", &key.serialize_pem()),
        }
    }

    /// The `redis-server` flags of a TLS-only server with these files that
    /// does not ask clients for certificates.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let path = |path: &std::path::Path| path.to_string_lossy().into_owned();
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
            "no".to_owned(),
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
}

/// A Redis Cluster of three masters without replicas, each a child process
/// on ports of its own.
pub struct RedisCluster {
    pub nodes: Vec<RedisProcess>,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create` and
    /// waits until every node reports the cluster as ok. `None` (after a
    /// `SKIPPED:` line) when Redis is not installed, outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, None).await
    }

    /// As [`start`](Self::start); with `tls`, the nodes speak TLS only, to
    /// clients and to each other.
    pub async fn start_with(test: &str, tls: Option<&RedisPki>) -> Option<Self> {
        if !installed(test, true) {
            return None;
        }
        let cli_tls = tls.map(RedisPki::cli_args).unwrap_or_default();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let mut args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                // The bus port is chosen too: PORT + 10000 may be taken or
                // past 65535.
                "--cluster-port",
                &free_port().to_string(),
            ]
            .map(str::to_owned)
            .to_vec();
            if let Some(tls) = tls {
                args.extend(tls.server_args(port));
                args.extend(["--tls-cluster", "yes"].map(str::to_owned));
            }
            nodes.push(RedisProcess::start(port, &args).await);
        }
        let mut create = cli_tls.clone();
        create.extend(["--cluster", "create"].map(str::to_owned));
        create.extend(nodes.iter().map(RedisProcess::addr));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"].map(str::to_owned));
        redis_cli(&create).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            loop {
                let mut args = cli_tls.clone();
                args.extend(["-p".to_owned(), node.port.to_string()]);
                args.extend(["CLUSTER", "INFO"].map(str::to_owned));
                let info = redis_cli(&args).await;
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster never became ok: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Some(Self { nodes })
    }

    /// `HOST:PORT,HOST:PORT` of the first two nodes: the seeds sessiond is
    /// given, so that it must discover the third.
    pub fn seeds(&self) -> String {
        format!("{},{}", self.nodes[0].addr(), self.nodes[1].addr())
    }
}

/// The name the Sentinel tests give their master.
pub const MASTER_NAME: &str = "sessiond-master";

/// One master, one replica and one sentinel that watches them, with short
/// timeouts so that a failover takes seconds.
pub struct RedisSentinel {
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinel: RedisProcess,
}

impl RedisSentinel {
    /// Starts the three and waits until the sentinel knows the replica and
    /// the replica is in sync. `None` (after a `SKIPPED:` line) when Redis is
    /// not installed, outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        if !installed(test, false) {
            return None;
        }
        let master = RedisProcess::start(free_port(), &[]).await;
        let replica_args = ["--replicaof", "127.0.0.1", &master.port.to_string()];
        let replica = RedisProcess::start(free_port(), &replica_args.map(str::to_owned)).await;

        // Sentinel rewrites its configuration file, so it lives in the
        // process's own directory.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 500\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n",
                master.port
            ),
        )
        .unwrap();
        let args = [
            config.to_string_lossy().into_owned(),
            "--sentinel".to_owned(),
        ];
        let sentinel = RedisProcess::start_in(dir, free_port(), &args).await;

        let cluster = Self {
            master,
            replica,
            sentinel,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replicas: Vec<HashMap<String, String>> = query(
                &cluster.sentinel.addr(),
                redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME),
            )
            .await;
            let known = replicas.iter().any(|replica| {
                replica.get("port") == Some(&cluster.replica.port.to_string())
                    && replica.get("master-link-status").map(String::as_str) == Some("ok")
                    && replica.get("flags").is_some_and(|flags| flags == "slave")
            });
            if known {
                return Some(cluster);
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel never saw the replica in sync: {replicas:?}\n{}",
                cluster.sentinel.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The port of the server the sentinel calls the master now.
    pub async fn master_port(&self) -> u16 {
        let (_, port): (String, u16) = query(
            &self.sentinel.addr(),
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(MASTER_NAME),
        )
        .await;
        port
    }
}
