//! The results: a table for people, or one JSON document (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::measure::Measurement;
use crate::proc_stats::ProcStats;
use crate::purge::Purge;
use crate::workload::Workload;

/// The settings every row was measured with.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub workload: Workload,
    /// The share of loads with `mixed`, in percent; absent otherwise.
    pub load_percent: Option<u8>,
    pub payload_bytes: u64,
    pub sessions: u64,
    /// Expired sessions created for a ClearExpired while measuring.
    pub expired: u64,
    pub concurrency: u64,
    pub connections: u64,
    /// Threads of the load generator.
    pub threads: u16,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub timeout_s: f64,
}

/// Latency percentiles of successful requests, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The sessiond process the bench started, at the end of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// `VmRSS` at the end of the run.
    pub rss_bytes: u64,
    /// `VmHWM`, the most resident memory during its life.
    pub peak_rss_bytes: u64,
    /// `utime + stime` over its life: start-up, creating sessions,
    /// warm-up and the measured window.
    pub cpu_seconds: f64,
    /// CPU time in the measured window per successful request.
    pub cpu_us_per_request: Option<f64>,
    /// Warning and error lines it logged.
    pub warnings_logged: u64,
}

impl Server {
    /// From the stats at the start and the end of the measured window.
    pub fn new(
        at_start: Option<ProcStats>,
        at_end: ProcStats,
        requests: u64,
        warnings: u64,
    ) -> Self {
        let cpu_us_per_request = at_start.filter(|_| requests > 0).map(|start| {
            at_end.cpu.saturating_sub(start.cpu).as_secs_f64() * 1e6 / requests as f64
        });
        Self {
            rss_bytes: at_end.rss_bytes,
            peak_rss_bytes: at_end.peak_rss_bytes,
            cpu_seconds: at_end.cpu.as_secs_f64(),
            cpu_us_per_request,
            warnings_logged: warnings,
        }
    }
}

/// How a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not measured: a service it needs is not reachable.
    Skipped,
    Failed,
}

/// One measured (or skipped) subject.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `memory`, `sqlite`, `postgres`, `redis`, `cached_db`, `redis-plain`,
    /// `redis-multiplexed`, `store` or `target`.
    pub name: String,
    /// The store URL or target address (passwords shown as `***`).
    pub subject: String,
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Successful requests in the measured window.
    pub requests: u64,
    /// Failed requests in the measured window.
    pub errors: u64,
    pub duration_s: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Throughput divided by memory://'s, with --compare.
    pub ratio_to_memory: Option<f64>,
    pub latency_us: Option<Latency>,
    /// Failed requests by gRPC status code (or `LOAD_MISSED`, `REDIS_…`).
    pub errors_by_code: BTreeMap<String, u64>,
    /// The sessiond process, when the bench started it.
    pub server: Option<Server>,
    /// The ClearExpired call, with `--expired`.
    pub purge: Option<Purge>,
}

impl Row {
    pub fn measured(
        name: &str,
        subject: &str,
        measurement: &Measurement,
        server: Option<Server>,
        purge: Option<Purge>,
    ) -> Self {
        let histogram = &measurement.histogram;
        let latency = (!histogram.is_empty()).then(|| Latency {
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        });
        Self {
            name: name.to_owned(),
            subject: subject.to_owned(),
            status: Status::Ok,
            reason: None,
            requests: measurement.requests(),
            errors: measurement.error_count(),
            duration_s: measurement.elapsed.as_secs_f64(),
            throughput_rps: measurement.throughput(),
            ratio_to_memory: None,
            latency_us: latency,
            errors_by_code: measurement.errors.clone(),
            server,
            purge,
        }
    }

    pub fn not_measured(name: &str, subject: &str, status: Status, reason: String) -> Self {
        Self {
            name: name.to_owned(),
            subject: subject.to_owned(),
            status,
            reason: Some(reason),
            requests: 0,
            errors: 0,
            duration_s: 0.0,
            throughput_rps: 0.0,
            ratio_to_memory: None,
            latency_us: None,
            errors_by_code: BTreeMap::new(),
            server: None,
            purge: None,
        }
    }
}

/// Everything a run prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub rows: Vec<Row>,
}

impl Report {
    /// Sets each measured row's ratio to the `memory` row.
    pub fn set_ratios(&mut self) {
        let ceiling = self
            .rows
            .iter()
            .find(|row| row.name == "memory" && row.status == Status::Ok)
            .map(|row| row.throughput_rps)
            .filter(|rps| *rps > 0.0);
        if let Some(ceiling) = ceiling {
            for row in self.rows.iter_mut().filter(|row| row.status == Status::Ok) {
                row.ratio_to_memory = Some(row.throughput_rps / ceiling);
            }
        }
    }

