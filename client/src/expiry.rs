//! Session expiry as Django stores and reads it: the reserved key
//! `_session_expiry` holds either a number of seconds of inactivity (`0`
//! meaning "when the browser closes") or an absolute time as an ISO 8601
//! string, `datetime.isoformat()` style.
//!
//! An expiry is only honoured if the time it names falls within
//! [`EXPIRY_YEARS`]; any other (`1e300`, `-1e300`, `u64::MAX`, year 10000)
//! counts as no expiry at all, never as a panic or a clamped time.

use std::ops::RangeInclusive;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, TimeDelta, TimeZone, Utc};
use serde_json::Value;

/// The reserved key under which Django keeps a session's own expiry.
pub const EXPIRY_KEY: &str = "_session_expiry";

/// The years in which a session's own expiry may fall, both as written and
/// in UTC: Python's `datetime` range (`MINYEAR` to `MAXYEAR`), which is
/// also the range of sessiond's `expire_date`.
///
/// Outside it Django has no datetime to compute with and fails the request:
/// `modification + timedelta(seconds=1e300)` raises `OverflowError` in
/// `get_expiry_date`, as an unparsable string raises `ValueError` from
/// `fromisoformat`. This crate already reads an invalid expiry as an absent
/// one, so that the session stays usable; an expiry outside the range is
/// invalid in the same way and is read the same way: the cookie age and the
/// browser-close setting apply. Clamping it to the edge of the range was
/// rejected: no Django would ever compute that time, and a far-past value
/// clamped to year 1 would still be garbage, just a plausible-looking one.
const EXPIRY_YEARS: RangeInclusive<i32> = 1..=9999;

/// What [`Session::set_expiry`](crate::Session::set_expiry) accepts, as
/// Django's `set_expiry(value)` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Back to the global policy (`set_expiry(None)`): the cookie age, or
    /// browser close if the settings say so.
    Default,
    /// Expire after this many seconds of inactivity (`set_expiry(300)`);
    /// `0` means when the browser closes. Stored as given, as Django does;
    /// seconds that take the expiry out of the years 1 to 9999 read as no
    /// expiry.
    Seconds(i64),
    /// Expire when the browser closes (`set_expiry(0)`).
    BrowserClose,
    /// Expire this long from now (`set_expiry(timedelta)`): stored as the
    /// absolute time. A time outside the years 1 to 9999 is stored as no
    /// expiry, like [`Expiry::Default`].
    In(TimeDelta),
    /// Expire at this time (`set_expiry(datetime)`). A time outside the
    /// years 1 to 9999 is stored as no expiry, like [`Expiry::Default`].
    At(DateTime<FixedOffset>),
}

impl Expiry {
    /// Expire after `idle` of inactivity: each save moves the expiry on
    /// ([`Expiry::Seconds`], Django's `set_expiry(seconds)`). Whole seconds,
    /// as Django stores them; a zero duration means when the browser closes,
    /// as `set_expiry(0)` does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use std::time::Duration;
    /// use sessiond_client::Expiry;
    ///
    /// session.set_expiry(Expiry::after_inactivity(Duration::from_secs(30 * 60))).await?;
    /// assert_eq!(session.get_expiry_age().await?, 1800);
    /// assert_eq!(session.get::<u64>("_session_expiry").await?, Some(1800));
    /// # Ok(()) }
    /// ```
    pub fn after_inactivity(idle: Duration) -> Self {
        Self::Seconds(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX))
    }

    /// Expire `delay` from now, however active the session is: stored as
    /// that time ([`Expiry::In`], Django's `set_expiry(timedelta)`). A time
    /// past the year 9999 is stored as no expiry, like [`Expiry::Default`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use sessiond_client::{Backend, Session, Settings, SignedCookies};
    /// # let session = Session::new(Backend::SignedCookies(SignedCookies::new("secret", [""; 0])?), Settings::default(), None);
    /// use std::time::Duration;
    /// use sessiond_client::Expiry;
    ///
    /// session.set_expiry(Expiry::from_now(Duration::from_secs(3600))).await?;
    /// let age = session.get_expiry_age().await?;
    /// assert!((3598..=3600).contains(&age));
    /// # Ok(()) }
    /// ```
    pub fn from_now(delay: Duration) -> Self {
        Self::In(TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX))
    }

    /// The value to store under `_session_expiry`, with `now` for a
    /// relative time; `None` to store nothing. A time Django could not
    /// parse back is never written, because Django readers of the session
    /// would fail on it.
    pub(crate) fn to_stored(self, now: DateTime<Utc>) -> Option<Value> {
        let at = match self {
            Self::Default => return None,
            Self::BrowserClose => return Some(Value::from(0)),
            Self::Seconds(seconds) => return Some(Value::from(seconds)),
            Self::In(delta) => now.checked_add_signed(delta)?.fixed_offset(),
            Self::At(at) => at,
        };
        in_range(at).then(|| Value::from(isoformat(at)))
    }
}

