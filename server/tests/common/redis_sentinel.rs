//! Redis Sentinel for tests: a master, its replica and a sentinel, each a
//! `redis-server` child process (see [`RedisProcess`]), plain or TLS only.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::redis_server::{RedisPki, RedisProcess, free_port, installed, query};

/// The name the Sentinel tests give their master.
pub const MASTER_NAME: &str = "sessiond-master";

/// One master, one replica and one sentinel that watches them, with short
/// timeouts so that a failover takes seconds.
pub struct RedisSentinel {
    pub master: RedisProcess,
    pub replica: RedisProcess,
    pub sentinel: RedisProcess,
    /// Set when all three speak TLS only, to clients and to each other.
    tls: Option<RedisPki>,
}

impl RedisSentinel {
    /// Starts the three and waits until the sentinel knows the replica and
    /// the replica is in sync. `None` (after a `SKIPPED:` line) when Redis is
    /// not installed, outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, None).await
    }

    /// As [`start`](Self::start); with `tls`, the three speak TLS only and
    /// ask every client (each other too) for a certificate of its CA.
    pub async fn start_with(test: &str, tls: Option<&RedisPki>) -> Option<Self> {
        if !installed(test, false) {
            return None;
        }
        let args = |port: u16, extra: &[&str]| {
            let mut args: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
            if let Some(tls) = tls {
                args.extend(tls.server_args_checking(port, true));
                args.extend(["--tls-replication", "yes"].map(str::to_owned));
            }
            args
        };
        let port = free_port();
        let master = RedisProcess::start(port, &args(port, &[])).await;
        let port = free_port();
        let master_port = master.port.to_string();
        let replica_args = args(port, &["--replicaof", "127.0.0.1", &master_port]);
        let replica = RedisProcess::start(port, &replica_args).await;

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
        let port = free_port();
        let config = config.to_string_lossy().into_owned();
        let sentinel_args = args(port, &[&config, "--sentinel"]);
        let sentinel = RedisProcess::start_in(dir, port, &sentinel_args).await;

        let cluster = Self {
            master,
            replica,
            sentinel,
            tls: tls.cloned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replicas: Vec<HashMap<String, String>> = cluster
                .query(
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

    /// Runs `command` on the server of this set at `addr`, over TLS when
    /// the set speaks it.
    pub async fn query<T: redis::FromRedisValue>(&self, addr: &str, command: &redis::Cmd) -> T {
        let Some(tls) = &self.tls else {
            return query(addr, command).await;
        };
        let mut conn = tls
            .client(addr)
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        command.query_async(&mut conn).await.unwrap()
    }

    /// The port of the server the sentinel calls the master now.
    pub async fn master_port(&self) -> u16 {
        let (_, port): (String, u16) = self
            .query(
                &self.sentinel.addr(),
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER_NAME),
            )
            .await;
        port
    }
}
