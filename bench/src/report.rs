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
    /// Times every row was measured (`--rounds`); each row shows its
    /// median round.
    pub rounds: u64,
}

/// The least and the most of a figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

impl Range {
    fn of(values: impl Iterator<Item = f64>) -> Option<Self> {
        values.fold(None, |range, value| {
            Some(match range {
                None => Self {
                    min: value,
                    max: value,
                },
                Some(Self { min, max }) => Self {
                    min: min.min(value),
                    max: max.max(value),
                },
            })
        })
    }
}

/// How a row's figures varied over the rounds (`--rounds` above 1).
///
/// The table shows it as one line:
/// `5 rounds: req/s 41000–45500, vs mem 0.80–0.86, p99 2.60–3.10 ms, µs/req 20–24`.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Rounds measured; the row shows the median one.
    pub rounds: usize,
    pub throughput_rps: Range,
    pub ratio_to_memory: Option<Range>,
    pub p99_us: Option<Range>,
    pub cpu_us_per_request: Option<Range>,
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
    /// Over all rounds, with `--rounds` above 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
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
            spread: None,
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
            spread: None,
        }
    }
}

/// Everything a run prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub rows: Vec<Row>,
}

/// Sets each measured row's ratio to the `memory` row of the same round.
pub fn set_ratios(rows: &mut [Row]) {
    let ceiling = rows
        .iter()
        .find(|row| row.name == "memory" && row.status == Status::Ok)
        .map(|row| row.throughput_rps)
        .filter(|rps| *rps > 0.0);
    if let Some(ceiling) = ceiling {
        for row in rows.iter_mut().filter(|row| row.status == Status::Ok) {
            row.ratio_to_memory = Some(row.throughput_rps / ceiling);
        }
    }
}

/// One row per subject from several rounds of the same rows: the round of
/// median ratio to memory (median throughput for memory itself, or where a
/// round has no ratio),
/// with the spread over all rounds. A subject that failed in any round
/// shows that failure; one skipped in every round, the skip.
pub fn median_rows(rounds: Vec<Vec<Row>>) -> Vec<Row> {
    let count = rounds.len();
    let mut subjects: Vec<Vec<Row>> = Vec::new();
    for rows in rounds {
        for (index, row) in rows.into_iter().enumerate() {
            match subjects.get_mut(index) {
                Some(subject) => subject.push(row),
                None => subjects.push(vec![row]),
            }
        }
    }
    subjects
        .into_iter()
        .filter_map(|mut rows| {
            if count == 1 {
                return rows.pop();
            }
            if let Some(failed) = rows.iter().position(|row| row.status == Status::Failed) {
                return Some(rows.swap_remove(failed));
            }
            if !rows.iter().any(|row| row.status == Status::Ok) {
                // Skipped in every round: the first says why.
                return rows.into_iter().next();
            }
            rows.retain(|row| row.status == Status::Ok);
            let spread =
                Spread {
                    rounds: rows.len(),
                    throughput_rps: Range::of(rows.iter().map(|row| row.throughput_rps))?,
                    ratio_to_memory: Range::of(rows.iter().filter_map(|row| row.ratio_to_memory)),
                    p99_us: Range::of(rows.iter().filter_map(|row| {
                        row.latency_us.as_ref().map(|latency| latency.p99 as f64)
                    })),
                    cpu_us_per_request: Range::of(rows.iter().filter_map(|row| {
                        row.server
                            .as_ref()
                            .and_then(|server| server.cpu_us_per_request)
                    })),
                };
            // By ratio where it says something (not on the memory row, where
            // it is always 1, nor when a round had no memory row to divide by).
            let ratios = spread.ratio_to_memory;
            let by_ratio = rows.iter().all(|row| row.ratio_to_memory.is_some())
                && ratios.is_some_and(|range| range.min < range.max);
            let key = |row: &Row| match row.ratio_to_memory {
                Some(ratio) if by_ratio => ratio,
                _ => row.throughput_rps,
            };
            rows.sort_by(|a, b| key(a).total_cmp(&key(b)));
            // The lower median when the count is even: a figure that was
            // measured, not an average of two.
            let mut median = rows.swap_remove((rows.len() - 1) / 2);
            median.spread = Some(spread);
            Some(median)
        })
        .collect()
}

