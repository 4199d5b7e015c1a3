//! Connection attempts dropped because a listen queue was full, counted by
//! Linux for the whole network namespace (`TcpExt: ListenOverflows` of
//! `/proc/net/netstat`, as `nstat` shows it). Each is a SYN the client
//! sends again a second later, which is why a flood can take seconds to
//! open when the server's backlog is short.

/// The counter now; `None` where `/proc/net/netstat` cannot be read.
pub fn read() -> Option<u64> {
    parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

/// `ListenOverflows` of the `TcpExt:` lines: one of names, one of values.
fn parse(netstat: &str) -> Option<u64> {
    let mut tcp_ext = netstat
        .lines()
        .filter_map(|line| line.strip_prefix("TcpExt:"));
    let names = tcp_ext.next()?;
    let values = tcp_ext.next()?;
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")?
        .1
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_found_by_name() {
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                       TcpExt: 3 19571 19572\n\
                       IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse(netstat), Some(19571));
        assert_eq!(parse("IpExt: InNoRoutes\nIpExt: 0\n"), None);
    }
}
