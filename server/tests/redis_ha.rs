//! Redis as managed services run it: TLS-only (`rediss://`), a Redis
//! Cluster of three masters, with or without replicas (`redis+cluster://`),
//! and a master with a replica watched by Sentinel (`redis+sentinel://`),
//! the cluster and Sentinel also over TLS (`rediss+…`), each made of
//! `redis-server` child processes of the test on free ports, in temporary
//! directories, stopped when the test ends.
//!
//! Without `redis-server` (and `redis-cli` for the cluster) these tests
//! print a `SKIPPED:` line; under `CI=true` they fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use clap::Parser;
use common::pki::{self, Pki};
use common::redis_cluster::RedisCluster;
use common::redis_sentinel::{MASTER_NAME, RedisSentinel};
use common::redis_server::{self, RedisPki, RedisProcess, free_port, query};
use common::{TestServer, code};
use sessiond::Server;
use sessiond::cli::ServeArgs;
use sessiond::session::{ExpireDate, Record, SessionKey};
use sessiond::store::{self, SessionStore, StoreError, StoreOptions, StoreUrl};
use sessiond_client::Client;
use tonic::Code;

/// The password every server of these tests asks for; it must never show.
const PASSWORD: &str = "hunter2-redis";

/// Retries `attempt` every 100 ms until it returns `Some`, for at most
/// `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: gave up after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The start-up error of a server on `store`, as `main` prints it.
async fn start_error(store: &str) -> String {
    let config = ServeArgs::try_parse_from([
        "serve",
        "--store",
        store,
        "--store-timeout",
        "3s",
        "--listen",
        "127.0.0.1:0",
    ])
    .unwrap()
    .into_config();
    let err = Server::open(config).await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Every RPC once through `server`, checking the answers; returns the key
/// of a live session it leaves behind.
async fn every_rpc(server: &TestServer) -> String {
    let client = &server.client;
    let created = client.create(r#"{"user":"ada"}"#, None).await.unwrap();
    let key = created.session_key;
    assert!(client.exists(&key).await.unwrap());
    let loaded = client.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada"}"#);
    client
        .save(&key, r#"{"user":"ada","cart":[1]}"#, None, false)
        .await
        .unwrap();
    client
        .patch(
            &key,
            r#"{"theme":"dark"}"#,
            &["cart".to_owned()],
            false,
            None,
        )
        .await
        .unwrap();
    let loaded = client.load(&key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada","theme":"dark"}"#);

    // Without data: the stored data moves.
    let moved = client.cycle_key(&key, None, None).await.unwrap();
    assert_eq!(client.load(&key).await.unwrap(), None);
    assert!(!client.exists(&key).await.unwrap());
    let loaded = client.load(&moved.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"ada","theme":"dark"}"#);
    // With data: the new data, under a new key.
    let cycled = client
        .cycle_key(&moved.session_key, Some(r#"{"user":"bob"}"#), None)
        .await
        .unwrap();
    assert!(!client.exists(&moved.session_key).await.unwrap());
    let loaded = client.load(&cycled.session_key).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"bob"}"#);
    // A cycle of a missing session is NOT_FOUND and creates nothing.
    let err = client.cycle_key(&key, None, None).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);

    let gone = client.create("{}", None).await.unwrap().session_key;
    assert!(client.delete(&gone).await.unwrap());
    assert!(!client.delete(&gone).await.unwrap());
    let err = client.save(&gone, "{}", None, false).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);
    assert_eq!(client.clear_expired().await.unwrap(), 0);
    cycled.session_key
}

// ---------------------------------------------------------------- TLS

/// A Redis that speaks TLS only (`--port 0`), asks for a password and for a
/// client certificate signed by the test CA.
async fn tls_redis(test: &str) -> Option<(RedisProcess, Pki, tempfile::TempDir)> {
    if !redis_server::installed(test, false) {
        return None;
    }
    let certs = tempfile::tempdir().unwrap();
    let pki = pki::make_pki(certs.path());
    let port = free_port();
    let path = |path: &std::path::Path| path.to_string_lossy().into_owned();
    let args = [
        "--tls-port".to_owned(),
        port.to_string(),
        "--tls-cert-file".to_owned(),
        path(&pki.server_cert),
        "--tls-key-file".to_owned(),
        path(&pki.server_key),
        "--tls-ca-cert-file".to_owned(),
        path(&pki.ca),
        "--tls-auth-clients".to_owned(),
        "yes".to_owned(),
        "--requirepass".to_owned(),
        PASSWORD.to_owned(),
    ];
    // With --tls-port, the fixture turns plain TCP off (`--port 0`).
    let redis = RedisProcess::start(port, &args).await;
    Some((redis, pki, certs))
}

fn tls_url(port: u16, host: &str, ca: &std::path::Path, pki: &Pki) -> String {
    format!(
        "rediss://:{PASSWORD}@{host}:{port}/0?ca={}&cert={}&key={}",
        ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    )
}

#[tokio::test]
async fn tls_serves_every_rpc_through_rediss_with_the_right_ca() {
    let Some((redis, pki, _certs)) = tls_redis("tls").await else {
        return;
    };
    let url = tls_url(redis.port, "localhost", &pki.ca, &pki);
    let parsed: StoreUrl = url.parse().unwrap();
    let shown = parsed.to_string();
    assert!(shown.starts_with("rediss://:***@localhost:"), "{shown}");
    assert!(!shown.contains(PASSWORD), "{shown}");

    let server = TestServer::start_on(&url, &[]).await;
    every_rpc(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn tls_refuses_a_server_it_cannot_verify_and_says_which_check_failed() {
    let Some((redis, pki, _certs)) = tls_redis("tls_refusals").await else {
        return;
    };
    // Another CA, which did not sign the server's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other = pki::make_pki(other_dir.path());
    let text = start_error(&tls_url(redis.port, "localhost", &other.ca, &pki)).await;
    assert!(text.contains("--store"), "{text}");
    assert!(
        text.contains("not signed by a CA that ca= trusts"),
        "wrong CA: {text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    // The right CA, but a host name the certificate does not name (it is
    // for `localhost`, not 127.0.0.1).
    let text = start_error(&tls_url(redis.port, "127.0.0.1", &pki.ca, &pki)).await;
    assert!(
        text.contains("certificate is not valid for the host name 127.0.0.1"),
        "wrong name: {text}"
    );

    // Without ca=, the system trust store does not know the test CA.
    let url = format!(
        "rediss://:{PASSWORD}@localhost:{}/0?cert={}&key={}",
        redis.port,
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let text = start_error(&url).await;
    assert!(text.contains("system trust store"), "system roots: {text}");

    // The server checks clients (tls-auth-clients yes): without a client
    // certificate it refuses.
    let url = format!(
        "rediss://:{PASSWORD}@localhost:{}/0?ca={}",
        redis.port,
        pki.ca.display()
    );
    let text = start_error(&url).await;
    assert!(
        text.contains("cert=") && text.contains("key="),
        "no client cert: {text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");

    // A CA file that is not there is named.
    let missing = other_dir.path().join("missing-ca.pem");
    let text = start_error(&tls_url(redis.port, "localhost", &missing, &pki)).await;
    assert!(text.contains("missing-ca.pem"), "{text}");
    assert!(text.contains("ca="), "{text}");
}

// ---------------------------------------------------------------- Cluster

/// The slot of `key` as the cluster computes it.
async fn slot_of(cluster: &RedisCluster, key: &str) -> i64 {
    query(
        &cluster.nodes[0].addr(),
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
    )
    .await
}

/// The keys under `prefix` on every node of the cluster.
async fn cluster_keys(cluster: &RedisCluster, prefix: &str) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for node in &cluster.nodes {
        let mut conn = redis_server::connect(&node.addr()).await;
        all.push(redis_server::keys(&mut conn, prefix).await);
    }
    all
}

#[tokio::test]
async fn cluster_serves_every_rpc_across_slots_and_nodes() {
    let Some(cluster) = RedisCluster::start("cluster").await else {
        return;
    };
    let prefix = "app:s:";
    let url = format!("redis+cluster://{}/?prefix={prefix}", cluster.seeds());
    let server = TestServer::start_on(&url, &[]).await;
    let live = every_rpc(&server).await;

    // Enough sessions that every node holds some: keys are spread by slot,
    // and the third node, which sessiond was not told of, is found.
    let mut keys = vec![live.clone()];
    for n in 0..30 {
        let created = server
            .client
            .create(&format!(r#"{{"n":{n}}}"#), None)
            .await
            .unwrap();
        keys.push(created.session_key);
    }
    let on_nodes = cluster_keys(&cluster, prefix).await;
    assert!(
        on_nodes.iter().all(|keys| !keys.is_empty()),
        "some node holds no session: {on_nodes:?}"
    );
    // Each session is one hash whose key names the session key as its hash
    // tag: `PREFIX{KEY}`, in the slot of KEY alone.
    let stored: BTreeSet<String> = on_nodes.into_iter().flatten().collect();
    let expected: BTreeSet<String> = keys
        .iter()
        .map(|key| format!("{prefix}{{{key}}}"))
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(
        slot_of(&cluster, &format!("{prefix}{{{live}}}")).await,
        slot_of(&cluster, &live).await
    );
    let slots: BTreeSet<i64> = {
        let mut slots = BTreeSet::new();
        for key in &keys {
            slots.insert(slot_of(&cluster, key).await);
        }
        slots
    };
    assert!(slots.len() > 10, "{slots:?}");

    // Every session still reads back, whichever node holds it, and each
    // cycle crosses slots.
    for (n, key) in keys.iter().enumerate().skip(1) {
        let loaded = server.client.load(key).await.unwrap().unwrap();
        assert_eq!(loaded.data, format!(r#"{{"n":{}}}"#, n - 1));
        let moved = server.client.cycle_key(key, None, None).await.unwrap();
        assert_eq!(server.client.load(key).await.unwrap(), None);
        let loaded = server.client.load(&moved.session_key).await.unwrap();
        assert_eq!(loaded.unwrap().data, format!(r#"{{"n":{}}}"#, n - 1));
    }
    server.stop().await;
}

#[tokio::test]
async fn tls_cluster_serves_through_rediss_cluster() {
    let certs = tempfile::tempdir().unwrap();
    let pki = RedisPki::new(certs.path());
    let Some(cluster) = RedisCluster::start_with("tls_cluster", Some(&pki)).await else {
        return;
    };
    // The nodes sessiond discovers are announced by IP address, which the
    // certificate names too.
    let url = format!(
        "rediss+cluster://:{PASSWORD}@{}/?ca={}",
        cluster.seeds(),
        pki.ca.display()
    );
    // No password is set on these nodes: AUTH with one fails, and says so
    // without the password.
    let text = start_error(&url).await;
    assert!(!text.contains(PASSWORD), "{text}");
    let url = format!(
        "rediss+cluster://{}/?ca={}",
        cluster.seeds(),
        pki.ca.display()
    );
    let server = TestServer::start_on(&url, &[]).await;
    every_rpc(&server).await;
    let mut keys = Vec::new();
    for n in 0..20 {
        let data = format!(r#"{{"n":{n}}}"#);
        keys.push((
            server.client.create(&data, None).await.unwrap().session_key,
            data,
        ));
    }
    for (key, data) in &keys {
        let moved = server.client.cycle_key(key, None, None).await.unwrap();
        let loaded = server.client.load(&moved.session_key).await.unwrap();
        assert_eq!(&loaded.unwrap().data, data);
    }
    server.stop().await;

    // A CA that did not sign the nodes' certificates is refused at start-up.
    let other_dir = tempfile::tempdir().unwrap();
    let other = RedisPki::new(other_dir.path());
    let text = start_error(&format!(
        "rediss+cluster://{}/?ca={}",
        cluster.seeds(),
        other.ca.display()
    ))
    .await;
    assert!(
        text.contains("not signed by a CA that ca= trusts"),
        "{text}"
    );
}

/// The number of the node that replicates the master numbered `master`.
async fn replica_of(cluster: &RedisCluster, master: usize) -> usize {
    let port = format!("master_port:{}\r\n", cluster.nodes[master].port);
    for node in 0..cluster.nodes.len() {
        if cluster.replication(node).await.contains(&port) {
            return node;
        }
    }
    panic!("no node replicates node {master}");
}

/// A master dies and the cluster promotes its replica: the same sessiond
/// serves every session again, those the dead master held too (from the
/// promoted replica), and writes across slots, without a restart.
#[tokio::test]
async fn cluster_failover_keeps_sessiond_serving_from_the_promoted_replica() {
    let Some(mut cluster) = RedisCluster::start_with_replicas("cluster_failover").await else {
        return;
    };
    let prefix = "app:s:";
    let url = format!("redis+cluster://{}/?prefix={prefix}", cluster.seeds());
    let server = TestServer::start_on(&url, &["--store-timeout", "1s"]).await;
    let client = &server.client;
    every_rpc(&server).await;
    let mut sessions = Vec::new();
    for n in 0..30 {
        let data = format!(r#"{{"n":{n}}}"#);
        let created = client.create(&data, None).await.unwrap();
        sessions.push((created.session_key, data));
    }

    // The first master that holds sessions: a seed of sessiond's when one
    // of the seeds is a master.
    let on_nodes = cluster_keys(&cluster, prefix).await;
    let mut victim = None;
    for (node, keys) in on_nodes.iter().enumerate() {
        if !keys.is_empty() && cluster.replication(node).await.contains("role:master") {
            victim = Some(node);
            break;
        }
    }
    let victim = victim.expect("no master holds a session");
    let held = &on_nodes[victim];
    let replica = replica_of(&cluster, victim).await;
    // Replication is asynchronous: only what reached the replica survives
    // the master's death, so the test waits for it (WAIT 1 replica).
    let acked: i64 = query(
        &cluster.nodes[victim].addr(),
        redis::cmd("WAIT").arg(1).arg(5000),
    )
    .await;
    assert_eq!(acked, 1);

    cluster.nodes[victim].kill().await;
    // Calls on the dead master's slots fail (UNAVAILABLE) until its replica
    // takes over; then every session reads back.
    eventually(
        "every session after the failover",
        Duration::from_secs(60),
        || async {
            for (key, data) in &sessions {
                let loaded = client.load(key).await.ok()?;
                assert_eq!(loaded.as_ref().map(|l| &l.data), Some(data), "{key}");
            }
            Some(())
        },
    )
    .await;
    assert!(
        cluster.replication(replica).await.contains("role:master"),
        "node {replica} was not promoted"
    );
    let mut conn = redis_server::connect(&cluster.nodes[replica].addr()).await;
    let promoted = redis_server::keys(&mut conn, prefix).await;
    assert!(
        held.iter().all(|key| promoted.contains(key)),
        "the promoted replica lacks sessions: {held:?} / {promoted:?}"
    );

    // Writes reach every master, the promoted one too: each cycle moves a
    // session to a slot of its own.
    for (key, data) in &sessions {
        let moved = client.cycle_key(key, None, None).await.unwrap();
        let loaded = client.load(&moved.session_key).await.unwrap();
        assert_eq!(&loaded.unwrap().data, data);
        assert_eq!(client.load(key).await.unwrap(), None);
    }
    every_rpc(&server).await;
    server.stop().await;
}

fn key(text: &str) -> SessionKey {
    SessionKey::parse(text).unwrap()
}

fn record(data: &str) -> Record {
    Record {
        session_data: data.to_owned(),
        expire_date: ExpireDate::new(Utc::now() + TimeDelta::hours(1)).unwrap(),
    }
}

/// Cycle-key in steps against concurrent patches of the old session: every
/// patch that succeeded is in the session under the new key, every other
/// one answered NOT_FOUND, and exactly one of the two keys holds the
/// session.
#[tokio::test]
async fn cluster_cycle_key_keeps_every_write_that_succeeded() {
    let Some(cluster) = RedisCluster::start("cluster_cycle").await else {
        return;
    };
    let url: StoreUrl = format!("redis+cluster://{}/", cluster.seeds())
        .parse()
        .unwrap();
    let store: Arc<dyn SessionStore> = store::open(&url, &StoreOptions::default()).await.unwrap();
    for round in 0..10 {
        let old = key(&format!("oldkey{round:02}aaaaaaaaaaaaaaaaaaaaaaaaaa"));
        let new = key(&format!("newkey{round:02}bbbbbbbbbbbbbbbbbbbbbbbbbb"));
        store.insert(&old, record("{}")).await.unwrap();
        let patches: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                let old = old.clone();
                tokio::spawn(async move {
                    let name = format!("p{n}");
                    let patcher: store::Patcher = Box::new(move |stored| {
                        let mut data: serde_json::Map<String, serde_json::Value> =
                            serde_json::from_str(&stored.unwrap_or_else(|| "{}".to_owned()))
                                .unwrap();
                        data.insert(name.clone(), true.into());
                        Ok(serde_json::to_string(&data).unwrap())
                    });
                    let expire = ExpireDate::new(Utc::now() + TimeDelta::hours(1)).unwrap();
                    (n, store.patch(&old, patcher, expire, Utc::now()).await)
                })
            })
            .collect();
        let expire = ExpireDate::new(Utc::now() + TimeDelta::hours(1)).unwrap();
        store
            .cycle_key(&old, &new, None, expire, Utc::now())
            .await
            .unwrap();
        let moved = store.load(&new, Utc::now()).await.unwrap().unwrap();
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&moved.session_data).unwrap();
        for patch in patches {
            let (n, result) = patch.await.unwrap();
            match result {
                Ok(_) => assert!(data.contains_key(&format!("p{n}")), "lost p{n}: {data:?}"),
                Err(StoreError::NotFound) => {}
                Err(err) => panic!("patch {n}: {err:?}"),
            }
        }
        assert!(!store.exists(&old).await.unwrap(), "two copies readable");
        store.delete(&new).await.unwrap();
    }
}

#[tokio::test]
async fn cluster_urls_refuse_what_a_cluster_cannot_do() {
    for (url, expected) in [
        ("redis+cluster://127.0.0.1:7000/2", "only database 0"),
        ("redis+cluster://127.0.0.1:7000/?prefix={app}:", "hash tag"),
    ] {
        let err = ServeArgs::try_parse_from(["serve", "--store", url])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--store") && err.contains(expected),
            "{url}: {err}"
        );
    }
}

// ---------------------------------------------------------------- Sentinel

/// A sessiond on the master the sentinel names, under the `ha:` prefix,
/// through `scheme` with `&`-led extra `options`; calls to a dead master
/// fail within a second.
async fn serve_through_sentinel(redis: &RedisSentinel, scheme: &str, options: &str) -> TestServer {
    let url = format!(
        "{scheme}://{}/{MASTER_NAME}/0?prefix=ha:{options}",
        redis.sentinel.addr()
    );
    TestServer::start_on(&url, &["--store-timeout", "1s"]).await
}

/// The session data stored under `ha:KEY` on the server at `addr`.
async fn stored_data(redis: &RedisSentinel, addr: &str, key: &str) -> Option<String> {
    redis
        .query(
            addr,
            redis::cmd("HGET")
                .arg(format!("ha:{key}"))
                .arg("session_data"),
        )
        .await
}

/// Kills the master once the replica holds every write, waits until
/// `client` (a sessiond on the `ha:` prefix) reads `key`, holding `data`,
/// from the replica the sentinel promotes, and checks that new sessions are
/// written to it.
async fn kill_master_and_follow(redis: &mut RedisSentinel, client: &Client, key: &str, data: &str) {
    // Replication is asynchronous: only what reached the replica survives
    // the master's death, so the test waits for it (WAIT 1 replica).
    let acked: i64 = redis
        .query(&redis.master.addr(), redis::cmd("WAIT").arg(1).arg(5000))
        .await;
    assert_eq!(acked, 1);
    assert_eq!(redis.master_port().await, redis.master.port);

    redis.master.kill().await;
    // Calls fail (UNAVAILABLE) until the sentinel has promoted the
    // replica; then the same sessiond serves from it.
    let loaded = eventually(
        "load after the failover",
        Duration::from_secs(60),
        || async { client.load(key).await.ok().flatten() },
    )
    .await;
    assert_eq!(loaded.data, data);
    assert_eq!(redis.master_port().await, redis.replica.port);
    // Writes go to the new master.
    let after = eventually(
        "create after the failover",
        Duration::from_secs(30),
        || async { client.create(r#"{"after":"failover"}"#, None).await.ok() },
    )
    .await;
    let stored = stored_data(redis, &redis.replica.addr(), &after.session_key).await;
    assert_eq!(stored.as_deref(), Some(r#"{"after":"failover"}"#));
}

#[tokio::test]
async fn sentinel_failover_keeps_sessiond_serving_from_the_promoted_replica() {
    let Some(mut redis) = RedisSentinel::start("sentinel").await else {
        return;
    };
    let server = serve_through_sentinel(&redis, "redis+sentinel", "").await;
    let client = &server.client;
    let live = every_rpc(&server).await;
    let created = client
        .create(r#"{"before":"failover"}"#, None)
        .await
        .unwrap();
    kill_master_and_follow(
        &mut redis,
        client,
        &created.session_key,
        r#"{"before":"failover"}"#,
    )
    .await;
    let loaded = client.load(&live).await.unwrap().unwrap();
    assert_eq!(loaded.data, r#"{"user":"bob"}"#);
    every_rpc(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn sentinel_start_up_names_an_unknown_master() {
    let Some(redis) = RedisSentinel::start("sentinel_unknown").await else {
        return;
    };
    let text = start_error(&format!(
        "redis+sentinel://:{PASSWORD}@{}/no-such-master",
        redis.sentinel.addr()
    ))
    .await;
    assert!(text.contains("--store"), "{text}");
    assert!(text.contains("no master named 'no-such-master'"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

/// A planned failover (`SENTINEL FAILOVER`): the old master stays up and
/// turns replica, so writes to it answer READONLY; sessiond asks the
/// sentinel again and writes to the new master, without a restart.
#[tokio::test]
async fn sentinel_switchover_moves_writes_to_the_new_master() {
    let Some(redis) = RedisSentinel::start("sentinel_switchover").await else {
        return;
    };
    let server = serve_through_sentinel(&redis, "redis+sentinel", "").await;
    let client = &server.client;
    let created = client.create(r#"{"n":1}"#, None).await.unwrap();
    let acked: i64 = query(&redis.master.addr(), redis::cmd("WAIT").arg(1).arg(5000)).await;
    assert_eq!(acked, 1);

    let _: String = query(
        &redis.sentinel.addr(),
        redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME),
    )
    .await;
    eventually("the switchover", Duration::from_secs(60), || async {
        (redis.master_port().await == redis.replica.port).then_some(())
    })
    .await;
    // Until the sentinel turns the old master into a replica (seconds
    // later), it still accepts writes, which its demotion throws away.
    // sessiond leaves it when the sentinel announces the switch
    // (`+switch-master`), or at the latest when it answers READONLY; from
    // then on, saves land on the new master.
    let mut n = 1;
    eventually("a save on the new master", Duration::from_secs(60), || {
        n += 1;
        let data = format!(r#"{{"n":{n}}}"#);
        let key = created.session_key.clone();
        let new_master = redis.replica.addr();
        async move {
            client.save(&key, &data, None, false).await.ok()?;
            let stored: Option<String> = query(
                &new_master,
                redis::cmd("HGET")
                    .arg(format!("ha:{key}"))
                    .arg("session_data"),
            )
            .await;
            (stored == Some(data)).then_some(())
        }
    })
    .await;
    every_rpc(&server).await;
    server.stop().await;
}

/// Sentinel, master and replica that speak TLS only and ask every client
/// for a certificate of the test CA (`rediss+sentinel://`): sessiond checks
/// the sentinel's certificate and the master's (by the IP address the
/// sentinel announces) against `ca=`, presents `cert=` and `key=` to both,
/// and does so again for the replica the sentinel promotes.
#[tokio::test]
async fn tls_sentinel_serves_through_rediss_sentinel_and_follows_a_failover() {
    let certs = tempfile::tempdir().unwrap();
    let pki = RedisPki::new(certs.path());
    let Some(mut redis) = RedisSentinel::start_with("tls_sentinel", Some(&pki)).await else {
        return;
    };
    let sentinel = redis.sentinel.addr();
    let client_cert = format!(
        "cert={}&key={}",
        pki.client_cert.display(),
        pki.client_key.display()
    );

    // A CA that did not sign the servers' certificates is refused at
    // start-up, and the message says which check failed.
    let other_dir = tempfile::tempdir().unwrap();
    let other = RedisPki::new(other_dir.path());
    let text = start_error(&format!(
        "rediss+sentinel://{sentinel}/{MASTER_NAME}?ca={}&{client_cert}",
        other.ca.display()
    ))
    .await;
    assert!(text.contains("--store"), "{text}");
    assert!(
        text.contains("not signed by a CA that ca= trusts"),
        "wrong CA: {text}"
    );
    // The servers check clients: without a client certificate, refused.
    let text = start_error(&format!(
        "rediss+sentinel://{sentinel}/{MASTER_NAME}?ca={}",
        pki.ca.display()
    ))
    .await;
    assert!(
        text.contains("cert=") && text.contains("key="),
        "no client cert: {text}"
    );

    let tls = format!("&ca={}&{client_cert}", pki.ca.display());
    let server = serve_through_sentinel(&redis, "rediss+sentinel", &tls).await;
    let client = &server.client;
    let live = every_rpc(&server).await;
    let stored = stored_data(&redis, &redis.master.addr(), &live).await;
    assert_eq!(stored.as_deref(), Some(r#"{"user":"bob"}"#));
    kill_master_and_follow(&mut redis, client, &live, r#"{"user":"bob"}"#).await;
    server.stop().await;
}
