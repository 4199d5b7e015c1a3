//! A real sessiond on 127.0.0.1:0 over a temporary SQLite file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod logs;
pub mod pauses;

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
    /// `http://…/metrics`, for a server started with `--metrics-listen`.
    pub metrics_url: Option<String>,
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

    /// Starts with its metrics on loopback, for tests that count the calls
    /// that reach it ([`calls`](Self::calls)).
    pub async fn start_with_metrics() -> Self {
        Self::start_with(&["--metrics-listen", "127.0.0.1:0"]).await
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
        let metrics_url = server
            .metrics_addr()
            .map(|addr| format!("http://{addr}/metrics"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = Client::connect(url.clone()).await.unwrap();
        Self {
            client,
            url,
            db_path,
            metrics_url,
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

    /// How many `method` calls (`"Patch"`) were answered with `code`
    /// (`"NOT_FOUND"`), by the server's metrics (see
    /// [`start_with_metrics`](Self::start_with_metrics)). A call is counted
    /// once its answer has been handed over, which may be just after the
    /// client has it, so this waits until no call is in flight and at least
    /// one was counted (up to 5 s), then reads the count.
    pub async fn calls(&self, method: &str, code: &str) -> u64 {
        let url = self
            .metrics_url
            .as_deref()
            .expect("start the server with Sessiond::start_with_metrics");
        let series = format!("sessiond_calls_total{{method=\"{method}\",code=\"{code}\"}}");
        let value = |text: &str, series: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
                .map_or(0.0, |value| value.trim().parse::<f64>().unwrap())
        };
        let mut count = 0.0;
        for _ in 0..250 {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            count = value(&text, &series);
            if count > 0.0 && value(&text, "sessiond_calls_in_flight") == 0.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        count as u64
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
