//! Session expiry as Django stores and reads it: the reserved key
//! `_session_expiry` holds either a number of seconds of inactivity (`0`
//! meaning "when the browser closes") or an absolute time as an ISO 8601
//! string, `datetime.isoformat()` style.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

/// The reserved key under which Django keeps a session's own expiry.
pub const EXPIRY_KEY: &str = "_session_expiry";

/// What [`Session::set_expiry`](crate::Session::set_expiry) accepts, as
/// Django's `set_expiry(value)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Back to the global policy (`set_expiry(None)`): the cookie age, or
    /// browser close if the settings say so.
    Default,
    /// Expire after this many seconds of inactivity (`set_expiry(300)`);
    /// `0` means when the browser closes.
    Seconds(i64),
    /// Expire when the browser closes (`set_expiry(0)`).
    BrowserClose,
    /// Expire this long from now (`set_expiry(timedelta)`): stored as the
    /// absolute time.
    In(TimeDelta),
    /// Expire at this time (`set_expiry(datetime)`).
    At(DateTime<FixedOffset>),
}

/// A session's expiry as stored under `_session_expiry`, or as passed to the
/// `expiry` argument of Django's `get_expiry_age` / `get_expiry_date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryValue {
    /// Nothing stored: the global policy applies.
    None,
    /// Seconds of inactivity; `0` means browser close.
    Seconds(i64),
    /// An absolute time.
    At(DateTime<FixedOffset>),
}

impl ExpiryValue {
    /// Reads a stored `_session_expiry`. Values Django could not have
    /// written (a boolean, a list, an unparsable string) count as absent.
    pub(crate) fn from_stored(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Number(number)) => number
                .as_i64()
                .or_else(|| number.as_f64().map(|seconds| seconds.floor() as i64))
                .map_or(Self::None, Self::Seconds),
            Some(Value::String(text)) => parse_isoformat(text).map_or(Self::None, Self::At),
            _ => Self::None,
        }
    }

    /// Seconds until expiry, counted from `modification` (Django's
    /// `get_expiry_age`): floor of the difference for an absolute time.
    pub(crate) fn age(self, modification: DateTime<Utc>, cookie_age: i64) -> i64 {
        match self {
            Self::None | Self::Seconds(0) => cookie_age,
            Self::Seconds(seconds) => seconds,
            Self::At(at) => {
                let delta = at.with_timezone(&Utc) - modification;
                delta.num_microseconds().map_or_else(
                    || delta.num_seconds(),
                    |micros| micros.div_euclid(1_000_000),
                )
            }
        }
    }

    /// When the session expires, counted from `modification` (Django's
    /// `get_expiry_date`).
    pub(crate) fn date(
        self,
        modification: DateTime<Utc>,
        cookie_age: i64,
    ) -> DateTime<FixedOffset> {
        match self {
            Self::At(at) => at,
            Self::None | Self::Seconds(0) => {
                (modification + TimeDelta::seconds(cookie_age)).fixed_offset()
            }
            Self::Seconds(seconds) => (modification + TimeDelta::seconds(seconds)).fixed_offset(),
        }
    }
}

