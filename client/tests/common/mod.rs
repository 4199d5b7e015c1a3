//! A real sessiond on 127.0.0.1:0 over a temporary SQLite file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod logs;

use std::sync::Arc;

use clap::Parser;
use sessiond::cli::ServeArgs;
use sessiond_client::{Backend, Client, Session, Settings};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub struct Sessiond {
    pub client: Client,
    pub url: String,
    pub db_path: std::path::PathBuf,
    _dir: TempDir,
    _stop: oneshot::Sender<()>,
}

impl Sessiond {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts with extra `sessiond serve` flags.
    pub async fn start_with(args: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, args).await
    }

    /// Starts on `listener`, with extra `sessiond serve` flags.
    pub async fn start_on(listener: tokio::net::TcpListener, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("sessions.sqlite3");
        let store = format!("sqlite://{}", db_path.display());
        let mut argv = vec!["serve", "--store", &store];
        argv.extend_from_slice(args);
        let config = ServeArgs::try_parse_from(argv).unwrap().into_config();
        let server = sessiond::Server::open(config).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::connect(url.clone()).await.unwrap();
        Self {
            client,
            url,
            db_path,
            _dir: dir,
            _stop: stop,
        }
    }

    /// Stops the server and waits until its port refuses connections.
    pub async fn stop(self) {
        let address = self.url.trim_start_matches("http://").to_owned();
        drop(self);
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(&address).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("sessiond still accepts connections on {address}");
    }

    pub fn backend(&self) -> Backend {
        Backend::Server(self.client.clone())
    }

    /// A session for `key`, as a request carrying that cookie would get.
    pub fn session(&self, key: Option<&str>) -> Session {
        self.session_with(Settings::default(), key)
    }

    pub fn session_with(&self, settings: Settings, key: Option<&str>) -> Session {
        Session::new(self.backend(), Arc::new(settings), key)
    }
}
