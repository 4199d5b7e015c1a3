//! A real sessiond on 127.0.0.1:0 over a temporary SQLite file (or another
//! store), and a real client connected to it; `process` runs the built
//! binary instead.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod flood;
pub mod node;
pub mod pki;
pub mod postgres_tls;
pub mod process;
pub mod python;
pub mod scrape;
pub mod skip;

pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Parser;
use sessiond::cli::ServeArgs;
use sessiond::{ServeError, Server, ServerConfig};
use sessiond_client::Client;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub client: Client,
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    dir: TempDir,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra `sessiond serve` flags.
    pub async fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, args).await
    }

    /// Starts on `sessions.sqlite3` inside `dir`, which may already hold one.
    pub async fn start_in(dir: TempDir, args: &[&str]) -> Self {
        let db_path = dir.path().join("sessions.sqlite3");
        let config = serve_config(&db_path, args);
        Self::start_config(dir, db_path, config).await
    }

    /// Starts on another store, such as `redis://…` or `memory://`.
    /// `db_path` then names no file.
    pub async fn start_on(store: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["serve", "--store", store, "--listen", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let config = ServeArgs::try_parse_from(argv).unwrap().into_config();
        let db_path = dir.path().join("no-sqlite-file");
        Self::start_config(dir, db_path, config).await
    }

    async fn start_config(dir: TempDir, db_path: PathBuf, config: ServerConfig) -> Self {
        let Serving { addr, stop, task } =
            Serving::start(Server::open(config).await.unwrap()).await;
        let client = Client::connect(format!("http://{addr}")).await.unwrap();
        Self {
            client,
            addr,
            db_path,
            dir,
            stop,
            task,
        }
    }

    /// Shuts down gracefully and hands back the directory with the database.
    pub async fn stop(self) -> TempDir {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        self.dir
    }

    /// Whether the serving task has ended (returned or panicked) before
    /// anyone asked it to stop.
    pub fn has_stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// A direct connection to the database file, for checking what is stored.
    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.db_path)
    }
}

/// An opened server serving on 127.0.0.1:0, without a client: for tests
/// that connect their own way (TLS, tokens).
pub struct Serving {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Serving {
    pub async fn start(server: Server) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

pub fn serve_config(db_path: &Path, args: &[&str]) -> ServerConfig {
    let store = format!("sqlite://{}", db_path.display());
    let mut argv = vec!["serve", "--store", &store, "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    ServeArgs::try_parse_from(argv).unwrap().into_config()
}

pub fn open_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// `(session_data, expire_date)` as stored, if a row exists.
pub fn stored_row(conn: &rusqlite::Connection, key: &str) -> Option<(String, String)> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        "SELECT session_data, expire_date FROM django_session WHERE session_key = ?1",
        [key],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
    .unwrap()
}

pub fn row_count(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM django_session", [], |row| row.get(0))
        .unwrap()
}

pub fn hours_from_now(hours: i64) -> SystemTime {
    let now = SystemTime::now();
    if hours >= 0 {
        now + Duration::from_secs(hours.unsigned_abs() * 3600)
    } else {
        now - Duration::from_secs(hours.unsigned_abs() * 3600)
    }
}

pub fn code(err: sessiond_client::Error) -> tonic::Code {
    err.code()
        .unwrap_or_else(|| panic!("expected a status, got {err:?}"))
}

/// Whether a service on this machine answers at `addr`. When it does not,
/// the test is skipped, loudly, or fails under CI=true (see `skip`).
pub fn service_available(name: &str, addr: &str) -> bool {
    let reachable = addr
        .parse::<SocketAddr>()
        .ok()
        .and_then(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .is_some();
    if reachable {
        return true;
    }
    skip::skip_or_fail(&format!("{name} is not reachable at {addr}"));
    false
}

pub const POSTGRES_ADDR: &str = "127.0.0.1:5432";

/// A schema of its own in the `test` database, dropped when the test ends,
/// so PostgreSQL tests run in parallel.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub fn new() -> Self {
        use rand::RngExt;
        let suffix: u64 = rand::rng().random();
        Self {
            name: format!("sessiond_test_{suffix:016x}"),
        }
    }

    /// The store URL of this schema through `addr` (PostgreSQL itself, or a
    /// proxy in front of it).
    pub fn url_via(&self, addr: &str) -> String {
        format!("postgres://postgres@{addr}/test?schema={}", self.name)
    }

    pub fn url(&self) -> String {
        self.url_via(POSTGRES_ADDR)
    }

    /// Runs SQL in this schema on a connection of the test's own.
    pub async fn execute(&self, sql: &str) {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port=5432 user=postgres dbname=test options='-c search_path={}'",
                self.name
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        client.batch_execute(sql).await.unwrap();
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread of its own can block.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(
                    "host=127.0.0.1 port=5432 user=postgres dbname=test options='-c lock_timeout=10000'",
                    tokio_postgres::NoTls,
                )
                .await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A TCP proxy on 127.0.0.1 in front of a service, that a test can cut and
/// restore to play the service going down and coming back.
pub struct Proxy {
    pub addr: SocketAddr,
    target: String,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut proxy = Self {
            addr,
            target: target.to_owned(),
            running: None,
        };
        proxy.running = Some(tokio::spawn(Self::serve(listener, proxy.target.clone())));
        proxy
    }

    async fn serve(listener: tokio::net::TcpListener, target: String) {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
        // Dropping the set aborts every forwarded connection.
    }

    /// Closes the port and cuts every connection through it.
    pub fn cut(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }

    /// Opens the same port again.
    pub async fn restore(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.running = Some(tokio::spawn(Self::serve(listener, self.target.clone())));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}
