//! A Redis Cluster for tests: `redis-server` child processes (see
//! [`RedisProcess`]) joined by `redis-cli --cluster create`, plain or TLS
//! only, with or without replicas.

use std::time::{Duration, Instant};

use super::redis_server::{RedisPki, RedisProcess, free_port, installed, query, redis_cli};

/// A Redis Cluster of three masters, without replicas or with one each,
/// each node a child process on ports of its own.
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
        Self::launch(test, tls, 0, "2000").await
    }

    /// Six nodes: three masters, each with a replica in sync with it. A
    /// node is counted as failing after a second, so that a replica takes
    /// over from its dead master within seconds.
    pub async fn start_with_replicas(test: &str) -> Option<Self> {
        let cluster = Self::launch(test, None, 1, "1000").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in 0..cluster.nodes.len() {
            loop {
                let info = cluster.replication(node).await;
                // A master lists its replica as `slave0:…,state=online,…`.
                let in_sync =
                    info.contains("state=online") || info.contains("master_link_status:up");
                if in_sync {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {node} never had its replica or master in sync: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Some(cluster)
    }

    /// Starts `3 × (1 + replicas)` nodes with the given
    /// `cluster-node-timeout` (milliseconds) and joins them.
    async fn launch(
        test: &str,
        tls: Option<&RedisPki>,
        replicas: usize,
        node_timeout: &str,
    ) -> Option<Self> {
        if !installed(test, true) {
            return None;
        }
        let cli_tls = tls.map(RedisPki::cli_args).unwrap_or_default();
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            let port = free_port();
            let mut args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                node_timeout,
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
        create.extend(["--cluster-replicas".to_owned(), replicas.to_string()]);
        create.push("--cluster-yes".to_owned());
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

    /// `INFO replication` of the (plain, living) node numbered `node`.
    pub async fn replication(&self, node: usize) -> String {
        query(
            &self.nodes[node].addr(),
            redis::cmd("INFO").arg("replication"),
        )
        .await
    }

    /// `HOST:PORT,HOST:PORT` of the first two nodes: the seeds sessiond is
    /// given, so that it must discover the third.
    pub fn seeds(&self) -> String {
        format!("{},{}", self.nodes[0].addr(), self.nodes[1].addr())
    }
}
