//! A connection flood from other processes: each runs
//! `hold_connections.py`, opens its connections as idle gRPC clients do,
//! reports what became of them, and holds them until the flood stops.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::skip::skip_or_fail;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/common/hold_connections.py"
);

/// What became of a flood's connections, summed over its processes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Answered by the server and still open.
    pub held: usize,
    /// Closed by the server.
    pub closed: usize,
    /// Open, but the server has not answered (not accepted yet).
    pub silent: usize,
    /// Could not be made.
    pub failed: usize,
}

/// Flooding processes; dropping the flood kills them.
pub struct Flood {
    children: Vec<Child>,
    pub outcome: Outcome,
}

impl Flood {
    /// `processes` processes each open `each` connections to `addr`, from
    /// `source` (an address of this host) if given; returns once every one
    /// has reported. `None` (after reporting the skip) without `python3`.
    pub fn start(addr: &str, processes: usize, each: usize, source: Option<&str>) -> Option<Self> {
        if Command::new("python3").arg("--version").output().is_err() {
            skip_or_fail("python3 is not installed");
            return None;
        }
        let (host, port) = addr.rsplit_once(':').unwrap();
        let mut flood = Self {
            children: Vec::new(),
            outcome: Outcome::default(),
        };
        let mut reports = Vec::new();
        for _ in 0..processes {
            let mut child = Command::new("python3")
                .arg(SCRIPT)
                .args([host, port, &each.to_string()])
                .args(source)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            reports.push(BufReader::new(child.stdout.take().unwrap()));
            flood.children.push(child);
        }
        for report in reports {
            flood.add(report);
        }
        Some(flood)
    }

    /// Adds one process's report line to the outcome.
    fn add(&mut self, mut report: BufReader<ChildStdout>) {
        let mut line = String::new();
        report.read_line(&mut line).unwrap();
        let count = |name: &str| -> usize {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in the flood's report {line:?}"))
                .parse()
                .unwrap()
        };
        self.outcome.held += count("held");
        self.outcome.closed += count("closed");
        self.outcome.silent += count("silent");
        self.outcome.failed += count("failed");
    }

    /// Ends the flood: every process closes its connections and exits.
    pub fn stop(mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            child.wait().unwrap();
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
