//! Durations on the command line: seconds (`3600`) or a duration with
//! units (`90s`, `15m`, `1h`, `2weeks`), each flag with its own bounds.

use std::time::Duration;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// Parses `3600` (seconds) or a duration with units, refusing values past
/// `max` (which would overflow timers or make no sense for the flag).
fn parse_bounded(text: &str, max: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration > max {
        return Err(format!("at most {}", humantime::format_duration(max)));
    }
    Ok(duration)
}

pub(super) fn parse_keepalive(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(DAY))
}

pub(super) fn parse_handshake_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_bounded(text, Duration::from_secs(HOUR))?;
    if timeout.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(timeout)
}

pub(super) fn parse_request_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_bounded(text, Duration::from_secs(HOUR))?;
    if timeout.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(timeout)
}

pub(super) fn parse_store_timeout(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(HOUR))
}

/// A session lifetime; up to 100 years, so that now plus it stays a date
/// every engine can store.
pub(super) fn parse_session_age(text: &str) -> Result<Duration, String> {
    let age = parse_bounded(text, Duration::from_secs(36_500 * DAY))?;
    if age.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(age)
}

pub(super) fn parse_purge_interval(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(30 * DAY))
}

pub(super) fn parse_readiness_interval(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(HOUR))
}

pub(super) fn parse_shutdown_wait(text: &str) -> Result<Duration, String> {
    parse_bounded(text, Duration::from_secs(HOUR))
}

/// Parses `3600` (seconds) or a duration with units (`90s`, `1h 30m`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|err| {
        format!("{err}; expected seconds (e.g. 3600) or a duration such as 90s, 15m, 1h")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_session_age("0").is_err());
        assert!(parse_session_age("20000years").is_err());
        assert!(parse_store_timeout("3000000s").is_err());
        assert!(parse_shutdown_wait("18446744073709551615").is_err());
        assert!(parse_purge_interval("18446744073709551615").is_err());
        assert_eq!(parse_keepalive("0").unwrap(), Duration::ZERO);
        assert!(parse_keepalive("2days").is_err());
        assert!(parse_handshake_timeout("0").is_err());
        assert!(parse_request_timeout("0").is_err());
        assert!(parse_request_timeout("2h").is_err());
        assert!(parse_handshake_timeout("2h").is_err());
        assert_eq!(
            parse_store_timeout("1h").unwrap(),
            Duration::from_secs(3600)
        );
        assert!(parse_duration("-5").is_err());
    }
}
