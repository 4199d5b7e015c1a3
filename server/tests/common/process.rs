//! The built `sessiond` binary as a child process: started with `SESSIOND_*`
//! variables on 127.0.0.1:0, its JSON log collected, stopped by a signal or
//! killed outright.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a start or an exit may take before the test fails.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// `sessiond` with none of the caller's `SESSIOND_*` or `RUST_LOG`.
pub fn sessiond() -> Command {
    only_test_settings(Command::new(env!("CARGO_BIN_EXE_sessiond")))
}

/// `sessiond` run under the file-creation mask `umask` (octal, as the
/// shell's `umask` takes it), as a service manager would start it.
pub fn sessiond_with_umask(umask: &str) -> Command {
    sessiond_after(&format!("umask {umask}"))
}

/// `sessiond` allowed at most `files` open files (`ulimit -n`, as
/// systemd's LimitNOFILE= sets it).
pub fn sessiond_with_file_limit(files: u32) -> Command {
    sessiond_after(&format!("ulimit -n {files}"))
}

/// `sessiond` whose soft open-file limit is `files`, its hard limit left
/// as it is (a login shell's usual 1024 under a higher hard limit).
pub fn sessiond_with_soft_file_limit(files: u32) -> Command {
    sessiond_after(&format!("ulimit -Sn {files}"))
}

/// `sessiond` started by a shell after `setup`, a shell command that
/// changes what the process inherits.
fn sessiond_after(setup: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{setup} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_sessiond"));
    only_test_settings(command)
}

/// Removes the caller's `SESSIOND_*` and `RUST_LOG`: only what each test
/// sets, so that an operator's settings do not leak in.
fn only_test_settings(mut command: Command) -> Command {
    for (name, _) in std::env::vars() {
        if name.starts_with("SESSIOND_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// A running `sessiond serve` whose stderr is collected. Dropping it kills
/// the process, so a failing test leaves none behind.
pub struct Running {
    child: Child,
    pub addr: String,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Running {
    /// Starts `command serve` and waits until it listens.
    pub fn start(command: &mut Command) -> Self {
        let mut child = command
            .arg("serve")
            .env("SESSIOND_LISTEN", "127.0.0.1:0")
            .env("SESSIOND_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let collected = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                // Logged before the address is handed over, so that a test
                // reading the log right after the start finds this line.
                {
                    let mut log = collected.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if line.contains("sessiond serving") {
                    let addr = line
                        .split("\"listen\":\"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .unwrap()
                        .to_owned();
                    let _ = addr_tx.send(addr);
                }
            }
        });
        let addr = match addr_rx.recv_timeout(PROCESS_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sessiond did not start:\n{}", log.lock().unwrap());
            }
        };
        Self {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log so far.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib * 1024
    }

    /// CPU time the process has used so far, user and system.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name, which is in parentheses and may
        // hold spaces: state is the first, utime and stime the 12th and 13th.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
    }

    /// The address of the metrics endpoint, from the log line that
    /// announces it (with `SESSIOND_METRICS_LISTEN`).
    pub fn metrics_addr(&self) -> std::net::SocketAddr {
        let log = self.log();
        let line = log
            .lines()
            .find(|line| line.contains("serving metrics at /metrics"))
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        line.split("\"listen\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code and the log.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.finish_log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sessiond did not exit:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL, as the OOM killer or a crash would:
    /// nothing of it runs after this returns. Returns the log.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.finish_log()
    }

    /// The whole log of an exited process: its stderr is closed, so the
    /// reader ends after the last line.
    fn finish_log(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.log()
    }
}

/// The unit of the CPU times in `/proc/PID/stat`.
fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
