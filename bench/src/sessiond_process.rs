//! A `sessiond serve` child process: started on a free port of 127.0.0.1,
//! healthy before it is used, measured through `/proc`, stopped with
//! SIGTERM.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::proc_stats::ProcStats;
use crate::tls::TlsClient;

/// How long sessiond may take to migrate and answer health checks as
/// SERVING: PostgreSQL migrations on a busy machine take a few seconds.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long sessiond may take to exit after SIGTERM: its default drain
/// timeout (10 s) plus closing the store.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Log lines kept to explain a failed start or exit.
const LOG_TAIL_LINES: usize = 40;

/// The sessiond binary: `explicit`, else the `sessiond` next to this
/// program (cargo puts both in one target directory), else one on PATH.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("--sessiond {}: no such file", path.display());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("sessiond")));
    if let Some(path) = beside.filter(|path| path.is_file()) {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("sessiond"))
            .find(|path| path.is_file())
    });
    on_path.context(
        "cannot find the sessiond binary next to sessiond-bench or on PATH; \
         build it with `cargo build --release -p sessiond` or pass --sessiond PATH",
    )
}

/// What sessiond has logged: the last lines and how many warnings.
#[derive(Debug, Default)]
struct Log {
    tail: VecDeque<String>,
    warnings: u64,
}

/// A running `sessiond serve`. Killed if dropped without [`Self::stop`].
#[derive(Debug)]
pub struct SessiondProcess {
    child: Child,
    pid: u32,
    url: String,
    log: Arc<Mutex<Log>>,
    reader: JoinHandle<()>,
}

impl SessiondProcess {
    /// Starts `binary serve` on `store` (and `cache`) with `extra` flags,
    /// and waits until its health check answers SERVING; over `tls` when
    /// `extra` turns TLS on.
    pub async fn start(
        binary: &Path,
        store: &str,
        cache: Option<&str>,
        extra: &[String],
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        // Only what the bench sets: an operator's SESSIOND_* must not leak
        // in. `info` keeps the start-up line and warnings, not per-call logs.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SESSIOND_") {
                command.env_remove(name);
            }
        }
        command
            .env("RUST_LOG", "info")
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
            .args(["--store", store]);
        if let Some(cache) = cache {
            command.args(["--cache", cache]);
        }
        let mut child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("sessiond exited at once")?;
        let stderr = child.stderr.take().context("no stderr pipe to sessiond")?;
        let log = Arc::new(Mutex::new(Log::default()));
        let (listening, listen_addr) = oneshot::channel();
        let reader = tokio::spawn(read_log(stderr, log.clone(), listening));
        let mut process = Self {
            child,
            pid,
            url: String::new(),
            log,
            reader,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = match tokio::time::timeout(START_TIMEOUT, listen_addr).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => bail!(
                "sessiond exited before serving ({}); its log:\n{}",
                process.exit_status().await,
                process.log_tail()
            ),
            Err(_) => bail!(
                "sessiond did not start within {START_TIMEOUT:?}; its log:\n{}",
                process.log_tail()
            ),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        process.url = format!("{scheme}://{addr}");
        process.wait_serving(deadline, tls).await?;
        Ok(process)
    }

    /// The gRPC address, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Warnings and errors sessiond has logged so far.
    pub fn warnings(&self) -> u64 {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .warnings
    }

    /// Memory and CPU time used so far.
    pub fn stats(&self) -> anyhow::Result<ProcStats> {
        ProcStats::read(self.pid)
    }

    /// Health checks until SERVING, every 50 ms, until `deadline`.
    async fn wait_serving(
        &mut self,
        deadline: Instant,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<()> {
        let mut endpoint = tonic::transport::Endpoint::from_shared(self.url.clone())
            .context("sessiond logged a malformed listen address")?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(1));
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls.tonic())
                .context("cannot set up TLS for the health check")?;
        }
        let channel = endpoint.connect_lazy();
        let mut health = HealthClient::new(channel);
        loop {
            let answer = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if let Ok(response) = &answer
                && response.get_ref().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
            if let Err(status) = &answer
                && rejected_by_tls(status)
            {
                bail!(
                    "cannot check the health of sessiond at {} over TLS: {}; check --tls-ca and \
                     --tls-name against the certificate of --tls-cert",
                    self.url,
                    status.message()
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "sessiond exited before serving ({status}); its log:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                let last = match answer {
                    Ok(response) => format!("{:?}", response.get_ref().status()),
                    Err(status) => status.message().to_owned(),
                };
                bail!(
                    "sessiond at {} did not report SERVING within {START_TIMEOUT:?} \
                     (the last health check: {last}); its log:\n{}",
                    self.url,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`STOP_TIMEOUT`]).
    /// An exit other than 0 is an error that carries the log.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("sessiond has no valid process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("cannot send SIGTERM to sessiond")?;
        let status = match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.context("cannot wait for sessiond")?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "sessiond did not exit within {STOP_TIMEOUT:?} of SIGTERM and was killed; its log:\n{}",
                    self.log_tail()
                );
            }
        };
        // The pipe closes with the process, so the reader ends.
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.reader).await;
        if !status.success() {
            bail!(
                "sessiond exited with {status} after SIGTERM; its log:\n{}",
                self.log_tail()
            );
        }
        Ok(())
    }

    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            _ => "still running".to_owned(),
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.tail.iter().map(|line| format!("  {line}\n")).collect()
    }
}

impl Drop for SessiondProcess {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Whether a health check failed because the TLS handshake did: rustls
/// reports a certificate it does not trust as invalid data, and no retry
/// changes that.
fn rejected_by_tls(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|err| err.kind() == std::io::ErrorKind::InvalidData)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Reads sessiond's JSON log lines until the pipe closes: sends the listen
/// address of the `sessiond serving` line, keeps the last lines and counts
/// warnings.
async fn read_log(stderr: ChildStderr, log: Arc<Mutex<Log>>, listening: oneshot::Sender<String>) {
    let mut listening = Some(listening);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = listen_addr(&line)
            && let Some(listening) = listening.take()
        {
            let _ = listening.send(addr);
        }
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        if line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#) {
            log.warnings += 1;
        }
        if log.tail.len() == LOG_TAIL_LINES {
            log.tail.pop_front();
        }
        log.tail.push_back(line);
    }
}

/// The `listen` field of sessiond's start-up line (`--log-format json`
/// puts the event's fields at the top level).
fn listen_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value["message"] != "sessiond serving" {
        return None;
    }
    value["listen"].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listen_address_comes_from_the_start_up_line() {
        let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"INFO","message":"sessiond serving","listen":"127.0.0.1:41234","store":"memory://","target":"sessiond"}"#;
        assert_eq!(listen_addr(line).as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(listen_addr(r#"{"message":"other","listen":"x"}"#), None);
        assert_eq!(listen_addr("not json"), None);
    }

    #[test]
    fn an_explicit_binary_must_exist() {
        let err = locate(Some(Path::new("/nonexistent/sessiond"))).unwrap_err();
        assert!(err.to_string().contains("--sessiond"), "{err}");
    }
}
