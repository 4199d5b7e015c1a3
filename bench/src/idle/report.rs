//! The results of `--idle-connections`: lines for people, or one JSON
//! document (`--json`), with the same names and units as the workload
//! report.

use std::fmt::Write as _;

use serde::Serialize;

/// Everything an idle-connections run prints.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// `idle_connections`, to tell this document from a workload's.
    pub mode: &'static str,
    pub settings: Settings,
    pub connections: Connections,
    pub server: Server,
}

/// What was asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The store sessiond ran on (passwords shown as `***`).
    pub store: String,
    /// The extra flags it was started with.
    pub server_args: Vec<String>,
    /// The connections spoke TLS (`--tls-ca`).
    pub tls: bool,
    pub requested: u64,
    /// Connections being opened at once.
    pub connects_in_flight: usize,
    /// The bench's open-file limit, which the sessiond it starts inherits
    /// (and sizes its default --max-connections by); absent if unlimited.
    pub file_limit: Option<u64>,
    pub warmup_s: f64,
    /// How long a connection had to be answered before it counted as
    /// silent.
    pub settle_s: f64,
    pub duration_s: f64,
}

/// What became of the connections.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub requested: u64,
    /// Answered by the server (its SETTINGS) and kept open.
    pub answered: u64,
    /// Closed or reset by the server right away (e.g. past
    /// --max-connections).
    pub closed: u64,
    /// Open but not answered within `settle_s`: not accepted yet.
    pub silent: u64,
    /// Could not be made at all.
    pub failed: u64,
    /// Why the first failed one failed.
    pub first_failure: Option<String>,
    /// From the first connect until every connection was sorted.
    pub opening_s: f64,
    /// Connects dropped meanwhile because a listen queue was full, on the
    /// whole machine (`TcpExt: ListenOverflows`): each is retried a second
    /// later. Absent without `/proc/net/netstat`.
    pub listen_overflows: Option<u64>,
    /// Silent ones the server answered later, while they were held.
    pub answered_late: u64,
    /// Closed by the server while they were held.
    pub closed_while_held: u64,
    /// Answered and still open at the end of the hold, when the server's
    /// memory was read.
    pub held_at_end: u64,
}

/// The sessiond process the bench started.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// `VmRSS` after the warm-up, before any idle connection.
    pub rss_before_bytes: u64,
    /// `VmRSS` at the end of the hold, with the connections open.
    pub rss_holding_bytes: u64,
    /// `VmRSS` a moment (`after_close_wait_s`) after they were closed.
    pub rss_after_close_bytes: u64,
    pub after_close_wait_s: f64,
    /// `VmHWM`, the most resident memory during its life.
    pub peak_rss_bytes: u64,
    /// (holding − before) / held_at_end.
    pub rss_per_connection_bytes: Option<u64>,
    pub rss_per_connection_kib: Option<f64>,
    /// CPU time (`utime + stime`) while the connections were opened.
    pub cpu_opening_s: f64,
    /// That time per connection the server accepted (answered or
    /// closed).
    pub cpu_opening_us_per_connection: Option<f64>,
    /// CPU time while the connections were held.
    pub cpu_holding_s: f64,
    /// How long they were held.
    pub holding_s: f64,
    /// `cpu_holding_s / holding_s`: 1.0 is one core busy.
    pub cpu_holding_share_of_core: f64,
    /// Warning and error lines it logged (a refusal past
    /// --max-connections logs one a minute).
    pub warnings_logged: u64,
}

impl IdleReport {
    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Labelled lines, one figure each.
    pub fn text(&self) -> String {
        let (s, c, server) = (&self.settings, &self.connections, &self.server);
        let mut out = String::new();
        let args: String = s.server_args.iter().map(|arg| format!(" {arg}")).collect();
        let limit = s
            .file_limit
            .map_or_else(|| "unlimited".to_owned(), |limit| limit.to_string());
        let _ = writeln!(
            out,
            "{} idle{} connections to sessiond --store {}{args}\n\
             opened {} at a time (open-file limit {limit}) after {} s warm-up, held {} s",
            s.requested,
            if s.tls { " TLS" } else { "" },
            s.store,
            s.connects_in_flight,
            s.warmup_s,
            s.duration_s,
        );
        let count = |n: u64| format!("{n:>9}");
        let mut lines = vec![
            ("", String::new()),
            ("answered by the server and kept open", count(c.answered)),
            ("closed by the server at once", count(c.closed)),
            (
                "silent: not answered within the settle time",
                format!("{} (settle time {} s)", count(c.silent), s.settle_s),
            ),
            ("failed to connect", count(c.failed)),
        ];
        if let Some(why) = &c.first_failure {
            lines.push(("  the first failure", why.clone()));
        }
        lines.push((
            "all opened and sorted in",
            format!("{:>9.2} s", c.opening_s),
        ));
        if let Some(overflows) = c.listen_overflows {
            lines.push((
                "connects dropped by a full listen queue",
                format!(
                    "{} (machine-wide; each retried 1 s later)",
                    count(overflows)
                ),
            ));
        }
        lines.extend([
            ("answered late, while held", count(c.answered_late)),
            (
                "closed by the server while held",
                count(c.closed_while_held),
            ),
            ("held open at the end", count(c.held_at_end)),
            ("", String::new()),
            (
                "server RSS before the connections",
                mib(server.rss_before_bytes),
            ),
            (
                "server RSS while holding them",
                mib(server.rss_holding_bytes),
            ),
            (
                "server RSS after closing them",
                format!(
                    "{} ({} s later)",
                    mib(server.rss_after_close_bytes),
                    server.after_close_wait_s
                ),
            ),
            ("server peak RSS", mib(server.peak_rss_bytes)),
            (
                "server RSS per held connection",
                match (
                    server.rss_per_connection_kib,
                    server.rss_per_connection_bytes,
                ) {
                    (Some(kib), Some(bytes)) => format!("{kib:>9.1} KiB ({bytes} bytes)"),
                    _ => format!("{:>9}", "-"),
                },
            ),
            (
                "server CPU while opening them",
                format!(
                    "{:>9.2} s{}",
                    server.cpu_opening_s,
                    server
                        .cpu_opening_us_per_connection
                        .map_or_else(String::new, |us| format!(
                            " ({us:.0} µs per connection answered or closed)"
                        ))
                ),
            ),
            (
                "server CPU while holding them",
                format!(
                    "{:>9.2} s in {:.1} s ({:.2} % of one core)",
                    server.cpu_holding_s,
                    server.holding_s,
                    server.cpu_holding_share_of_core * 100.0
                ),
            ),
        ]);
        if server.warnings_logged > 0 {
            lines.push(("warnings sessiond logged", count(server.warnings_logged)));
        }
        for (label, value) in lines {
            let line = format!("  {label:<44}{value}");
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

fn mib(bytes: u64) -> String {
    format!("{:>8.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