/// A session's expiry as stored under `_session_expiry`, or as passed to the
/// `expiry` argument of Django's `get_expiry_age` / `get_expiry_date`.
///
/// A value naming a time outside the years 1 to 9999 (as written or in UTC),
/// counted from the modification time for seconds, is used as
/// [`ExpiryValue::None`].
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
    /// written (a boolean, a list, an unparsable string) count as absent,
    /// and so do numbers no `i64` holds.
    pub(crate) fn from_stored(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Number(number)) => number
                .as_i64()
                .or_else(|| number.as_f64().and_then(whole_seconds))
                .map_or(Self::None, Self::Seconds),
            Some(Value::String(text)) => parse_isoformat(text).map_or(Self::None, Self::At),
            _ => Self::None,
        }
    }

    /// The time this expiry names, counted from `modification`; `None` when
    /// the session has no expiry of its own (nothing, or browser close) or
    /// the time is out of [`EXPIRY_YEARS`].
    fn own_date(self, modification: DateTime<Utc>) -> Option<DateTime<FixedOffset>> {
        let at = match self {
            Self::None | Self::Seconds(0) => return None,
            Self::Seconds(seconds) => modification
                .checked_add_signed(TimeDelta::try_seconds(seconds)?)?
                .fixed_offset(),
            Self::At(at) => at,
        };
        in_range(at).then_some(at)
    }

    /// Seconds until expiry, counted from `modification` (Django's
    /// `get_expiry_age`): floor of the difference for an absolute time, the
    /// seconds themselves otherwise.
    pub(crate) fn age(self, modification: DateTime<Utc>, cookie_age: i64) -> i64 {
        self.own_date(modification).map_or(cookie_age, |at| {
            // For seconds, `at` is `modification + seconds` exactly, so this
            // gives them back unchanged.
            floor_seconds(at.with_timezone(&Utc) - modification)
        })
    }

    /// When the session expires, counted from `modification` (Django's
    /// `get_expiry_date`). Without an expiry of its own, that is
    /// `modification + cookie_age`; should a setting or a `modification`
    /// outside any calendar overflow that, the date stops at the last (or
    /// first) time chrono holds, which the server refuses as out of range.
    pub(crate) fn date(
        self,
        modification: DateTime<Utc>,
        cookie_age: i64,
    ) -> DateTime<FixedOffset> {
        self.own_date(modification).unwrap_or_else(|| {
            TimeDelta::try_seconds(cookie_age)
                .and_then(|age| modification.checked_add_signed(age))
                .unwrap_or(if cookie_age < 0 {
                    DateTime::<Utc>::MIN_UTC
                } else {
                    DateTime::<Utc>::MAX_UTC
                })
                .fixed_offset()
        })
    }

    /// Whether the cookie should end with the browser session (Django's
    /// `get_expire_at_browser_close`), `default` being the setting.
    pub(crate) fn at_browser_close(self, now: DateTime<Utc>, default: bool) -> bool {
        match self {
            Self::Seconds(0) => true,
            _ if self.own_date(now).is_some() => false,
            _ => default,
        }
    }
}

/// Whether Django could hold `at` as an expiry: Python checks the year as
/// written (in its own offset), sessiond the year in UTC.
fn in_range(at: DateTime<FixedOffset>) -> bool {
    EXPIRY_YEARS.contains(&at.year()) && EXPIRY_YEARS.contains(&at.with_timezone(&Utc).year())
}

/// `seconds` rounded down, if an `i64` holds that.
fn whole_seconds(seconds: f64) -> Option<i64> {
    // -2^63 and 2^63 are exact in an f64, and so is every whole f64
    // between them, so the cast below neither rounds nor saturates. NaN
    // fails both comparisons.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let floor = seconds.floor();
    (-LIMIT..LIMIT).contains(&floor).then_some(floor as i64)
}

/// Whole seconds of `delta`, rounded down as Python's
/// `delta.days * 86400 + delta.seconds` does.
fn floor_seconds(delta: TimeDelta) -> i64 {
    delta.num_seconds() - i64::from(delta.subsec_nanos() < 0)
}

