//! A real sessiond on 127.0.0.1:0 over a temporary SQLite file (or another
//! store), and a real client connected to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod redis_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::Parser;
use sessiond::config::ServeConfig;
use sessiond::{ServeError, Server};
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
        let config = ServeConfig::try_parse_from(argv).unwrap();
        let db_path = dir.path().join("no-sqlite-file");
        Self::start_config(dir, db_path, config).await
    }

    async fn start_config(dir: TempDir, db_path: PathBuf, config: ServeConfig) -> Self {
        let server = Server::open(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
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

    /// A direct connection to the database file, for checking what is stored.
    pub fn db(&self) -> rusqlite::Connection {
        open_db(&self.db_path)
    }
}

pub fn serve_config(db_path: &Path, args: &[&str]) -> ServeConfig {
    let store = format!("sqlite://{}", db_path.display());
    let mut argv = vec!["serve", "--store", &store, "--listen", "127.0.0.1:0"];
    argv.extend_from_slice(args);
    ServeConfig::try_parse_from(argv).unwrap()
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