impl Spread {
    fn describe(&self) -> String {
        let mut parts = vec![format!(
            "{} rounds: req/s {:.0}–{:.0}",
            self.rounds, self.throughput_rps.min, self.throughput_rps.max
        )];
        if let Some(ratio) = self.ratio_to_memory {
            parts.push(format!("vs mem {:.2}–{:.2}", ratio.min, ratio.max));
        }
        if let Some(p99) = self.p99_us {
            parts.push(format!(
                "p99 {:.2}–{:.2} ms",
                p99.min / 1000.0,
                p99.max / 1000.0
            ));
        }
        if let Some(cpu) = self.cpu_us_per_request {
            parts.push(format!("µs/req {:.0}–{:.0}", cpu.min, cpu.max));
        }
        parts.join(", ")
    }
}

impl Report {
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
             {} generator thread{}, {} s measured after {} s warm-up{}",
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
            if s.rounds > 1 {
                format!("; each row the median of {} rounds", s.rounds)
            } else {
                String::new()
            },
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
            if let Some(spread) = &row.spread {
                let _ = writeln!(out, "{:<w$}   {}", "", spread.describe());
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
            rounds: 1,
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
        let mut rows = vec![
            row("memory", 40_000.0),
            row("sqlite", 10_000.0),
            Row::not_measured("postgres", "p://", Status::Skipped, "down".into()),
        ];
        set_ratios(&mut rows);
        let report = Report {
            settings: settings(),
            rows,
        };
        assert_eq!(report.rows[0].ratio_to_memory, Some(1.0));
        assert_eq!(report.rows[1].ratio_to_memory, Some(0.25));
        assert_eq!(report.rows[2].ratio_to_memory, None);
        let table = report.table();
        assert!(table.contains("0.25"), "{table}");
        assert!(table.contains("skipped"), "{table}");
        assert!(table.contains("down"), "{table}");
    }

    /// Three rounds of memory, sqlite and a skipped postgres.
    fn rounds(sqlite_rps: [f64; 3]) -> Vec<Vec<Row>> {
        sqlite_rps
            .into_iter()
            .map(|sqlite| {
                let mut rows = vec![
                    row("memory", 40_000.0),
                    row("sqlite", sqlite),
                    Row::not_measured("postgres", "p://", Status::Skipped, "down".into()),
                ];
                set_ratios(&mut rows);
                rows
            })
            .collect()
    }

    #[test]
    fn each_row_is_its_median_round_with_the_spread_of_all() {
        let rows = median_rows(rounds([30_000.0, 10_000.0, 20_000.0]));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].throughput_rps, 20_000.0);
        let spread = rows[1].spread.as_ref().unwrap();
        assert_eq!(spread.rounds, 3);
        assert_eq!(
            spread.throughput_rps,
            Range {
                min: 10_000.0,
                max: 30_000.0
            }
        );
        assert_eq!(
            spread.ratio_to_memory,
            Some(Range {
                min: 0.25,
                max: 0.75
            })
        );
        assert_eq!(rows[2].status, Status::Skipped);
        let report = Report {
            settings: Settings {
                rounds: 3,
                ..settings()
            },
            rows,
        };
        let table = report.table();
        assert!(table.contains("the median of 3 rounds"), "{table}");
        assert!(
            table.contains("3 rounds: req/s 10000–30000, vs mem 0.25–0.75"),
            "{table}"
        );
    }

    #[test]
    fn a_row_that_failed_in_any_round_shows_the_failure() {
        let mut rounds = rounds([30_000.0, 10_000.0, 20_000.0]);
        rounds[1][1] = Row::not_measured("sqlite", "x://", Status::Failed, "crashed".into());
        let rows = median_rows(rounds);
        assert_eq!(rows[1].status, Status::Failed);
        assert_eq!(rows[1].reason.as_deref(), Some("crashed"));
    }

    #[test]
    fn the_memory_row_is_its_median_round_by_throughput() {
        let mut rounds = rounds([10_000.0, 10_000.0, 10_000.0]);
        for (round, rps) in rounds.iter_mut().zip([50_000.0, 30_000.0, 40_000.0]) {
            round[0].throughput_rps = rps;
            set_ratios(round);
        }
        let rows = median_rows(rounds);
        assert_eq!(rows[0].throughput_rps, 40_000.0);
    }
}