    pub fn json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The table: one line per row, then errors, skips and failures.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let workload = match s.load_percent {
            Some(percent) => format!("mixed ({percent} % load, {} % save)", 100 - percent),
            None => s.workload.name().to_owned(),
        };
        let _ = writeln!(
            out,
            "workload {workload}, payload {} B, {} sessions{}, concurrency {}, {} connection{}, \
             {} generator thread{}, {} s measured after {} s warm-up",
            s.payload_bytes,
            s.sessions,
            if s.expired > 0 {
                format!(" (and {} expired ones, purged while measuring)", s.expired)
            } else {
                String::new()
            },
            s.concurrency,
            s.connections,
            if s.connections == 1 { "" } else { "s" },
            s.threads,
            if s.threads == 1 { "" } else { "s" },
            s.duration_s,
            s.warmup_s,
        );
        let _ = writeln!(out);
        // The name column is as wide as the longest name.
        let w = self
            .rows
            .iter()
            .map(|row| row.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        let _ = writeln!(
            out,
            "{:<w$} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7}",
            "",
            "req/s",
            "vs mem",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "errors",
            "RSS MiB",
            "CPU s",
            "µs/req"
        );
        for row in &self.rows {
            let _ = write!(out, "{:<w$} ", row.name);
            if row.status != Status::Ok {
                let what = if row.status == Status::Skipped {
                    "skipped"
                } else {
                    "FAILED"
                };
                let _ = writeln!(out, "{what}");
                continue;
            }
            let ms = |micros: u64| format!("{:.2}", micros as f64 / 1000.0);
            let (p50, p99, p999, max) = match &row.latency_us {
                Some(l) => (ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max)),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let ratio = row
                .ratio_to_memory
                .map_or_else(|| "-".to_owned(), |ratio| format!("{ratio:.2}"));
            let (rss, cpu, per_request) = match &row.server {
                Some(server) => (
                    format!("{:.0}", server.rss_bytes as f64 / (1024.0 * 1024.0)),
                    format!("{:.1}", server.cpu_seconds),
                    server
                        .cpu_us_per_request
                        .map_or_else(|| "-".to_owned(), |us| format!("{us:.0}")),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "{:>9.0} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>7}",
                row.throughput_rps, ratio, p50, p99, p999, max, row.errors, rss, cpu, per_request
            );
        }
        let _ = writeln!(out);
        for row in &self.rows {
            let _ = writeln!(out, "{:<w$} {}", row.name, row.subject);
            if let Some(reason) = &row.reason {
                let _ = writeln!(out, "{:<w$}   {reason}", "");
            }
            if !row.errors_by_code.is_empty() {
                let errors: Vec<String> = row
                    .errors_by_code
                    .iter()
                    .map(|(code, count)| format!("{code} {count}"))
                    .collect();
                let _ = writeln!(out, "{:<w$}   errors: {}", "", errors.join(", "));
            }
            if let Some(purge) = &row.purge {
                let _ = writeln!(
                    out,
                    "{:<w$}   ClearExpired removed {} rows in {:.1} s ({:.0} rows/s){}",
                    "",
                    purge.removed,
                    purge.seconds,
                    purge.rows_per_s,
                    if purge.ended_inside_window {
                        "; it ended before the measured window did, so the latencies \
                         also cover calls after it: give a shorter --duration"
                    } else {
                        ""
                    }
                );
            }
            if let Some(server) = row.server.as_ref().filter(|s| s.warnings_logged > 0) {
                let _ = writeln!(
                    out,
                    "{:<w$}   sessiond logged {} warnings",
                    "", server.warnings_logged
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            workload: Workload::Load,
            load_percent: None,
            payload_bytes: 1024,
            sessions: 10,
            concurrency: 4,
            connections: 1,
            threads: 1,
            expired: 0,
            duration_s: 1.0,
            warmup_s: 0.5,
            timeout_s: 5.0,
        }
    }

    fn row(name: &str, rps: f64) -> Row {
        let mut row = Row::not_measured(name, "x://", Status::Ok, String::new());
        row.reason = None;
        row.throughput_rps = rps;
        row
    }

    #[test]
    fn ratios_are_to_the_memory_row() {
        let mut report = Report {
            settings: settings(),
            rows: vec![
                row("memory", 40_000.0),
                row("sqlite", 10_000.0),
                Row::not_measured("postgres", "p://", Status::Skipped, "down".into()),
            ],
        };
        report.set_ratios();
        assert_eq!(report.rows[0].ratio_to_memory, Some(1.0));
        assert_eq!(report.rows[1].ratio_to_memory, Some(0.25));
        assert_eq!(report.rows[2].ratio_to_memory, None);
        let table = report.table();
        assert!(table.contains("0.25"), "{table}");
        assert!(table.contains("skipped"), "{table}");
        assert!(table.contains("down"), "{table}");
    }
}
