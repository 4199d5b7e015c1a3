//! The process metrics every Prometheus client library exports, under
//! their usual names (`process_cpu_seconds_total`, `process_open_fds`, …),
//! so that dashboards and alerts written for any service work here.
//! prometheus-client has no collector for them; on Linux they are a few
//! lines of `/proc/self`, read at each scrape. Elsewhere only the
//! open-file limit is exported.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Unit;

use super::encode_gauge as gauge;

/// Reads the process's figures at each scrape.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector {
    /// Seconds since the epoch at which the process started: constant, and
    /// reading it takes `/proc/stat`, so it is read once.
    start_time: OnceLock<Option<f64>>,
}

/// What `/proc/self/stat` says.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// User and system CPU time, in seconds.
    cpu_seconds: f64,
    /// Start, in seconds after boot.
    start_after_boot: f64,
    resident_bytes: u64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text, ticks, page));
        if let Some(stat) = stat {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory size in bytes",
                Some(&Unit::Bytes),
                stat.resident_bytes,
            )?;
            let start_time = self.start_time.get_or_init(|| {
                let boot = std::fs::read_to_string("/proc/stat")
                    .ok()
                    .and_then(|text| boot_time(&text))?;
                Some(boot + stat.start_after_boot)
            });
            if let Some(start_time) = *start_time {
                gauge(
                    &mut encoder,
                    "process_start_time",
                    "Start time of the process since unix epoch in seconds",
                    Some(&Unit::Seconds),
                    start_time,
                )?;
            }
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                None,
                entries.count() as u64,
            )?;
        }
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                soft,
            )?;
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` (proc(5)) that hold the CPU time, the
/// start time and the resident set, with `ticks` clock ticks a second and
/// pages of `page` bytes.
fn parse_stat(text: &str, ticks: f64, page: u64) -> Option<Stat> {
    // The command name, in parentheses, may hold spaces and parentheses:
    // fields are counted from the last `)`, the state (field 3) first.
    let fields: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let (utime, stime) = (field(14)?, field(15)?);
    Some(Stat {
        cpu_seconds: (utime + stime) as f64 / ticks,
        start_after_boot: field(22)? as f64 / ticks,
        resident_bytes: field(24)? * page,
    })
}

/// The boot time in `/proc/stat`, in seconds since the epoch.
fn boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(|seconds| seconds as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as a process may
        // name itself.
        let text = "4242 (sess iond) x) S 1 4242 4242 0 -1 4194560 2019 0 0 0 \
                    150 50 0 0 20 0 9 0 12345 1064960000 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17664 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(text, 100.0, 4096),
            Some(Stat {
                cpu_seconds: 2.0,
                start_after_boot: 123.45,
                resident_bytes: 2560 * 4096,
            })
        );
        assert_eq!(parse_stat("4242 (sessiond) S 1", 100.0, 4096), None);
    }

    #[test]
    fn boot_time_is_read_from_its_line() {
        let text = "cpu  1 2 3 4\nintr 5\nbtime 1764900000\nprocesses 7\n";
        assert_eq!(boot_time(text), Some(1_764_900_000.0));
        assert_eq!(boot_time("cpu 1 2 3\n"), None);
    }
}