/// Python's `datetime.isoformat()`: microseconds only when non-zero, and the
/// offset as `+HH:MM`.
pub(crate) fn isoformat(at: DateTime<FixedOffset>) -> String {
    if at.timestamp_subsec_micros() == 0 {
        at.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

/// Python's `datetime.fromisoformat()` for the forms Django and its users
/// write. A time without an offset is taken as UTC (Django's default
/// `USE_TZ=True` never writes one).
pub(crate) fn parse_isoformat(text: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at);
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(at) = DateTime::parse_from_str(text, format) {
            return Some(at);
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().fixed_offset());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(text).unwrap()
    }

    fn now() -> DateTime<Utc> {
        at("2026-01-01T00:00:00Z").with_timezone(&Utc)
    }

    const TWO_WEEKS: i64 = 1_209_600;

    #[test]
    fn isoformat_matches_python() {
        assert_eq!(
            isoformat(at("2026-01-01T01:00:00Z")),
            "2026-01-01T01:00:00+00:00"
        );
        assert_eq!(
            isoformat(at("2026-01-02T00:00:00.5Z")),
            "2026-01-02T00:00:00.500000+00:00"
        );
        assert_eq!(
            isoformat(at("2026-01-02T02:00:00+02:00")),
            "2026-01-02T02:00:00+02:00"
        );
    }

    #[test]
    fn isoformat_strings_parse_back() {
        for text in [
            "2026-01-15T12:30:00+00:00",
            "2026-01-02T00:00:00.500000+00:00",
            "2026-01-02T02:00:00+02:00",
        ] {
            assert_eq!(isoformat(parse_isoformat(text).unwrap()), text);
        }
        assert_eq!(
            parse_isoformat("2025-12-31T19:00:00").unwrap(),
            at("2025-12-31T19:00:00Z")
        );
        assert_eq!(parse_isoformat("not a date"), None);
    }

    // The vectors of Django's spec, with now frozen at 2026-01-01T00:00Z.
    #[test]
    fn ages_and_dates_follow_django() {
        let cases = [
            (
                ExpiryValue::Seconds(3600),
                3600,
                "2026-01-01T01:00:00+00:00",
            ),
            (
                ExpiryValue::Seconds(0),
                TWO_WEEKS,
                "2026-01-15T00:00:00+00:00",
            ),
            (
                ExpiryValue::At(at("2026-01-01T01:00:00+00:00")),
                3600,
                "2026-01-01T01:00:00+00:00",
            ),
            (
                ExpiryValue::At(at("2025-12-31T23:59:50+00:00")),
                -10,
                "2025-12-31T23:59:50+00:00",
            ),
            (
                ExpiryValue::At(at("2026-01-02T00:00:00.5+00:00")),
                86400,
                "2026-01-02T00:00:00.500000+00:00",
            ),
            (
                ExpiryValue::At(at("2026-01-02T02:00:00+02:00")),
                86400,
                "2026-01-02T02:00:00+02:00",
            ),
            (ExpiryValue::None, TWO_WEEKS, "2026-01-15T00:00:00+00:00"),
        ];
        for (value, age, date) in cases {
            assert_eq!(value.age(now(), TWO_WEEKS), age, "{value:?}");
            assert_eq!(isoformat(value.date(now(), TWO_WEEKS)), date, "{value:?}");
        }
    }

    #[test]
    fn ages_round_down_like_django() {
        let base = now();
        for (offset_micros, age) in [
            (500_000, 0),
            (-500_000, -1),
            (-1_500_000, -2),
            (10_999_000, 10),
        ] {
            let expiry = (base + TimeDelta::microseconds(offset_micros)).fixed_offset();
            assert_eq!(
                ExpiryValue::At(expiry).age(base, TWO_WEEKS),
                age,
                "{offset_micros}"
            );
        }
    }

    #[test]
    fn stored_values_are_read_leniently() {
        assert_eq!(ExpiryValue::from_stored(None), ExpiryValue::None);
        assert_eq!(
            ExpiryValue::from_stored(Some(&Value::Null)),
            ExpiryValue::None
        );
        assert_eq!(
            ExpiryValue::from_stored(Some(&3600.into())),
            ExpiryValue::Seconds(3600)
        );
        assert_eq!(
            ExpiryValue::from_stored(Some(&"2026-01-15T12:30:00+00:00".into())),
            ExpiryValue::At(at("2026-01-15T12:30:00Z"))
        );
        assert_eq!(
            ExpiryValue::from_stored(Some(&true.into())),
            ExpiryValue::None
        );
        assert_eq!(
            ExpiryValue::from_stored(Some(&"soon".into())),
            ExpiryValue::None
        );
    }
}