/// Python's `datetime.isoformat()`: microseconds only when non-zero, and the
/// offset as `+HH:MM`, or `+HH:MM:SS` when it has seconds (a historical
/// local mean time); rounding those away would move the expiry.
pub(crate) fn isoformat(at: DateTime<FixedOffset>) -> String {
    let time = if at.timestamp_subsec_micros() == 0 {
        "%Y-%m-%dT%H:%M:%S"
    } else {
        "%Y-%m-%dT%H:%M:%S%.6f"
    };
    let offset = if at.offset().local_minus_utc() % 60 == 0 {
        "%:z"
    } else {
        "%::z"
    };
    format!("{}{}", at.format(time), at.format(offset))
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
    if let Some(at) = parse_with_offset_seconds(text) {
        return Some(at);
    }
    parse_naive(text).map(|naive| naive.and_utc().fixed_offset())
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .into_iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
}

/// A time ending in an offset with seconds, `+HH:MM:SS`, which Python writes
/// and chrono does not read.
fn parse_with_offset_seconds(text: &str) -> Option<DateTime<FixedOffset>> {
    const LEN: usize = "+HH:MM:SS".len();
    let split = text.len().checked_sub(LEN)?;
    let (local, offset) = (text.get(..split)?, text.get(split..)?.as_bytes());
    let sign = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let field = |at: usize| -> Option<i32> {
        let digits = offset.get(at..at + 2)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| i32::from(digits[0] - b'0') * 10 + i32::from(digits[1] - b'0'))
    };
    let (hours, minutes, seconds) = (field(1)?, field(4)?, field(7)?);
    if offset[3] != b':' || offset[6] != b':' || hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    let offset = FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60 + seconds))?;
    offset.from_local_datetime(&parse_naive(local)?).single()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
        // Amsterdam's local mean time until 1937.
        let amsterdam = FixedOffset::east_opt(19 * 60 + 32).unwrap();
        assert_eq!(
            isoformat(at("1930-01-01T00:00:00Z").with_timezone(&amsterdam)),
            "1930-01-01T00:19:32+00:19:32"
        );
    }

    #[test]
    fn isoformat_strings_parse_back() {
        for text in [
            "2026-01-15T12:30:00+00:00",
            "2026-01-02T00:00:00.500000+00:00",
            "2026-01-02T02:00:00+02:00",
            "1930-01-01T00:19:32+00:19:32",
            "1930-01-01T00:00:00.000001-00:00:01",
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

    // Issue 16: values another writer stored that no time can hold, or that
    // Django's datetime cannot (years 1 to 9999), used to panic in chrono.
    #[test]
    fn unrepresentable_expiries_fall_back_to_the_cookie_age() {
        let default_date = (now() + TimeDelta::seconds(TWO_WEEKS)).fixed_offset();
        for stored in [
            json!(1e300),
            json!(-1e300),
            json!(1e19),
            json!(-1e19),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(9_223_372_036_854_775_i64),
            json!(-9_223_372_036_854_775_i64),
            json!(-100_000_000_000_i64),
            json!(300_000_000_000_i64),
            json!("10000-01-01T00:00:00+00:00"),
            json!("+10000-01-01T00:00:00+00:00"),
            json!("9999-12-31T23:59:59-00:01"),
            json!("0001-01-01T00:00:00+00:01"),
            json!("0000-12-31T23:59:59+00:00"),
            json!("-0001-01-01T00:00:00+00:00"),
            json!("+262143-12-31T23:59:59+00:00"),
        ] {
            let value = ExpiryValue::from_stored(Some(&stored));
            assert_eq!(value.date(now(), TWO_WEEKS), default_date, "{stored}");
            assert_eq!(value.age(now(), TWO_WEEKS), TWO_WEEKS, "{stored}");
        }
    }

    // The ends of Django's range are valid expiries, far as they are.
    #[test]
    fn expiries_at_the_ends_of_the_range_are_kept() {
        let last = at("9999-12-31T23:59:59.999999+00:00");
        let first = at("0001-01-01T00:00:00+00:00");
        for (stored, date) in [
            (json!("9999-12-31T23:59:59.999999+00:00"), last),
            (json!("9999-12-31T23:59:59.999999"), last),
            (json!("0001-01-01T00:00:00+00:00"), first),
            (json!("0001-01-01T01:00:00+01:00"), first),
            (
                json!(251_635_075_199_i64),
                last - TimeDelta::microseconds(999_999),
            ),
            (json!(-63_902_822_400_i64), first),
            (json!(-63_902_822_399.5), first),
        ] {
            let value = ExpiryValue::from_stored(Some(&stored));
            assert_eq!(value.date(now(), TWO_WEEKS), date, "{stored}");
            let age = (date.with_timezone(&Utc) - now()).num_seconds();
            assert_eq!(value.age(now(), TWO_WEEKS), age, "{stored}");
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
