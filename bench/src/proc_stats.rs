//! Memory and CPU time of a process, read from Linux's `/proc`.

use std::time::Duration;

use anyhow::Context;

/// What a process has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// Resident memory now (`VmRSS`).
    pub rss_bytes: u64,
    /// The most resident memory so far (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// CPU time in user and kernel mode (`utime + stime`).
    pub cpu: Duration,
}

impl ProcStats {
    /// Reads `/proc/PID/status` and `/proc/PID/stat`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        let rss_kib = status_kib(&status, "VmRSS:")
            .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let peak_kib = status_kib(&status, "VmHWM:").unwrap_or(rss_kib);
        let ticks = cpu_ticks(&stat).with_context(|| format!("malformed /proc/{pid}/stat"))?;
        Ok(Self {
            rss_bytes: rss_kib.saturating_mul(1024),
            peak_rss_bytes: peak_kib.saturating_mul(1024),
            cpu: ticks_to_duration(ticks, rustix::param::clock_ticks_per_second()),
        })
    }
}

/// A `Name:   1234 kB` line of `/proc/PID/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// `utime + stime` (fields 14 and 15) of `/proc/PID/stat`, in clock ticks.
/// The command name (field 2) may hold spaces and parentheses, so fields
/// are counted from its closing parenthesis, which is the last one.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name: field 3 (state) is the first.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    let per_second = per_second.max(1);
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second).saturating_mul(1_000_000_000) / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_even_with_odd_command_names() {
        let stat = "4242 (sess iond) (x)) S 1 4242 4242 0 -1 4194560 5443 0 0 0 \
                    250 37 0 0 20 0 6 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(ticks_to_duration(287, 100), Duration::from_millis(2870));
    }

    #[test]
    fn memory_comes_from_vmrss_and_vmhwm() {
        let status = "Name:\tsessiond\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads:\t6\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480));
        assert_eq!(status_kib(status, "VmHWM:"), Some(40960));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let stats = ProcStats::read(std::process::id()).unwrap();
        assert!(stats.rss_bytes > 0);
        assert!(stats.peak_rss_bytes >= stats.rss_bytes);
    }
}
